"""Result files: atomic writes, strict JSON, CSV+JSON row tables, and the terminal table.

Every file govgym writes goes through ``atomic_path``/``atomic_write``: it is written to a hidden temp
file beside its destination and renamed over it (``os.replace``, atomic on POSIX and Windows), so a
reader, or a rerun after a kill, sees the old file or the complete new one, never half of one.
``check_output`` refuses an output path that cannot be written before any work starts. This module is
part of the base layer: it imports nothing of govgym but its errors.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from govgym.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; on success it replaces ``path``, on error it is removed.

    For writers that want a path (``torch.save``, ``pq.write_table``, ``safetensors.save_file``)::

        with atomic_path(out / "x.parquet") as tmp:
            pq.write_table(table, tmp)

    The parent folder is created. The temp name is hidden and unique per process and call (two
    processes writing the same file never share a temp file; the last rename wins, whole).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output(path: str | Path, what: str = "--out", kind: str = "dir") -> Path:
    """Refuse an output path that cannot be written, before any work starts; returns it as a Path.

    Args:
        path: where results will go.
        what: the option's name, for the message (``--out``, ``--write``).
        kind: ``dir``: a folder results go into (it may exist; an existing file is refused); ``file``:
            one file to write (an existing folder is refused; an existing file is replaced).

    Raises:
        ConfigError: the path is an existing file (dir) or folder (file), sits under a file, or its
            folder (or the nearest existing folder above it) does not take a new file.
    """
    path = Path(path)
    if kind == "dir" and path.exists() and not path.is_dir():
        raise ConfigError(
            f"{what}: {path} is an existing file, and results go into a folder; pass a new or existing "
            "folder, or remove the file."
        )
    if kind == "file" and path.is_dir():
        raise ConfigError(
            f"{what}: {path} is an existing folder, and this writes one file; pass a file path."
        )
    probe = path if kind == "dir" else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the folder that would be created under
    if not probe.is_dir():
        raise ConfigError(f"{what}: {path} cannot be created: {probe} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=probe):  # the one test that also holds for root and read-only mounts
            pass
    except OSError as err:
        raise ConfigError(
            f"{what}: {path} cannot be written ({err.strerror} in {probe}); pass a folder you can write to."
        ) from None
    return path


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return path


def no_nan(x: Any) -> Any:
    """NaN/inf -> None (recursively through dicts, lists and tuples), so JSON stays strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: no_nan(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [no_nan(v) for v in x]
    return x


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (NaN/inf as null, which every reader accepts; other objects as str)."""
    return json.dumps(no_nan(obj), indent=indent, default=str, allow_nan=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """``to_json(obj)`` written atomically to ``path``."""
    return atomic_write(path, to_json(obj, indent))


def write_rows(
    out: Path, name: str, rows: Sequence[dict[str, Any]], meta: dict[str, Any] | None = None
) -> None:
    """``out/name.csv`` and ``out/name.json`` (``{"meta": ..., "rows": ...}``, strict JSON), each written atomically."""
    out = Path(out)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()) if rows else [])
    w.writeheader()
    w.writerows(rows)
    atomic_write(out / f"{name}.csv", buf.getvalue().encode())  # bytes: keep csv's \r\n as written
    write_json(out / f"{name}.json", {"meta": meta or {}, "rows": list(rows)})


def read_json_rows(path: str | Path, what: str, required: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of a ``write_rows`` JSON file named ``what`` (the command that writes it), checked.

    Raises:
        FileNotFoundError: no such file (the message names it and what writes it).
        ValueError: not JSON, or rows without the ``required`` keys.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"{what}: {p} is not a file; point at the folder `govgym {what}` wrote (with --out)."
        )
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))["rows"]
        missing = [k for k in required if rows and k not in rows[0]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{what}: {p} is not a `govgym {what}` result file ({type(err).__name__}: {err})."
        ) from None
    if missing or not isinstance(rows, list):
        raise ValueError(
            f"{what}: {p} has rows without {', '.join(missing)}; was it written by `govgym {what}`?"
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]], cols: Sequence[str] | None = None) -> str:
    """Fixed-width text table; floats get 4 significant digits."""
    if not rows:
        return "(no rows)"
    cols = list(cols or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    body = [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) for v, w in zip(vals, widths))

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(b) for b in body)])


__all__ = [
    "atomic_path",
    "atomic_write",
    "format_table",
    "no_nan",
    "read_json_rows",
    "to_json",
    "write_json",
    "write_rows",
]
