"""Plots: matplotlib's pyplot on the non-interactive Agg backend (files only, no display needed)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend selected (imported here: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Any, dpi: int = 110) -> None:
    """Lay out ``fig``, write it to ``path`` (PNG) and close it, so a long job holds no open figures."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


__all__ = ["pyplot", "save_figure"]
