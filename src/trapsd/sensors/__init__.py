"""Exec sensors of the malware module: fanotify (blocks), proc connector and psutil (kill)."""
