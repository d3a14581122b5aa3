"""Value checks of a loaded fast-backend model file (``envs/fastmodel.py``'s ``load_model`` calls them).

The file's content hash is integrity, not validation: anyone can recompute a sha256 after editing a
weight. So every value the fast env will compute with is checked here as strictly as a config value:
array shapes against INPUTS/OUTPUTS and the layer chain, finiteness, scale, standard deviations > 0,
and the mechanics tables (FLOPs, peaks, E_0, noise) in ranges a fit of this code can produce. A
refused file is one sentence naming the field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from govgym.envs.fastinputs import INPUT_SETS
from govgym.envs.fastmodel import OUTPUTS, FastModel
from govgym.typed import ConfigError

MAX_MEMBERS = 64
"""Most ensemble members a model file may hold (``fit-fast members=`` fits 5 by default for v2 worlds)."""

MAX_SCALE = 1e6
"""Largest |value| of a normalization statistic or a weight (the fitted ones are below ~1e2): beyond it the
model's arithmetic overflows or is not a fit of this code's."""


def _check_array(
    where: str, name: str, a: np.ndarray, shape: tuple[int, ...], lo: float = -MAX_SCALE
) -> None:
    if a.shape != shape:
        raise ConfigError(
            f"{where}: {name} has shape {a.shape}, expected {shape}; refit it with `govgym fit-fast`."
        )
    if not np.isfinite(a).all():
        raise ConfigError(f"{where}: {name} holds nan or inf values; refit it with `govgym fit-fast`.")
    if (a < lo).any() or (np.abs(a) > MAX_SCALE).any():
        expect = f"> {lo:g}" if lo > -MAX_SCALE else f"within ±{MAX_SCALE:g}"
        raise ConfigError(f"{where}: {name} must hold values {expect} and <= {MAX_SCALE:g}; refit it.")


def _check_table(where: str, name: str, table: Any, width: int, hi: float) -> None:
    """A non-empty {"task|strategy": value(s)} table of finite numbers in (0, hi]."""
    if not isinstance(table, dict) or not table:
        raise ConfigError(
            f"{where}: mechanics.{name} must be a non-empty mapping of 'task|strategy' entries."
        )
    for key, v in table.items():
        vals = v if width > 1 else [v]
        if not isinstance(key, str) or key.count("|") != 1:
            raise ConfigError(f"{where}: mechanics.{name} key {key!r} is not 'task|strategy'.")
        if not isinstance(vals, list) or len(vals) != width:
            raise ConfigError(f"{where}: mechanics.{name}[{key!r}] must be {width} number(s), got {v!r}.")
        for x in vals:
            ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x <= hi
            if not ok:
                raise ConfigError(
                    f"{where}: mechanics.{name}[{key!r}] must be finite and in (0, {hi:g}], got {v!r}."
                )


def check_model(model: FastModel, where: str = "fast model") -> None:
    """Refuse a model whose values ``fit-fast`` could not have written (the content hash proves nothing
    about them: anyone can recompute it after an edit).

    Checked: the declared input list (v1's or v2's), at most ``MAX_MEMBERS`` ensemble members; each
    array's shape against the inputs/OUTPUTS and each member's layer chain, finiteness, scale (|x| <= 1e6,
    standard deviations > 0); the mechanics tables: FLOPs per step and eval in (0, 1e24], peaks in
    (0, 1e9] MiB, E_0 per task and per instance in (0, 100] (a cross-entropy), parameter counts in
    (0, 1e13], the noise's standard deviations finite and >= 0 (one per output).
    """
    if tuple(model.inputs) not in INPUT_SETS.values():
        raise ConfigError(
            f"{where}: inputs {str(list(model.inputs)):.200} are neither v1's nor v2's input list; refit it "
            "with `govgym fit-fast`."
        )
    if len(model.more) > MAX_MEMBERS - 1:
        raise ConfigError(f"{where}: {model.members} ensemble members, at most {MAX_MEMBERS}; refit it.")
    n_in, n_out = len(model.inputs), len(OUTPUTS)
    _check_array(where, "x_mean", model.x_mean, (n_in,))
    _check_array(where, "x_std", model.x_std, (n_in,), lo=0.0)
    _check_array(where, "y_mean", model.y_mean, (n_out,))
    _check_array(where, "y_std", model.y_std, (n_out,), lo=0.0)
    if (model.x_std <= 0).any() or (model.y_std <= 0).any():
        raise ConfigError(
            f"{where}: x_std / y_std must be > 0 (they divide); refit it with `govgym fit-fast`."
        )
    for j, layers in enumerate([model.layers, *model.more]):
        name = "layers" if j == 0 else f"members[{j - 1}]"
        width = n_in
        for i, (w, b) in enumerate(layers):
            last = i == len(layers) - 1
            if w.ndim != 2 or w.shape[0] != width or (last and w.shape[1] != n_out):
                expect = f"({width}, {n_out if last else 'hidden'})"
                raise ConfigError(
                    f"{where}: {name}[{i}].weight has shape {w.shape}, expected {expect}; refit it."
                )
            _check_array(where, f"{name}[{i}].weight", w, w.shape)
            _check_array(where, f"{name}[{i}].bias", b, (w.shape[1],))
            width = w.shape[1]
    m = model.mechanics
    if not isinstance(m, dict):
        raise ConfigError(f"{where}: mechanics must be a mapping, got {type(m).__name__}.")
    missing = [k for k in ("costs", "peaks", "e0", "noise") if k not in m]
    if missing:
        raise ConfigError(f"{where}: mechanics lacks {', '.join(missing)}; refit it with `govgym fit-fast`.")
    _check_table(where, "costs", m["costs"], 2, 1e24)
    _check_table(where, "peaks", m["peaks"], 1, 1e9)
    e0 = m["e0"]
    if not isinstance(e0, dict) or not e0:
        raise ConfigError(f"{where}: mechanics.e0 must be a non-empty mapping of task -> initial eval loss.")
    for name, hi in (("e0", 100.0), ("e0_instance", 100.0), ("params", 1e13)):
        table = m.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: mechanics.{name} must be a mapping, got {type(table).__name__}.")
        for key, v in table.items():
            if not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= hi
            ):
                what = "a parameter count" if name == "params" else "an eval loss"
                raise ConfigError(
                    f"{where}: mechanics.{name}[{key!r}] must be {what} in (0, {hi:g}], got {v!r}."
                )
    if tuple(model.inputs) != INPUT_SETS[1] and not m.get("params"):
        raise ConfigError(
            f"{where}: a v2-input model needs mechanics.params (the bases' parameter counts); refit it."
        )
    noise = m["noise"]
    sd = noise.get("sd") if isinstance(noise, dict) else None
    scale = noise.get("dy_scale_sd") if isinstance(noise, dict) else None
    if not (isinstance(sd, list) and len(sd) == n_out):
        raise ConfigError(
            f"{where}: mechanics.noise.sd must be {n_out} numbers (one per output), got {sd!r:.80}."
        )
    for x in [*sd, scale]:
        if not (
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1e3
        ):
            raise ConfigError(
                f"{where}: mechanics.noise (sd, dy_scale_sd) must be finite numbers in [0, 1000], got {x!r}."
            )
    base = m.get("base_key")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{where}: mechanics.base_key must be a string, got {base!r}.")


__all__ = ["MAX_MEMBERS", "MAX_SCALE", "check_model"]
