"""The gradient noise scale B_simple and its running average, once (torch-free).

``efficiency.run.FineTuneRun.advance`` (the env) and ``deploy.callback.GovernorCallback`` (a Trainer
run inside ``GovernedTrainer``) both estimate it per decision interval from two gradient norms: the
steps' mean |g|² (batch B) and the squared norm of their mean (batch n·B). One interval's |G|² estimate
is too noisy to divide by, so |G|² and tr Σ are averaged separately (an EMA, decay 0.5) and the ratio
is taken of the averages (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DECAY = 0.5
"""EMA weight of the previous average: 0.5 halves an interval's weight every later interval."""


def noise_estimates(small_sq: float, big_sq: float, b_small: int, b_big: int) -> tuple[float, float]:
    """Unbiased |G|² and tr(Σ) from gradient norms at two batch sizes (McCandlish et al. 2018, app. A).

    ``small_sq``: mean |g|² of per-step gradients (batch ``b_small``); ``big_sq``: |ḡ|² of their mean
    (batch ``b_big``): |G|² = (b_big·big − b_small·small)/(b_big − b_small),
    tr(Σ) = (small − big)/(1/b_small − 1/b_big).
    """
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


def gradient_noise_scale(small_sq: float, big_sq: float, b_small: int, b_big: int) -> float:
    """B_simple = tr(Σ)/|G|² from one pair of estimates (nan when |G|² is not positive: too noisy)."""
    g2, trace = noise_estimates(small_sq, big_sq, b_small, b_big)
    if not (g2 > 0) or not math.isfinite(trace):
        return float("nan")
    return max(trace, 0.0) / g2


def average(
    prev: Sequence[float] | None, g2: float, trace: float, decay: float = DECAY
) -> tuple[float, float] | None:
    """The EMA of (|G|², tr Σ) after one interval's estimates; ``prev`` unchanged when they are not finite.

    Args:
        prev: the average so far (None: none yet, e.g. after a strategy switch started it over).
        g2, trace: this interval's ``noise_estimates``.
        decay: weight of ``prev``.
    """
    if not (math.isfinite(g2) and math.isfinite(trace)):
        return None if prev is None else (prev[0], prev[1])
    if prev is None:
        return (g2, trace)
    return (decay * prev[0] + (1 - decay) * g2, decay * prev[1] + (1 - decay) * trace)


def averaged_scale(avg: Sequence[float] | None) -> float:
    """B_simple of an average (tr Σ clipped at 0 over |G|²); nan while there is none or |G|² <= 0."""
    if avg is None or not avg[0] > 0:
        return float("nan")
    return max(avg[1], 0.0) / avg[0]


__all__ = ["DECAY", "average", "averaged_scale", "gradient_noise_scale", "noise_estimates"]
