"""Behaviour and exploit modules: a process tree fed by the proc connector, and the modules
(reverse shell, fileless, LD_PRELOAD, ptrace, W+X memory, privilege escalation) judging it."""
