"""trapsd: the Traps endpoint agent (prevention modules, durable outbox, check-in).

The agent must stay lean (RSS budget 30 MB): only the standard library, psutil and the
pydantic-free parts of :mod:`trapsapi` may be imported from this package.
"""

from trapsapi import __version__

__all__ = ["__version__"]
