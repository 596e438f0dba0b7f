import sys

from trapsd.cli import main

sys.exit(main())
