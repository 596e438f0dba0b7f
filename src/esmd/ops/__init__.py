"""Background operations of ``esmd serve``: leadership, retention, and their runner."""
