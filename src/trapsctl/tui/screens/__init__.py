"""Modal screens: the confirmation dialog and the key help."""
