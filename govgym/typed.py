"""Typed, validated configuration: YAML/dicts -> dataclasses, with errors that name the field.

Every config concern is one dataclass (PEFT style) validated in ``__post_init__``. This module turns
nested dicts into those dataclasses, rejects unknown keys with the closest match, and applies
``key.sub=value`` command-line overrides.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import numbers
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from govgym.errors import ConfigError, did_you_mean

T = TypeVar("T")


def check_choice(field: str, value: Any, allowed: typing.Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed`` (suggests the closest name)."""
    allowed = list(allowed)
    if value not in allowed:
        hint = did_you_mean(value, allowed)
        raise ConfigError(f"{field}: got {value!r}; allowed: {', '.join(map(str, allowed))}.{hint}")


def check_range(
    field: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    allow_inf: bool = False,
) -> None:
    """Raise ConfigError unless ``value`` is a real number with lo <= value <= hi (lo < value if ``lo_open``).

    NaN never passes (every comparison with NaN is False, so a plain ``value < lo`` test would let it
    through); +-inf passes only with ``allow_inf=True`` and inside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{field}: got {value!r}; expected a number.")
    left = "(-inf" if lo is None else f"{'(' if lo_open else '['}{lo}"
    right = f"{hi}]" if hi is not None else ("inf]" if allow_inf else "inf)")
    span = f"{left}, {right}"
    if math.isnan(value):
        raise ConfigError(f"{field}: got nan; must be a number in {span}.")
    if math.isinf(value) and not allow_inf:
        raise ConfigError(f"{field}: got {value!r}; must be a finite number in {span}.")
    if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
        raise ConfigError(f"{field}: got {value!r}; must lie in {span}.")


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Names that may become part of a file name: letters, digits, '.', '_', '-'; no '/', no '..'."""


def check_name(field: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is a safe name (see ``SAFE_NAME``) that cannot escape a folder."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value or len(value) > 200:
        raise ConfigError(
            f"{field}: got {value!r}; a name may hold only letters, digits, '.', '_' and '-' (starting with a "
            "letter or digit, no '..', at most 200 characters), since it becomes part of file names."
        )


MAX_INT = 2**63 - 1
"""Integers a config takes: what an int64 (torch, numpy, a step counter) holds; 1e300 is refused here,
at load, instead of overflowing where it becomes a tensor size or a step count."""


def _coerce(field: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(field, arg, value)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{field}: got {value!r}, which is not allowed.")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{field}: expected a mapping of {tp.__name__} fields, got {value!r}.")
        return from_dict(tp, value, prefix=f"{field}.")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{field}: expected a list, got {value!r}.")
        inner = args[0] if args else Any
        items = [_coerce(f"{field}[{i}]", inner, v) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{field}: expected a mapping, got {value!r}.")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{field}: expected true/false, got {value!r}.")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{field}: expected an integer, got {value!r}.")
        out: int | None = None
        if isinstance(value, int):
            out = value
        elif isinstance(value, float) and value.is_integer():
            out = int(value)
        elif isinstance(value, str):
            try:
                out = int(value)  # exact for long digit strings, which float() would round
            except ValueError:
                try:
                    f = float(value)  # '1e3', '20.0'; '2.5', 'nan', 'inf' are not integers
                    out = int(f) if f.is_integer() else None
                except ValueError:
                    out = None
        if out is None:
            raise ConfigError(f"{field}: expected an integer, got {value!r}.")
        if not -MAX_INT <= out <= MAX_INT:
            raise ConfigError(
                f"{field}: got {value!r}, which does not fit a 64-bit integer (|value| <= 2**63 - 1); "
                "counts and sizes that large are not meant, pass a smaller value."
            )
        return out
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{field}: expected a number, got {value!r}.")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{field}: expected a string, got {value!r}.")
    return value


def coerce(field: str, tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, list[...], a dataclass ...), or ConfigError naming ``field``."""
    return _coerce(field, tp, value)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"{prefix or cls.__name__ + ': '}expected a mapping of {cls.__name__} fields, got {data!r}."
        )
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{prefix}{key}: unknown config key for {cls.__name__}.{did_you_mean(key, names)} "
                f"Known keys: {', '.join(names)}."
            )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in data]
    if missing:
        who = f" {data['name']!r}" if isinstance(data.get("name"), str) else ""
        raise ConfigError(
            f"{prefix}{missing[0]}: required field of {cls.__name__}{who} is missing (required: "
            f"{', '.join(required)}); add {missing[0]}: <value>."
        )
    kwargs = {k: _coerce(f"{prefix}{k}", hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        msg = str(err)
        if prefix and not msg.startswith(prefix):
            msg = prefix + msg
        raise ConfigError(msg) from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (YAML/JSON-safe)."""
    return dataclasses.asdict(obj)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=1e-3", "seed=2"]`` into a nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r}: expected key=value, e.g. optim.lr=1e-3.")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r}: {part} is not a section.")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``extra`` into a copy of ``base``."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing file or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"config file {str(p)!r} does not exist. Pass an existing YAML file, e.g. configs/default.yaml."
        )
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping at the top level, got {type(data).__name__}."
        )
    return data


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (and its bases), by field name.

    Python keeps no attribute docstrings at run time, so they are read from the class source with
    ``ast`` (a string expression right after an annotated assignment), as Sphinx's autodoc does.
    Fields without one, or a class whose source is not available, map to ``""``.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def config_keys(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every settable key of dataclass ``cls`` as (dotted key, default, docstring), nested dataclasses flattened.

    What ``govgym <cmd> --help`` lists: ``optim.lr`` for ``RunConfig.optim.lr`` and so on.
    """
    out: list[tuple[str, Any, str]] = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints.get(f.name)
        if dataclasses.is_dataclass(tp):
            out += config_keys(tp, f"{prefix}{f.name}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append((prefix + f.name, default, docs[f.name]))
    return out


def keys_help(*classes: type, width: int = 30, line: int = 110) -> str:
    """Text block listing each class's config keys: ``key=default`` and its docstring, wrapped beside it."""
    lines = []
    for cls in classes:
        for key, default, doc in config_keys(cls):
            if default is dataclasses.MISSING:
                shown = f"{key}=<required>"
            elif isinstance(default, (list, tuple)):
                shown = f"{key}=[{','.join(map(str, default))}]"
            else:
                shown = f"{key}={default!r}" if isinstance(default, str) else f"{key}={default}"
            text = textwrap.wrap(" ".join(doc.split()), line - width - 3) or [""]
            if len(shown) >= width:
                lines.append(f"  {shown}")
            else:
                lines.append(f"  {shown:<{width}} {text.pop(0)}")
            lines += [f"  {'':<{width}} {t}" for t in text]
    return "\n".join(lines)
