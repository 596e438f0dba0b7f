"""``trapsd console``: the local Textual console of the agent (Textual: the ``cli`` extra).

Only :mod:`trapsd.console.app` and :mod:`trapsd.console.views` import Textual; the access
check and the control-socket source import nothing beyond the standard library, so the
command can refuse early on an agent-only install.
"""
