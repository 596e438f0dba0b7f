"""One-time actions from the ESM: stored durably, run on a worker thread, results reported.

Never on the fanotify answering thread, and never by spawning a process (the daemon runs a
fanotify listener in-process): everything is done with the standard library and psutil.
"""
