"""The two curve-reading rules: ``curve_extrapolation`` (a fitted parametric curve, agents/curvefit.py) and
``learned_curve`` (the learned predictor, agents/curvepred.py). Registered in ``agents.heuristics.POLICIES``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from govgym.agents.curvefit import fit_curve
from govgym.agents.heuristic_base import CONTINUE, N_FEATURES, F, Heuristic, tolerance
from govgym.typed import ConfigError


class CurveExtrapolation(Heuristic):
    """Fit a saturating curve to the eval ratios so far and stop where its prediction says to.

    The curve is ``L(c) = a + b·c^(−α)`` in the budget fraction spent c (``agents/curvefit.py``: bounded,
    Huber-robust least squares), refitted at every decision on the evaluations after the first (E_0 has no
    budget spent behind it). With fewer than ``min_points`` of them, or no well-conditioned fit, it
    continues. Then:

    - **price objective** (20 features): stop when the predicted gain per budget fraction falls below
      ``kappa`` × λ, the gain predicted over the next interval (as long as the last one; ``to_end``: over
      the whole remaining budget). κ = 1 is the reward's break-even, as for ``marginal_gain``, but on the
      fitted curve rather than the last, noisy interval.
    - **equal quality** (21 features, ``tolerance`` last): stop when the current eval ratio is within
      ``(1 + tolerance + quality_margin)`` × the predicted eval ratio at c = 1, the full budget's;
      ``quality_margin`` < 0 keeps a safety margin against the fit's error, > 0 accepts more risk.
    """

    name = "curve_extrapolation"

    def __init__(
        self,
        action_names: list[str] | None = None,
        kappa: float = 1.0,
        to_end: bool = False,
        min_points: int = 4,
        quality_margin: float = 0.0,
    ):
        self.kappa, self.to_end, self.min_points = kappa, to_end, min_points
        self.quality_margin = quality_margin
        super().__init__(action_names)

    def new_state(self) -> SimpleNamespace:
        return SimpleNamespace(c=[], r=[], seen=0)

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        c, r = 1.0 - float(obs[F["budget_left"]]), float(obs[F["eval_ratio"]])
        s.seen += 1
        if s.seen == 1 or (s.c and c <= s.c[-1]):  # E_0, or no budget spent since the last point
            return CONTINUE
        s.c.append(c)
        s.r.append(r)
        if len(s.c) < self.min_points or c >= 1.0:
            return CONTINUE
        fit = fit_curve(s.c, s.r)
        if fit is None:
            return CONTINUE
        tol = tolerance(obs)
        if tol is not None:
            stop = r <= (1.0 + tol + self.quality_margin) * fit(1.0)
        else:
            step = s.c[-1] - s.c[-2] if len(s.c) > 1 else c
            horizon = 1.0 - c if self.to_end else min(step, 1.0 - c)
            stop = fit.gain_rate(c, horizon) < self.kappa * float(obs[F["lam"]])
        return self.action("stop") if stop else CONTINUE


class LearnedCurve(Heuristic):
    """Stop when the learned curve predictor says the rest of the budget is not worth it (module docstring).

    Knobs: ``alpha`` (equal quality: the accepted probability that the full budget would have ended
    more than the tolerance lower; one of QUANTILES), ``tau`` (price: stop once the predicted
    continuation value is at most tau), ``min_used`` (never stop before this budget fraction), and
    ``model`` (a fitted model file; '' = the packaged configs/curve_v2.json).
    """

    learned = True  # its stop condition is a fitted model: shielded like an agent (agents/shield.py)

    name = "learned_curve"

    def __init__(
        self,
        action_names: list[str] | None = None,
        alpha: float = 0.1,
        tau: float = 0.0,
        min_used: float = 0.0,
        model: str = "",
    ):
        from govgym.agents.curvepred import QUANTILES

        if not any(abs(alpha - q) < 1e-9 for q in QUANTILES):
            raise ConfigError(
                f"learned_curve.alpha: got {alpha}; it must be one of the model's quantiles {list(QUANTILES)}."
            )
        self.alpha, self.tau, self.min_used = float(alpha), float(tau), float(min_used)
        self.qi = int(np.argmin([abs(alpha - q) for q in QUANTILES]))
        from govgym.agents.curvepred import cached_model

        self.model = cached_model(model)
        super().__init__(action_names)

    def new_state(self) -> SimpleNamespace:
        return SimpleNamespace(history=[])

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        s.history.append(np.asarray(obs[: N_FEATURES[0]], dtype=np.float64))
        if len(s.history) < 2 or 1.0 - float(obs[F["budget_left"]]) < self.min_used:
            return CONTINUE  # the reset observation has no interval behind it
        from govgym.agents.curvepred import features

        q, v = self.model.predict(features(s.history))
        tol = tolerance(obs)
        if tol is not None:  # equal quality: the tolerance is the 21st feature
            stop = q[0, self.qi] >= -math.log1p(tol)
        else:
            stop = v[0] <= self.tau
        return self.action("stop") if stop else CONTINUE


__all__ = ["CurveExtrapolation", "LearnedCurve"]
