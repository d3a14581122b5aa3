"""``python -m govgym.cli``: the same as the ``govgym`` command."""

from __future__ import annotations

import sys

from govgym.cli import main

sys.exit(main())
