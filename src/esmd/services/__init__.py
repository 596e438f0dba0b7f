"""What the server does, independent of HTTP: the routes call these."""
