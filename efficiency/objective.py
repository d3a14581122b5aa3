"""The user's target: a price per budget fraction (λ) or the full budget's quality for the least compute.

Two objectives, one definition used by the env wrapper (envs/objective.py), the evaluation harness
(agents/scoring.py) and the deployment callback (deploy/callback.py). numpy only.

- ``price`` (FineTune-v0..v2's reward): each interval earns its eval-loss gain (over E_0) minus λ × the
  budget fraction it spent. λ is feature ``lam`` of the observation.
- ``equal_quality``: "give me the quality of the full budget, within ``tolerance``, for as little
  compute as possible". The reference is the *fixed-budget run* of the same (instance, seed): the run
  to its budget with no lever pulled; its final eval loss ``L_ref``. An episode *meets* the target when
  its final eval loss ``L <= (1 + tolerance) × L_ref``, and its return is

      R = (1 − FLOPs used / budget) − 1[violated]

  i.e. the budget fraction saved, minus 1 when the target was missed (or the run crashed or ran out of
  memory: it did not deliver the quality). The fixed run itself scores 0 (it meets its own target and
  saves nothing), so a governor that violates always does worse than not governing at all, and a
  governor that stops at a third of the budget within the tolerance scores 0.67. Per step the env
  pays −(budget fraction spent) and adds 1 − 1[violated] when the episode ends, so the steps sum to R.
  The target is in the observation as one extra feature, ``tolerance`` (index 20), appended after the
  20 scale-free features of ``efficiency.signals``; a governor for the price objective reads 20.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OBJECTIVES = ("price", "equal_quality")
DEFAULT_TOLERANCE = 0.005
"""0.5%: the final eval loss may end at most this far (relative) above the full budget's."""
TOLERANCE_FEATURE = "tolerance"
"""Name of the feature appended to the observation under the equal-quality objective."""
TOLERANCE_RANGE = (0.0, 0.5)
"""Allowed tolerances (and the appended feature's observation bounds)."""


@dataclass(frozen=True)
class Objective:
    """What a governor is asked to do: ``price`` (reward gain − λ × compute) or ``equal_quality``."""

    kind: str = "price"
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        from govgym.typed import ConfigError

        if self.kind not in OBJECTIVES:
            raise ConfigError(
                f"objective: {self.kind!r} is not an objective; use one of {', '.join(OBJECTIVES)} "
                "(price: reward = gain − λ × compute; equal_quality: the full budget's quality for the least compute)."
            )
        t = self.tolerance
        if (
            isinstance(t, bool)
            or not isinstance(t, (int, float))
            or not (math.isfinite(t) and TOLERANCE_RANGE[0] < t <= TOLERANCE_RANGE[1])
        ):
            raise ConfigError(
                f"tolerance: got {t!r}; it must be a number in (0, {TOLERANCE_RANGE[1]}] (a relative excess "
                f"of the final eval loss over the full budget's, e.g. {DEFAULT_TOLERANCE} for 0.5%)."
            )

    @property
    def equal_quality(self) -> bool:
        return self.kind == "equal_quality"


def with_tolerance(obs: np.ndarray, tolerance: float) -> np.ndarray:
    """The observation with the equal-quality target appended (float32, one more feature)."""
    return np.concatenate([np.asarray(obs, dtype=np.float32), np.array([tolerance], dtype=np.float32)])


def violated(final_eval: float, reference_eval: float, tolerance: float, error: str = "") -> bool:
    """Whether an episode missed the equal-quality target: an error, a non-finite or a too-high final eval."""
    if error or not math.isfinite(final_eval):
        return True
    return final_eval > (1.0 + tolerance) * reference_eval


def equal_quality_return(
    used_fraction: float, final_eval: float, reference_eval: float, tolerance: float, error: str = ""
) -> float:
    """R = (1 − used_fraction) − 1[violated]: the budget fraction saved, minus 1 for a missed target."""
    return (1.0 - float(used_fraction)) - float(violated(final_eval, reference_eval, tolerance, error))


__all__ = [
    "DEFAULT_TOLERANCE",
    "OBJECTIVES",
    "TOLERANCE_FEATURE",
    "TOLERANCE_RANGE",
    "Objective",
    "equal_quality_return",
    "violated",
    "with_tolerance",
]
