"""A learned curve predictor turned into a governor (issue 20, learner "curve predictor").

From the partial eval-loss curve a run has shown so far — only what the governor's observation holds, so
that it deploys through ``GovernorCallback`` on any model — predict

- ``z = ln(E_final / E_t)``: how much lower the fixed-budget run's final eval loss ends than now, as
  quantiles (0.05, 0.1, 0.25, 0.5, 0.75, 0.9) by pinball loss, each shifted by split-conformal
  calibration on out-of-fold predictions (leave-instances-out) so that P(z < q_a) = a on train
  instances never seen by the model that predicted them;
- ``V``: the value of continuing optimally along the fixed path under the price objective,
  max_{s >= t} sum_{t < u <= s} r_u (>= 0; 0 = stopping now is the best the path allows).

It is trained on the fixed-budget paths of the corpus's saved step trees (``govgym collect-world``),
train split only, with a numpy-only forward pass at run time (a JSON model behind a format version and a
content hash; no pickle).

The governor (``learned_curve`` in agents/heuristics.py): under the equal-quality objective (a 21st feature, the tolerance) it
stops at the first decision where ``q_alpha(z) >= −ln(1 + tolerance)``: with probability 1 − alpha the
full budget would not have ended more than the tolerance below the current loss. Under the price
objective it stops when the predicted continuation value falls to ``tau``. Learning curves are
predictable from their beginning (LC-PFN, ifBO); a rule that only reads the last interval's gain
cannot use that.

    govgym fit-curve instances=configs/instances_v2.yaml memo=data/corpus_v2/memo --out runs/curve_v2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym.efficiency import safefile
from govgym.efficiency.signals import FEATURE_NAMES, spec_hash
from govgym.typed import ConfigError

F = {name: i for i, name in enumerate(FEATURE_NAMES)}

CURVE_FORMAT = "govgym-curve-model"
CURVE_VERSION = 1
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9)
INPUTS = (
    "used",
    "eval_ratio",
    "best_gap",
    "gain_rate",
    "gain_rate_ema",
    "train_eval_gap",
    "since_best",
    "log_grad_norm_ratio",
    "grad_norm_cv",
    "log_noise_scale",
    "lr_frac",
    "data_kept",
    "strategy_full",
    "lam",
    "log_y_prev1",
    "log_y_prev2",
    "used_prev1",
    "used_prev2",
    "slope",
    "decisions",
)
"""Model inputs, all derived from the observations of one episode so far (``features``)."""


def features(history: list[np.ndarray]) -> np.ndarray:
    """The model's input at the last observation of ``history`` (the episode's observations so far)."""
    o = history[-1]
    used = 1.0 - float(o[F["budget_left"]])
    y = max(float(o[F["eval_ratio"]]), 1e-6)
    prev = [history[-1 - k] if len(history) > k else history[0] for k in (1, 2)]
    yp = [max(float(p[F["eval_ratio"]]), 1e-6) for p in prev]
    up = [1.0 - float(p[F["budget_left"]]) for p in prev]
    slope = (math.log(y) - math.log(yp[0])) / max(used - up[0], 1e-3) if len(history) > 1 else 0.0
    names = INPUTS[1:14]
    return np.array(
        [
            used,
            *(float(o[F[n]]) for n in names),
            math.log(yp[0]) - math.log(y),
            math.log(yp[1]) - math.log(y),
            up[0],
            up[1],
            float(np.clip(slope, -10.0, 10.0)),
            min(len(history) - 1, 30) / 30.0,
        ],
        dtype=np.float64,
    )


@dataclass
class CurveModel:
    """MLP (two tanh layers) → len(QUANTILES) quantiles of z and the continuation value V; numpy forward."""

    x_mean: np.ndarray
    x_std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    y_scale: np.ndarray
    """Per output, the scale the network predicts in (z quantiles then V)."""
    conformal: np.ndarray
    """Per quantile of z, the shift that makes its out-of-fold coverage equal to its level."""
    provenance: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(quantiles of z, shape (n, len(QUANTILES)) sorted; V, shape (n,)) for inputs (n, len(INPUTS))."""
        h = (np.atleast_2d(x) - self.x_mean) / self.x_std
        for w, b in self.layers[:-1]:
            h = np.tanh(h @ w + b)
        w, b = self.layers[-1]
        out = (h @ w + b) * self.y_scale
        q = np.sort(out[:, : len(QUANTILES)] + self.conformal, axis=1)
        return q, np.maximum(out[:, len(QUANTILES)], 0.0)

    def save(self, path: str | Path) -> Path:
        body = {
            "spec_hash": spec_hash(),
            "inputs": list(INPUTS),
            "quantiles": list(QUANTILES),
            "x_mean": safefile.pack(self.x_mean),
            "x_std": safefile.pack(self.x_std),
            "y_scale": safefile.pack(self.y_scale),
            "conformal": safefile.pack(self.conformal),
            "layers": [[safefile.pack(w), safefile.pack(b)] for w, b in self.layers],
            "provenance": self.provenance,
        }
        return safefile.write(Path(path), CURVE_FORMAT, CURVE_VERSION, body)


def load_curve_model(path: str | Path) -> CurveModel:
    """A model written by ``CurveModel.save``: format, version, hash, then every value checked."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"learned_curve: model {p} is not a file. Fit one with `govgym fit-curve --out {p.parent}`, or "
            "leave model= out to use the packaged configs/curve_v2.json."
        )
    try:
        _, body, _ = safefile.read(p, CURVE_FORMAT, CURVE_VERSION, "curve model")
    except safefile.UnsafeFileError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(body, dict):
        raise ConfigError(f"curve model {p}: not a JSON object; fit it again with `govgym fit-curve`.")
    if body.get("spec_hash") != spec_hash() or list(body.get("inputs", [])) != list(INPUTS):
        raise ConfigError(
            f"curve model {p}: fitted for observation spec {body.get('spec_hash')!r} and other inputs; this "
            f"code has {spec_hash()!r}. Fit it again with `govgym fit-curve` (the corpus is reused)."
        )
    if list(body.get("quantiles", [])) != list(QUANTILES):
        raise ConfigError(
            f"curve model {p}: quantiles {body.get('quantiles')} are not {list(QUANTILES)}; refit it."
        )

    def arr(name: str, v: Any, shape: tuple[int | None, ...]) -> np.ndarray:
        try:
            a = np.asarray(safefile.unpack(v), dtype=np.float64)
        except (safefile.UnsafeFileError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"curve model {p}: {name} is not a numeric array ({err}).") from None
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
            raise ConfigError(f"curve model {p}: {name} has shape {a.shape}, expected {shape}; refit it.")
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"curve model {p}: {name} holds NaN or inf; refit it.")
        return a

    n_in, n_out = len(INPUTS), len(QUANTILES) + 1
    raw = body.get("layers")
    if (
        not isinstance(raw, list)
        or not (2 <= len(raw) <= 4)
        or not all(isinstance(x, list) and len(x) == 2 for x in raw)
    ):
        raise ConfigError(f"curve model {p}: layers must be 2 to 4 [weight, bias] pairs; refit it.")
    layers, width = [], n_in
    for i, (w, b) in enumerate(raw):
        last = i == len(raw) - 1
        wa = arr(f"layers[{i}].weight", w, (width, n_out if last else None))
        ba = arr(f"layers[{i}].bias", b, (wa.shape[1],))
        if wa.shape[1] > 4096:
            raise ConfigError(f"curve model {p}: layer {i} is {wa.shape[1]} wide (at most 4096); refit it.")
        layers.append((wa, ba))
        width = wa.shape[1]
    x_std = arr("x_std", body.get("x_std"), (n_in,))
    y_scale = arr("y_scale", body.get("y_scale"), (n_out,))
    if np.any(x_std <= 0) or np.any(y_scale <= 0):
        raise ConfigError(f"curve model {p}: x_std and y_scale must be positive; refit it.")
    return CurveModel(
        x_mean=arr("x_mean", body.get("x_mean"), (n_in,)),
        x_std=x_std,
        layers=layers,
        y_scale=y_scale,
        conformal=arr("conformal", body.get("conformal"), (len(QUANTILES),)),
        provenance=body.get("provenance") if isinstance(body.get("provenance"), dict) else {},
    )


def default_curve_path() -> Path:
    from importlib.resources import files

    return Path(str(files("govgym.configs") / "curve_v2.json"))


_MODELS: dict[str, CurveModel] = {}
"""Loaded models by resolved path (a worker builds one policy per task: the file is read once)."""


def cached_model(model: str) -> CurveModel:
    """The model at ``model`` ('' = the packaged one), loaded once per process."""
    key = str(Path(model).resolve()) if model else ""
    if key not in _MODELS:
        _MODELS[key] = load_curve_model(model or default_curve_path())
    return _MODELS[key]


__all__ = [
    "CURVE_FORMAT",
    "CURVE_VERSION",
    "INPUTS",
    "QUANTILES",
    "CurveModel",
    "default_curve_path",
    "features",
    "cached_model",
    "load_curve_model",
]
