"""The Textual dashboard (``trapsctl dashboard``): agents, live events, hash verdicts.

Only this package may import textual; the scripted commands never import it (an
import-linter contract in pyproject.toml), so that ``trapsctl … -o json`` and every shell
completion stay fast. ``trapsctl.commands.dashboard`` imports :mod:`trapsctl.tui.app`
inside the command function: the one deliberate edge.
"""
