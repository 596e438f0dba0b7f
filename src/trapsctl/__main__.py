"""``python -m trapsctl`` runs the console."""

from trapsctl.cli import main

main()
