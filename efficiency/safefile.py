"""Files that are safe to load: JSON and safetensors only, a content hash checked before parsing.

Every file govgym writes and reads again (run snapshots, memo trees, agents) goes through here, so
that loading one can never run code: nothing is unpickled. A verified file is

    {"format": "govgym-run-snapshot", "version": 2, "sha256": "<hex>", "json_bytes": a, "tensor_bytes": b}\\n
    <a bytes of JSON: the state>
    <b bytes of safetensors: its tensors (0 when there are none)>

The header line is read first (at most 64 KiB): a wrong format or version is refused before anything
else, then the sha256 of everything after the header line is compared with the header's, and only
then are the JSON and the tensors parsed. State objects go through ``pack``/``unpack``, whose only
non-JSON types are an allowlist (tensors, numpy arrays, tuples, non-string-keyed dicts, non-finite
floats), so what a file can produce on load is plain data.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from govgym import sealed
from govgym.results import atomic_write
from govgym.sealed import plain_file_name
from govgym.sealed import sha256_bytes as sha256_bytes  # re-exported: the one definition is in the base
from govgym.typed import ConfigError

HEADER_LIMIT = 64 * 1024
"""The header line is short (~200 bytes); a file whose first 64 KiB hold no newline is not one of ours."""
ARRAY_DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32", "float64")
"""numpy dtypes an inline array (``pack`` without a tensor store) may have."""


class UnsafeFileError(ConfigError):
    """A file is not what it claims (format, version, length, content hash, a name outside its folder);
    nothing of it was used. A ConfigError, so the CLI reports it as one sentence."""


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain_file_name(what: str, name: str) -> str:
    """``name`` if it can be one file name inside a folder (``govgym.sealed.plain_file_name``)."""
    return plain_file_name(name, what, error=UnsafeFileError)


def confined(folder: str | Path, name: str, what: str = "file") -> Path:
    """``folder/name``, refused unless ``name`` is a plain file name that resolves inside ``folder``.

    The rule of every sealed file (``govgym.sealed.confined``), raising ``UnsafeFileError``.
    """
    return sealed.confined(folder, name, what, error=UnsafeFileError)


# ---------------------------------------------------------------------------- pack / unpack
def pack(obj: Any, tensors: dict[str, torch.Tensor] | None = None) -> Any:
    """A JSON-able form of ``obj``; tensors and arrays go to ``tensors`` (or inline as lists when None)."""
    if isinstance(obj, torch.Tensor):
        if tensors is None:
            return pack(obj.detach().cpu().numpy())
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()  # clone: no shared storage in the file
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        if tensors is not None:
            key = f"t{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {"__ndarray__": key}
        if obj.dtype.name not in ARRAY_DTYPES:
            raise TypeError(
                f"pack: numpy arrays of dtype {obj.dtype} are not stored; allowed: {', '.join(ARRAY_DTYPES)}."
            )
        return {
            "__array__": {
                "dtype": obj.dtype.name,
                "shape": list(obj.shape),
                "data": [pack(x) for x in obj.ravel().tolist()],
            }
        }
    if isinstance(obj, np.generic):
        return pack(obj.item())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(x, tensors) for x in obj]}
    if isinstance(obj, list):
        return [pack(x, tensors) for x in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack(v, tensors) for k, v in obj.items()}
        return {"__items__": [[pack(k, tensors), pack(v, tensors)] for k, v in obj.items()]}
    raise TypeError(
        f"pack: {type(obj).__name__} is not stored in a safe file (only JSON types, tensors and arrays)."
    )


def unpack(obj: Any, tensors: dict[str, torch.Tensor] | None = None) -> Any:
    """The inverse of ``pack``; any other tagged object is refused (``UnsafeFileError``)."""
    if isinstance(obj, list):
        return [unpack(x, tensors) for x in obj]
    if not isinstance(obj, dict):
        return obj
    tags = [k for k in obj if k.startswith("__")]
    if not tags:
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if len(obj) != 1:
        raise UnsafeFileError(f"unexpected keys {sorted(obj)} in a stored object.")
    tag, val = tags[0], obj[tags[0]]
    if tag in ("__tensor__", "__ndarray__"):
        if tensors is None or not isinstance(val, str) or val not in tensors:
            raise UnsafeFileError(f"a stored object names tensor {val!r}, which the file does not hold.")
        return tensors[val] if tag == "__tensor__" else tensors[val].numpy()
    if tag == "__array__":
        if not isinstance(val, dict) or val.get("dtype") not in ARRAY_DTYPES:
            raise UnsafeFileError(
                f"a stored array has dtype {val.get('dtype') if isinstance(val, dict) else val!r}; allowed: {', '.join(ARRAY_DTYPES)}."
            )
        return np.asarray(unpack(val["data"]), dtype=val["dtype"]).reshape(val["shape"])
    if tag == "__float__" and val in ("nan", "inf", "-inf"):
        return float(val)
    if tag == "__tuple__" and isinstance(val, list):
        return tuple(unpack(x, tensors) for x in val)
    if tag == "__items__" and isinstance(val, list):
        return {_hashable(unpack(k, tensors)): unpack(v, tensors) for k, v in val}
    raise UnsafeFileError(f"a stored object is tagged {tag!r}, which is not one govgym writes.")


def _hashable(k: Any) -> Any:
    if isinstance(k, (list, dict)) or isinstance(k, (torch.Tensor, np.ndarray)):
        raise UnsafeFileError(f"a stored dict has an unhashable key {k!r}.")
    return k


# ---------------------------------------------------------------------------- the verified file
def dumps(
    fmt: str, version: int, state: Any, tensors: dict[str, torch.Tensor] | None = None, **extra: Any
) -> bytes:
    """The bytes of a verified file: header line, JSON state, safetensors tensors (see the module docstring)."""
    body = json.dumps(state, allow_nan=False, separators=(",", ":")).encode()
    blob = b""
    if tensors:
        blob = save(tensors)
    header = {
        "format": fmt,
        "version": version,
        "sha256": sha256_bytes(body + blob),
        "json_bytes": len(body),
        "tensor_bytes": len(blob),
        **extra,
    }
    return json.dumps(header, allow_nan=False).encode() + b"\n" + body + blob


def write(
    path: str | Path,
    fmt: str,
    version: int,
    state: Any,
    tensors: dict[str, torch.Tensor] | None = None,
    **extra: Any,
) -> Path:
    """Write a verified file atomically."""
    return atomic_write(Path(path), dumps(fmt, version, state, tensors, **extra))


def read(
    path: str | Path, fmt: str, version: int, what: str
) -> tuple[dict[str, Any], Any, dict[str, torch.Tensor]]:
    """(header, JSON state, tensors) of a verified file; ``UnsafeFileError`` naming ``what`` otherwise.

    Checked in this order, each before anything later is parsed: the header line (format, version),
    the lengths (a truncated file), the sha256 of the rest; then JSON and safetensors are parsed.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise UnsafeFileError(
            f"{what} {path} is empty (0 bytes); it was cut off while being written. Write it again."
        )
    nl = data.find(b"\n", 0, HEADER_LIMIT)
    try:
        header = json.loads(data[:nl]) if nl > 0 else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != fmt:
        start = data[:40]
        raise UnsafeFileError(
            f"{what} {path} is not a '{fmt}' file (it starts with {start!r}). Point to a file govgym wrote; "
            "files from older govgym versions were pickles and are not loaded, because unpickling can run code."
        )
    if header.get("version") != version:
        raise UnsafeFileError(
            f"{what} {path} has format version {header.get('version')!r}; this govgym reads version {version}. Write it again with this version."
        )
    rest = data[nl + 1 :]
    a, b = header.get("json_bytes"), header.get("tensor_bytes")
    if not isinstance(a, int) or not isinstance(b, int) or a < 0 or b < 0 or len(rest) != a + b:
        raise UnsafeFileError(
            f"{what} {path} holds {len(rest)} bytes after its header, expected {a} + {b}: it was truncated or edited. Write it again."
        )
    if sha256_bytes(rest) != header.get("sha256"):
        raise UnsafeFileError(
            f"{what} {path} fails its content hash (sha256): its bytes were changed after it was written (corruption or tampering). It was not loaded; write it again."
        )
    try:
        state = json.loads(rest[:a])
        tensors: dict[str, torch.Tensor] = {}
        if b:
            from safetensors.torch import load

            tensors = load(rest[a:])
    except Exception as err:  # the hash matched: a file written by a broken writer, still never executed
        raise UnsafeFileError(
            f"{what} {path} cannot be parsed ({type(err).__name__}: {err}); write it again."
        ) from None
    return header, state, tensors


__all__ = [
    "UnsafeFileError",
    "confined",
    "dumps",
    "pack",
    "read",
    "sha256_bytes",
    "sha256_file",
    "unpack",
    "write",
]
