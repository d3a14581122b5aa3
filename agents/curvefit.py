"""A saturating learning curve fitted to the eval ratios so far: ``L(c) = a + b·c^(−α)`` (numpy only).

``c`` is the budget fraction spent (1 − ``budget_left``), ``L`` the eval ratio E_t / E_0 (both features of
the observation), so the fit and everything predicted from it are scale-free like the observation. Used by
the ``curve_extrapolation`` heuristic (``agents/heuristics.py``) and by the shield (``agents/shield.py``),
which ``GovernorCallback`` loads: no SB3, gymnasium or scipy here.

The fit is bounded least squares by variable projection: for each α of a fixed grid (0.05 … 4,
log-spaced) the model is linear in (a, b), solved exactly under −max L ≤ a ≤ max L and b ≥ 0 (a
non-increasing, convex curve), all α at once; the α with the smallest weighted squared error wins. Two
Huber reweightings make it robust to a noisy evaluation. ``None`` (the callers then continue) when fewer
than 3 points have c > 0, or no α leaves a well-conditioned 2-parameter problem.

The asymptote may be negative: a loss ratio is >= 0, but the curve is only used for c <= 1, never at
c → ∞, and a descent that persists to the budget's end (a learning rate decayed linearly over the budget
keeps the loss falling) is followed only with a < 0; a >= 0 bends it flat, predicts too little gain and
stops a run still falling (``tests/test_rules.py``). ``fit_curve`` picks, by BIC, between that power
law and a line, which extrapolates a stretch that is still straight as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHAS = np.geomspace(0.05, 4.0, 64)
"""The exponents tried: 4 covers the steepest fine-tuning curves seen in the v1 traces; below 0.05 the
curve is indistinguishable from a line in log c. Neighbours differ by 7%."""
MIN_POINTS = 3
"""A 3-parameter curve needs at least 3 points."""
HUBER = 1.345
"""Huber's constant (95% efficiency under Gaussian noise), in units of the residuals' robust scale."""


@dataclass(frozen=True)
class PowerLaw:
    """``L(c) = a + b·c^(−alpha) + s·c``: eval ratio at budget fraction c; ``rmse`` of the fit on its points.

    ``s`` (<= 0) is a descent that lasts to the budget's end, as a learning rate decayed over the budget
    gives; 0 for the plain power law.
    """

    a: float
    b: float
    alpha: float
    rmse: float
    s: float = 0.0

    def __call__(self, c: float) -> float:
        return float(self.values(np.asarray(c, dtype=np.float64)))

    def values(self, c: np.ndarray) -> np.ndarray:
        """``L`` at every budget fraction of ``c``."""
        return self.a + self.b * np.maximum(c, 1e-9) ** (-self.alpha) + self.s * c

    def gain_rate(self, c: float, horizon: float) -> float:
        """Predicted eval-ratio gain per budget fraction from ``c`` to ``c + horizon`` (the ``gain_rate`` feature's units)."""
        return (self(c) - self(c + horizon)) / horizon


def _fit_weighted(c: np.ndarray, r: np.ndarray, w: np.ndarray) -> PowerLaw | None:
    """The weighted fit over every α of ``ALPHAS`` at once (one row per α); None when none is conditioned.

    For a fixed α the problem ``r ≈ a + b·x`` (x = c^(−α), scaled to max 1 so any α stays conditioned) is
    a convex quadratic in (a, b), so its optimum under −max r ≤ a ≤ max r, b ≥ 0 is the unconstrained
    one when feasible, else the best optimum on an edge (b = 0; a = −max r; a = max r).
    """
    a_hi = float(r.max())
    a_lo = -a_hi  # a < 0 follows a descent lasting to c = 1 (module docstring)
    raw = c[None, :] ** (-ALPHAS[:, None])  # (alphas, points)
    scale = raw.max(axis=1, keepdims=True)
    x = raw / scale
    sw = w.sum()
    xm = (x * w).sum(axis=1) / sw
    rm = float((w * r).sum() / sw)
    dx = x - xm[:, None]
    sxx = (w * dx * dx).sum(axis=1)
    sx2 = (w * x * x).sum(axis=1)
    ok = sxx > 1e-12 * sx2  # x (nearly) constant: b is not identifiable at that alpha
    if not ok.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        b_free = np.where(ok, (w * dx * (r - rm)).sum(axis=1) / sxx, np.nan)
        a_free = rm - b_free * xm
        free_ok = ok & (b_free >= 0) & (a_free >= a_lo) & (a_free <= a_hi)
        cands = [  # (a, b) per alpha: the free optimum (where feasible) and the three edges
            (np.where(free_ok, a_free, np.nan), np.where(free_ok, b_free, np.nan)),
            (np.full_like(xm, min(max(rm, a_lo), a_hi)), np.zeros_like(xm)),
            (np.full_like(xm, a_lo), np.maximum(0.0, (w * x * (r - a_lo)).sum(axis=1) / sx2)),
            (np.full_like(xm, a_hi), np.maximum(0.0, (w * x * (r - a_hi)).sum(axis=1) / sx2)),
        ]
    a = np.stack([c_[0] for c_ in cands])  # (4, alphas)
    b = np.stack([c_[1] for c_ in cands])
    sse = (w * (r[None, None, :] - a[..., None] - b[..., None] * x[None]) ** 2).sum(axis=2)
    sse = np.where(np.isfinite(sse) & ok[None, :], sse, np.inf)
    k, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    if not np.isfinite(sse[k, j]):
        return None
    fa, fb, alpha = float(a[k, j]), float(b[k, j] / scale[j, 0]), float(ALPHAS[j])
    rmse = float(np.sqrt(np.mean((r - fa - fb * c ** (-alpha)) ** 2)))
    return PowerLaw(fa, fb, alpha, rmse) if all(map(math.isfinite, (fa, fb, rmse))) else None


@dataclass(frozen=True)
class Line:
    """``L(c) = a + s·c``: the family's fallback while the points do not support a curvature."""

    a: float
    s: float
    rmse: float

    def __call__(self, c: float) -> float:
        return self.a + self.s * c

    def gain_rate(self, c: float, horizon: float) -> float:
        """Predicted eval-ratio gain per budget fraction: −slope, wherever and however far."""
        return -self.s


def _points(c: list[float] | np.ndarray, r: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, r = np.asarray(c, dtype=np.float64), np.asarray(r, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(r) & (c > 0)
    return c[ok], r[ok]


def _fit_trend_weighted(c: np.ndarray, r: np.ndarray, w: np.ndarray) -> PowerLaw | None:
    """``r ≈ a + b·c^(−α) + s·c`` weighted, over every α at once; only interior solutions (b >= 0, s <= 0,
    |a| <= max r): on a bound it is the power law (s = 0) or the line (b = 0), which ``fit_curve`` fits."""
    a_hi = float(r.max())
    raw = c[None, :] ** (-ALPHAS[:, None])
    scale = raw.max(axis=1, keepdims=True)
    design = np.stack([np.ones_like(raw), raw / scale, np.broadcast_to(c, raw.shape)], axis=2)  # (α, n, 3)
    sw = np.sqrt(w)[None, :, None]
    aw, rw = design * sw, r * np.sqrt(w)
    gram = np.einsum("anj,ank->ajk", aw, aw)
    ok = np.linalg.cond(gram) < 1e10  # c^(-α) nearly collinear with 1 and c: not identifiable
    if not ok.any():
        return None
    coef = np.linalg.solve(
        np.where(ok[:, None, None], gram, np.eye(3)), np.einsum("anj,n->aj", aw, rw)[..., None]
    )
    coef = coef[..., 0]
    a, b, s = coef[:, 0], coef[:, 1], coef[:, 2]
    feasible = ok & (b >= 0) & (s <= 0) & (np.abs(a) <= a_hi)
    if not feasible.any():
        return None
    sse = np.where(feasible, ((rw[None, :] - np.einsum("anj,aj->an", aw, coef)) ** 2).sum(axis=1), np.inf)
    j = int(np.argmin(sse))
    law = PowerLaw(float(a[j]), float(b[j] / scale[j, 0]), float(ALPHAS[j]), 0.0, float(s[j]))
    rmse = float(np.sqrt(np.mean((r - law.values(c)) ** 2)))
    return PowerLaw(law.a, law.b, law.alpha, rmse, law.s) if math.isfinite(rmse) else None


def _robust(fit: Any, c: np.ndarray, r: np.ndarray) -> PowerLaw | None:
    """``fit(c, r, weights)`` with two Huber reweightings: an outlying evaluation gets weight scale/|residual|."""
    w = np.ones_like(r)
    law = fit(c, r, w)
    for _ in range(2):
        if law is None:
            return None
        res = np.abs(r - law.values(c))
        scale = 1.4826 * float(np.median(res))  # MAD: the residuals' robust standard deviation
        if not scale > 1e-12:
            break
        w = np.minimum(1.0, HUBER * scale / np.maximum(res, 1e-300))
        law = fit(c, r, w)
    return law


def fit_curve(c: list[float] | np.ndarray, r: list[float] | np.ndarray) -> PowerLaw | Line | None:
    """The family's best curve by BIC (n·ln(SSE/n) + k·ln n, SSE floored at a 1e-6 noise level).

    The family: the power law (3 parameters), the power law with a linear descent (4), and a line (2).
    A power law alone is convex and flattens: on a descent that lasts (a learning rate decayed over the
    budget) or a stretch still straight it predicts too little gain and stops a run still falling; the
    other two follow them, when the points earn their parameters. None as for ``fit_power_law``.
    """
    c, r = _points(c, r)
    law = fit_power_law(c, r)
    if law is None:
        return None
    slope, icpt = np.polyfit(c, r, 1)
    line = Line(float(icpt), float(slope), float(np.sqrt(np.mean((r - icpt - slope * c) ** 2))))
    n = len(c)
    cands: list[tuple[PowerLaw | Line, int]] = [(law, 3), (line, 2)]
    if n >= 5:  # 4 parameters need a point to spare
        trend = _robust(_fit_trend_weighted, c, r)
        if trend is not None:
            cands.append((trend, 4))

    def bic(fit: PowerLaw | Line, k: int) -> float:
        return n * math.log(max(fit.rmse, 1e-6) ** 2) + k * math.log(n)

    return min(cands, key=lambda fk: bic(*fk))[0]


def fit_power_law(c: list[float] | np.ndarray, r: list[float] | np.ndarray) -> PowerLaw | None:
    """The bounded, Huber-robust least-squares power law through (budget fraction, eval ratio) points.

    Args:
        c: budget fractions spent; points with c <= 0 (no interval behind them) or a non-finite value
            are left out.
        r: eval ratios E_t / E_0 at those fractions.

    Returns:
        The fitted ``PowerLaw``, or None with fewer than ``MIN_POINTS`` usable points or no
        well-conditioned fit.
    """
    c, r = _points(c, r)
    if len(np.unique(c)) < MIN_POINTS:
        return None
    return _robust(_fit_weighted, c, r)


__all__ = ["ALPHAS", "MIN_POINTS", "Line", "PowerLaw", "fit_curve", "fit_power_law"]
