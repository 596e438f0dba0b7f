"""One module per noun; :mod:`trapsctl.cli` combines them."""
