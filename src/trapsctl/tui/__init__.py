"""The Textual dashboard (``trapsctl dashboard``), a later issue.

Only this package may import textual; the scripted commands never import it (an
import-linter contract in pyproject.toml), so that ``trapsctl … -o json`` and every shell
completion stay fast.
"""
