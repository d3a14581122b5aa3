"""Paired bootstrap confidence intervals over seeds: one concern, numpy only.

Two policies run on the same seeds (same data, same initialisation, same batch order) give one paired
difference per seed; the interval is the percentile bootstrap of the mean of those differences
(Efron & Tibshirani 1993, ch. 13): resample the seeds with replacement, take each resample's mean, and
read the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles. Pairing removes the seed-to-seed spread
both runs share, which is what makes 5 seeds enough to see a difference at all.

With few seeds the percentile interval is too narrow (5 seeds have only 126 distinct resamples); it is
reported as measured, beside ``n``, never as a test. Importable from ``deploy/`` (no SB3, no gymnasium).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from govgym.errors import ConfigError

DEFAULT_RESAMPLES = 10_000
"""Resamples per interval: the quantiles' Monte Carlo error is ~0.5% of the spread at 10,000."""


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean of ``a - b`` (or of ``a`` alone) over paired seeds, with its percentile bootstrap interval.

    Args:
        a: one value per seed (e.g. a governor's FLOPs / the fixed run's).
        b: the paired values on the same seeds (None: ``a`` already holds the differences).
        resamples: bootstrap resamples.
        level: the interval's coverage (0.95 = 95%).
        seed: the resampling RNG's seed (the interval is reproducible).

    Returns:
        ``{"mean", "lo", "hi", "n"}``; with one seed the interval is the point (nothing to resample);
        with no finite pairs every value is nan and ``n`` is 0.

    Raises:
        ConfigError: ``a`` and ``b`` differ in length, or ``resamples`` / ``level`` are out of range.
    """
    if b is not None and len(a) != len(b):
        raise ConfigError(
            f"paired_bootstrap: {len(a)} values against {len(b)}; a paired interval needs one pair per seed."
        )
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"paired_bootstrap: resamples must be a positive integer; got {resamples!r}.")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"paired_bootstrap: level must be in (0, 1); got {level!r}.")
    x = np.asarray(a, dtype=float) - (np.asarray(b, dtype=float) if b is not None else 0.0)
    x = x[np.isfinite(x)]  # a pair with a nan side (a run that never reached a target) has no difference
    n = int(x.size)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": n}


def clustered_bootstrap(
    diffs: dict[str, list[float]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean of paired differences grouped in clusters (an instance's seeds), with a cluster bootstrap interval.

    The clusters are resampled with replacement (each resample's mean weights a cluster by its pairs), so
    the interval does not treat the seeds of one instance as independent draws of the world.

    Returns:
        ``{"mean", "lo", "hi", "n", "clusters"}`` (nan and 0 without a finite difference).
    """
    clean = {k: [float(v) for v in vs if math.isfinite(float(v))] for k, vs in diffs.items()}
    clean = {k: v for k, v in clean.items() if v}
    if not clean:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0, "clusters": 0}
    sums = np.array([sum(v) for v in clean.values()])
    counts = np.array([len(v) for v in clean.values()])
    mean = float(sums.sum() / counts.sum())
    if len(clean) == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": int(counts.sum()), "clusters": 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(clean), size=(resamples, len(clean)))
    means = sums[idx].sum(1) / counts[idx].sum(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": mean, "lo": float(lo), "hi": float(hi), "n": int(counts.sum()), "clusters": len(clean)}


__all__ = ["DEFAULT_RESAMPLES", "clustered_bootstrap", "paired_bootstrap"]
