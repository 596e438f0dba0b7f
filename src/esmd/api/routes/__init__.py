"""One router per resource; ``esmd.app`` includes them all."""
