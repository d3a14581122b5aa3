"""Heuristic governors: policies over the env's observation and action space with SB3's ``predict``.

Every policy implements ``predict(obs, state=None, episode_start=None, deterministic=True,
action_masks=None) -> (action, state)`` as SB3's policies do, so evaluation, SB3's ``evaluate_policy``
and VecEnvs treat heuristics and SB3 agents alike: one observation gives a 0-d action array, a batch of
n (one row per env of a VecEnv) gives shape (n,), and each env keeps its own episode bookkeeping. They
read only the scale-free observation (``govgym.efficiency.signals``), never the run, so they deploy as
they evaluate. A new episode is detected by ``episode_start`` or by the budget-left feature rising.

The observation is the 20 features of ``FEATURE_NAMES`` (the price objective: λ is the ``lam`` feature),
or those 20 and one more, ``tolerance`` (index 20), under the equal-quality objective (stop as early as
possible while the final eval loss ends within ``tolerance`` of what the full budget would reach). Every
heuristic reads features by name (``F``) and accepts both; ``tolerance(obs)`` is None for the former.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import numpy as np

from govgym.agents.curvefit import MIN_POINTS
from govgym.agents.curverules import CurveExtrapolation, LearnedCurve
from govgym.agents.heuristic_base import CONTINUE, N_FEATURES, TOLERANCE, F, Heuristic, tolerance
from govgym.efficiency.strategy import BASES
from govgym.errors import did_you_mean
from govgym.typed import ConfigError, check_choice, check_range, coerce


class FixedBudget(Heuristic):
    """Never stops early, never switches, never prunes: the baseline everyone runs today."""

    name = "fixed_budget"

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        return CONTINUE


class PatienceStop(Heuristic):
    """transformers' EarlyStoppingCallback: stop after ``patience`` evals without an improvement larger
    than ``threshold`` (here relative to the initial eval loss, since the observation is scale-free)."""

    name = "patience"

    def __init__(self, action_names: list[str] | None = None, patience: int = 2, threshold: float = 0.0):
        self.patience, self.threshold = patience, threshold
        super().__init__(action_names)

    def new_state(self) -> SimpleNamespace:
        return SimpleNamespace(best=float("inf"), bad=0)

    def stop_now(self, obs: np.ndarray, s: SimpleNamespace) -> bool:
        e = float(obs[F["eval_ratio"]])
        if s.best - e > self.threshold:
            s.best, s.bad = min(s.best, e), 0
        else:
            s.bad += 1
            s.best = min(s.best, e)
        return s.bad >= self.patience

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        return self.action("stop") if self.stop_now(obs, s) else CONTINUE


class EarlyStopping(PatienceStop):
    """Exactly transformers' ``EarlyStoppingCallback`` (metric: eval loss, ``greater_is_better=False``).

    Stop at the evaluation where ``early_stopping_patience`` evaluations in a row did not improve on the
    best eval loss so far by more than ``early_stopping_threshold``, counted as the callback counts them.
    Two things make it the callback's rule rather than ``patience``'s:

    - **The first evaluation is not a reference.** The Trainer sets ``state.best_metric`` (what the
      callback compares with) after each evaluation of the training loop, but not after
      ``eval_on_start``'s; without ``eval_on_start`` there is no evaluation at step 0 at all. Either way
      the callback's first reference is the first evaluation after training began, so this rule ignores
      the episode's first observation (E_0, at the env's reset or the callback's step 0). ``patience``
      counts E_0 as its first best: with patience 1 it stops after a first interval that gained less
      than the threshold, which transformers' callback does not.
    - **Knob names are transformers'**: ``early_stopping_patience``, ``early_stopping_threshold``.

    The threshold is relative to E_0 (the observation holds E_t / E_0, not the loss): transformers'
    ``early_stopping_threshold=t`` on a run whose initial eval loss is E_0 is this rule's
    ``early_stopping_threshold=t / E_0``. ``tests/test_rules.py`` drives transformers' callback with the
    Trainer's own best-metric update on the same sequences and checks both stop at the same evaluation.
    """

    name = "early_stopping"

    def __init__(
        self,
        action_names: list[str] | None = None,
        early_stopping_patience: int = 1,
        early_stopping_threshold: float = 0.0,
    ):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold
        super().__init__(action_names, early_stopping_patience, early_stopping_threshold)

    def new_state(self) -> SimpleNamespace:
        s = super().new_state()
        s.first = True
        return s

    def stop_now(self, obs: np.ndarray, s: SimpleNamespace) -> bool:
        if s.first:  # E_0: transformers' best_metric stays None (see the class docstring)
            s.first = False
            return False
        return super().stop_now(obs, s)


class MarginalGainStop(Heuristic):
    """The survey's rule: stop once the marginal eval gain per budget fraction (smoothed) stays below
    ``kappa`` × λ for ``patience`` intervals — the point where, under the reward, going on costs more
    than it earns (κ = 1 is the break-even)."""

    name = "marginal_gain"

    def __init__(
        self,
        action_names: list[str] | None = None,
        kappa: float = 1.0,
        patience: int = 1,
        use_ema: bool = True,
    ):
        self.kappa, self.patience, self.use_ema = kappa, patience, use_ema
        super().__init__(action_names)

    def new_state(self) -> SimpleNamespace:
        return SimpleNamespace(low=0, seen=0)

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        rate = float(obs[F["gain_rate_ema" if self.use_ema else "gain_rate"]])
        s.seen += 1
        if s.seen > 1:  # the reset observation has no interval behind it, hence no rate
            s.low = s.low + 1 if rate < self.kappa * float(obs[F["lam"]]) else 0
        return self.action("stop") if s.low >= self.patience else CONTINUE


class ZeusStop(Heuristic):
    """Zeus-style cost threshold: stop once the cost spent exceeds β × the cost it took to reach the
    best eval loss so far (the job keeps paying without getting closer)."""

    name = "zeus"

    def __init__(self, action_names: list[str] | None = None, beta: float = 1.5):
        if not beta >= 1.0:  # below 1 it stops at the first decision, before any training: not a rule
            raise ConfigError(
                f"zeus.beta: got {beta}; it must be >= 1 (stop once cost > beta x cost-to-best)."
            )
        self.beta = beta
        super().__init__(action_names)

    def new_state(self) -> SimpleNamespace:
        return SimpleNamespace(best=float("inf"), cost_at_best=0.0)

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        cost = 1.0 - float(obs[F["budget_left"]])
        e = float(obs[F["eval_ratio"]])
        if e < s.best:
            s.best, s.cost_at_best = e, cost
        if s.cost_at_best > 0 and cost > self.beta * s.cost_at_best:
            return self.action("stop")
        return CONTINUE


class MemoryReactive(PatienceStop):
    """Switch to the leanest strategy that fits when memory headroom falls below ``margin``; back to
    the fastest that fits when it returns; patience early stopping on top."""

    name = "memory_reactive"
    LEANEST_FIRST = ("qlora+gc", "lora+gc", "qlora", "lora", "full")

    def __init__(
        self,
        action_names: list[str] | None = None,
        margin: float = 0.1,
        patience: int = 2,
        threshold: float = 0.0,
    ):
        self.margin = margin
        super().__init__(action_names, patience, threshold)

    def _switch(self, order: tuple[str, ...], mask: np.ndarray | None) -> int | None:
        for s in order:
            name = f"switch:{s}"
            if name in self.action_names and (mask is None or mask[self.action(name)]):
                return self.action(name)
        return None

    def new_state(self) -> SimpleNamespace:
        s = super().new_state()
        s.lean_frac = None  # mem_frac observed under the lean strategy we switched to
        return s

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        if self.stop_now(obs, s):
            return self.action("stop")
        frac = float(obs[F["mem_frac"]])
        if frac > 1.0 - self.margin:
            a = self._switch(self.LEANEST_FIRST, mask)
            s.lean_frac = None
            return a if a is not None else CONTINUE
        if s.lean_frac is None and obs[F["strategy_full"]] < 1:
            s.lean_frac = frac
        # headroom is back when the same strategy's memory fraction fell: the cap grew (by >= 25%).
        # Comparing with the lean strategy's own fraction, not a fixed level, avoids flip-flopping
        # between a lean strategy and one that fits only just.
        if s.lean_frac is not None and (frac == 0.0 or frac < 0.8 * s.lean_frac):
            s.lean_frac = None
            fastest_first = tuple(reversed(self.LEANEST_FIRST))
            now = _strategy(obs)
            faster = fastest_first[: fastest_first.index(now)] if now in fastest_first else fastest_first
            a = self._switch(faster, mask)
            return a if a is not None else CONTINUE
        return CONTINUE


def _strategy(obs: np.ndarray) -> str:
    """The strategy in use, read back from the observation's one-hot and modifier flags."""
    base = next((b for b in BASES if obs[F[f"strategy_{b}"]] > 0.5), "full")
    return (
        base
        + ("+gc" if obs[F["strategy_gc"]] > 0.5 else "")
        + ("+adam8" if obs[F["strategy_adam8"]] > 0.5 else "")
    )


class RandomPolicy(Heuristic):
    """Uniform over the valid actions (seeded)."""

    name = "random"

    def __init__(self, action_names: list[str] | None = None, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        super().__init__(action_names)

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        if mask is None:
            raise ConfigError(
                "random.predict: needs action_masks (env.action_masks(), or sb3_contrib's "
                "get_action_masks(vec_env) for a VecEnv) to draw among the valid actions."
            )
        return int(self.rng.choice(np.flatnonzero(mask)))


POLICIES = {
    "fixed_budget": FixedBudget,
    "continue": FixedBudget,
    "patience": PatienceStop,
    "early_stopping": EarlyStopping,
    "marginal_gain": MarginalGainStop,
    "curve_extrapolation": CurveExtrapolation,
    "zeus": ZeusStop,
    "memory_reactive": MemoryReactive,
    "random": RandomPolicy,
    "learned_curve": LearnedCurve,
}


KNOB_RANGES: dict[str, tuple[type, float | None, float | None]] = {
    "patience": (int, 1, None),  # evaluations without improvement before stopping
    "threshold": (float, 0.0, None),  # improvement that counts, as a fraction of E_0
    "kappa": (float, 0.0, None),  # stop once gain per budget fraction < kappa * lambda
    "beta": (float, 1.0, None),  # zeus: stop once cost > beta x cost-to-best
    "margin": (float, 0.0, 1.0),  # memory headroom that triggers a switch, as a fraction of the cap
    "seed": (int, 0, None),
    "use_ema": (bool, None, None),
    "alpha": (float, 0.0, 1.0),  # learned_curve: accepted probability of missing the tolerance
    "tau": (float, 0.0, None),  # learned_curve: stop once the predicted continuation value <= tau
    "min_used": (float, 0.0, 1.0),  # learned_curve: never stop before this budget fraction
    "model": (str, None, None),  # learned_curve: a fitted model file ('' = the packaged one)
    "early_stopping_patience": (int, 1, None),  # transformers' name: evaluations without improvement
    "early_stopping_threshold": (float, 0.0, None),  # transformers' name, here a fraction of E_0
    "to_end": (bool, None, None),  # curve_extrapolation: predicted gain over the rest, not the next interval
    "min_points": (int, MIN_POINTS, None),  # curve_extrapolation: evaluations after E_0 before it may stop
    "quality_margin": (float, -0.5, 0.5),  # curve_extrapolation, equal quality: added to the tolerance
}
"""Type and range of every heuristic knob: a knob from the CLI, a spec or heuristics.yaml is checked here."""
KNOB_HELP: dict[str, tuple[str, str]] = {
    "early_stopping_patience": ("evaluations in a row without improvement before it stops", "3"),
    "early_stopping_threshold": (
        "the improvement that counts, as a fraction of the initial eval loss",
        "0.01",
    ),
    "kappa": ("it stops once the (predicted) gain per budget fraction is below kappa x lambda", "2"),
    "to_end": (
        "predict the gain over the whole remaining budget (true) or the next interval (false)",
        "true",
    ),
    "min_points": ("evaluations after the first before it may stop; the 3-parameter curve needs 3", "4"),
    "quality_margin": ("added to the tolerance of the equal-quality objective (< 0: safer)", "-0.002"),
}
"""What a knob means and a valid example: the sentence a bad value of it gets (knobs added with issue 20)."""


def make_policy(name: str, action_names: list[str], seed: int = 0, **knobs: Any) -> Heuristic:
    """A heuristic by name with its knobs (e.g. ``patience=3``); a bad name or knob is a clear error."""
    check_choice("policy", name, POLICIES)
    cls = POLICIES[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "action_names")]
    for k, v in knobs.items():
        if k not in allowed:
            raise ConfigError(
                f"policy {name}: unknown knob {k!r}.{did_you_mean(k, allowed)} Allowed: {', '.join(allowed) or 'none'}."
            )
        tp, lo, hi = KNOB_RANGES[k]
        try:
            knobs[k] = coerce(f"{name}.{k}", tp, v)
            if tp not in (bool, str):
                check_range(f"{name}.{k}", knobs[k], lo, hi)  # NaN and inf fail here too
        except ConfigError as err:
            if k not in KNOB_HELP:
                raise
            what, example = KNOB_HELP[k]
            raise ConfigError(f"{str(err).rstrip('.')} ({what}); pass e.g. {name}:{k}={example}.") from None
    if "seed" in allowed:
        knobs.setdefault("seed", seed)
    return cls(action_names, **knobs)


__all__ = [  # the base's names are re-exported: callers import them from here
    "CONTINUE",
    "F",
    "KNOB_RANGES",
    "N_FEATURES",
    "POLICIES",
    "TOLERANCE",
    "CurveExtrapolation",
    "Heuristic",
    "LearnedCurve",
    "make_policy",
    "tolerance",
]
