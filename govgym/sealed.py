"""Sealed JSON files: a JSON object that carries the sha256 of its own content, and the files it names.

The one place (base layer: no torch, numpy or gymnasium, so ``govgym.deploy`` may use it) for the rules
every self-describing govgym file shares: an agent's ``agent.json`` (``agents/policies.py``), an
exported governor's ``governor.json`` (``deploy/artifact.py``), and the file names they list
(``efficiency/safefile.py`` uses the same confinement for run snapshots and memo trees).

- **canonical bytes**: what the ``sha256`` field covers: the object without ``sha256``, keys sorted,
  no spaces (``canonical``); ``seal`` adds the field, ``is_sealed`` checks it.
- **confinement**: a file a sealed file names is a plain file name inside the same folder
  (``confined``): no separator, no ``..``, and it resolves inside the folder (no symlink out).
- **reading**: ``read_object`` reads a JSON object or raises one sentence; ``check_format`` refuses a
  wrong format name or version before anything else of the file is used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from govgym.errors import ConfigError


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical(meta: dict[str, Any]) -> bytes:
    """The bytes a sealed JSON object's own hash covers: its content without ``sha256``, keys sorted, no spaces."""
    return json.dumps(
        {k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True, separators=(",", ":")
    ).encode()


def seal(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with its ``sha256`` field set to the hash of its canonical bytes (in place; returned)."""
    meta["sha256"] = sha256_bytes(canonical(meta))
    return meta


def is_sealed(meta: dict[str, Any]) -> bool:
    """Whether ``meta``'s ``sha256`` field is the hash of its canonical bytes (not edited since it was sealed)."""
    return meta.get("sha256") == sha256_bytes(canonical(meta))


def plain_file_name(
    name: Any, what: str, inside: str = "its folder", error: type[Exception] = ConfigError
) -> str:
    """``name`` if it can be one file name inside a folder: a non-empty string, no separator, no '..', no NUL.

    Raises:
        error: (``ConfigError`` or a subclass) naming ``what`` and the refused name.
    """
    bad = (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith("..")
    )
    if bad:
        raise error(
            f"{what}: {name!r} is not a plain file name inside {inside} (it must not be empty, contain '/', "
            "'\\\\' or start with '..'); names that reach outside it are refused."
        )
    return name


def confined(
    folder: str | Path, name: Any, what: str, inside: str = "its folder", error: type[Exception] = ConfigError
) -> Path:
    """``folder/name``, refused unless ``name`` is a plain file name that resolves inside ``folder``."""
    plain_file_name(name, what, inside, error)
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise error(f"{what}: {name!r} resolves to {path}, outside {root}; refused.")
    return path


def read_object(path: Path, what: str, fix: str, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The JSON object in ``path``; else ``error``: unreadable, not JSON, or not an object (``fix`` ends it)."""
    try:
        meta = json.loads(path.read_bytes())
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    except (OSError, ValueError) as err:
        raise error(f"{what}: {path} is not valid JSON ({str(err)[:120]}): {fix}") from None
    return meta


__all__ = ["canonical", "confined", "is_sealed", "plain_file_name", "read_object", "seal", "sha256_bytes"]
