"""trapsctl: the Traps admin console (scripted verbs; the dashboard lives in trapsctl.tui).

Import nothing heavy here: completions re-run the program on every TAB.
"""

from trapsapi import __version__

__all__ = ["__version__"]
