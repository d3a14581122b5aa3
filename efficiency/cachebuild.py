"""Build a cached folder once, atomically, across processes: the embedded bases and split (d)'s encoder.

A folder is named ``<recipe key>-<stdlib hash>``; a complete folder of the same recipe built from another
standard library is reused (the cache is what makes results reproducible across a Python update). A
build writes into ``.tmp-<name>-<pid>-<uid>`` and renames it into place, under a file lock, so readers
see no folder or a complete one and a second process waits and reuses; ``clean_stale_tmp`` removes the
temp folders of builds killed mid-way.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def clean_stale_tmp(root: Path) -> None:
    """Remove ``.tmp-<name>-<pid>-<uid>`` build folders whose process is gone (killed mid-build).

    A build writes into such a folder and renames it into place; a ``kill -9`` leaves it behind. A
    folder of a live process (a concurrent build) is kept.
    """
    if not root.is_dir():
        return
    for tmp in root.glob(".tmp-*"):
        parts = tmp.name.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (PermissionError, OSError):
            continue  # alive under another user, or unknown: leave it


def build_once(
    root: Path,
    key: str,
    stdlib_hash: str,
    complete: Callable[[Path], bool],
    build: Callable[[Path], object],
    announce: Callable[[Path], None] | None = None,
) -> Path:
    """The complete folder ``root/<key>-<stdlib_hash[:10]>`` (or another complete ``<key>-*``), built if none.

    Args:
        root: the cache folder of this kind of artifact.
        key: the recipe's short hash.
        stdlib_hash: this machine's standard-library manifest hash.
        complete: whether a folder is complete (its marker files are there).
        build: fills an empty folder (the temp folder, renamed into place when it returns).
        announce: called with the final path just before a build starts (a log line).
    """
    from filelock import FileLock

    clean_stale_tmp(root)  # left by a build killed mid-way (kill -9 during prepare)
    final = root / f"{key}-{stdlib_hash[:10]}"
    if not complete(final):
        others = sorted(p for p in root.glob(f"{key}-*") if complete(p)) if root.is_dir() else []
        final = others[0] if others else final
    if complete(final):
        return final
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".locks" / f"{final.name}.lock")):  # a second process waits, then reuses
        if not complete(final):
            if announce is not None:
                announce(final)
            tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                build(tmp)
                os.rename(tmp, final)  # atomic: readers see no folder or a complete one
            except OSError:
                if not complete(final):
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final


__all__ = ["build_once", "clean_stale_tmp"]
