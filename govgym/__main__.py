"""``python -m govgym``: the same as the ``govgym`` command (``govgym.cli.main``)."""

from __future__ import annotations

import sys

from govgym.cli import main

if __name__ == "__main__":
    sys.exit(main())
