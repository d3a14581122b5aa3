"""Where a memo's saved trees live: one namespace per instance set, code version and torch thread count.

A saved step is exact only under the arithmetic that produced it, so the namespace folder
(``<instance set>-<hash>-t<threads>``) covers the instance-set file's bytes, the observation spec, govgym's
and torch's versions and the thread count; ``workers`` decides the thread count a command reads at.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from govgym import __version__
from govgym.efficiency.signals import spec_hash
from govgym.envs.instances import default_instances_path

TREE_SUFFIX = ".tree"
"""A saved tree's file suffix (``<instance>-<seed>.tree``)."""


def memo_namespace(instances_path: str | Path, threads: int) -> str:
    """The folder name under which memoized trees of an instance set are valid.

    A memo is only as exact as the code and the arithmetic that produced it: the key covers the
    instance-set file's bytes, the observation spec, govgym's and torch's versions and the torch
    thread count (a different reduction order changes the last bits of a loss).
    """

    h = hashlib.sha256(Path(instances_path).read_bytes())
    h.update(f"{spec_hash()}|{__version__}|{torch.__version__}".encode())
    return f"{Path(instances_path).stem}-{h.hexdigest()[:12]}-t{threads}"


def worker_threads(workers: int) -> int:
    """Torch threads per worker process when ``workers`` share this machine's cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // workers)


def memo_folder(memo: str | Path, instances: str | Path | None, threads: int) -> Path:
    """Where saved trees of an instance set (None/'' = the packaged one) live under ``memo`` at ``threads``."""

    return Path(memo) / memo_namespace(instances or default_instances_path(), threads)


def memo_siblings(folder: Path) -> list[Path]:
    """Namespaces of the same instance set, code and versions at any thread count (``folder`` first).

    Their outcomes differ from each other's only in the last bits of a loss, so they serve as
    demonstrations (agents/pretrain.py), never as a memo for exact replay.
    """
    base = folder.name.rsplit("-t", 1)[0]
    return [folder] + sorted(p for p in folder.parent.glob(f"{base}-t*") if p != folder)


def stray_memo_warning(folder: Path, workers: int, units: list[tuple[str, int]]) -> str:
    """Warn (and return the warning) when ``folder`` holds none of the trees of ``units`` but a sibling
    namespace holds some of them.

    The trees are exact only at the thread count that made them, so ``workers`` decides which namespace is
    read: ``tune workers=1`` on 2 cores reads ``-t2`` and would re-run for real every step that a
    ``workers=2`` collection saved under ``-t1``. ``units``: the (instance, episode seed) pairs about to
    run. Names the ``workers`` that reads them. '' = nothing to say.
    """
    names = [f"{inst}-{int(seed)}{TREE_SUFFIX}" for inst, seed in units]

    def holds(p: Path) -> bool:
        return any((p / n).is_file() for n in names)

    if holds(folder):
        return ""
    found = [p for p in memo_siblings(folder)[1:] if holds(p)]
    if not found:
        return ""
    hints = []
    for p in found:
        tail = p.name.rsplit("-t", 1)[-1]
        t = int(tail) if tail.isdigit() else 0
        w = (os.cpu_count() or 1) // t if t else 0
        hints.append(f"{p.name} ({t} torch threads: workers={w})" if w >= 1 else p.name)
    msg = (
        f"memo: {folder} holds no saved steps at {worker_threads(workers)} torch threads (workers={workers}), but "
        f"{', '.join(hints)} does: steps saved there are exact only at their own thread count and will be run "
        "again for real. Pass the workers named to reuse them."
    )
    warnings.warn(msg, stacklevel=2)
    return msg


__all__ = [
    "TREE_SUFFIX",
    "memo_folder",
    "memo_namespace",
    "memo_siblings",
    "stray_memo_warning",
    "worker_threads",
]
