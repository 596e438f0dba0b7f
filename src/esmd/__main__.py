"""``python -m esmd`` is ``esmd``."""

from esmd.cli import main

raise SystemExit(main())
