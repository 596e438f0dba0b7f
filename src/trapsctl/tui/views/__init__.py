"""The dashboard's tabs, one per module: agents, events, hashes (all :class:`TableView`)."""
