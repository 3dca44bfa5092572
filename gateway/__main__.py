"""`python -m gateway`: the command line of `gateway.cli`."""

from __future__ import annotations

import sys

from gateway.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
