"""Heuristic governors: policies over the env's observation and action space with SB3's ``predict``.

Every policy implements ``predict(obs, state=None, episode_start=None, deterministic=True,
action_masks=None) -> (action, state)`` so evaluation treats heuristics and SB3 agents alike. They read
only the scale-free observation (``govgym.efficiency.signals``), never the run, so they deploy as
they evaluate. A new episode is detected by ``episode_start`` or by the budget-left feature rising.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from govgym.efficiency.signals import FEATURE_NAMES
from govgym.efficiency.strategy import BASES

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
CONTINUE = 0


class Heuristic:
    """Shared bookkeeping: per-episode state reset, action lookup by name."""

    name = "heuristic"

    def __init__(self, action_names: list[str] | None = None):
        self.action_names = list(action_names or [])
        self._last_budget_left = -1.0
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode."""

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        raise NotImplementedError

    def action(self, name: str) -> int:
        return self.action_names.index(name)

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True, action_masks: Any = None):
        o = np.asarray(obs, dtype=np.float32).reshape(-1)
        start = bool(np.any(episode_start)) if episode_start is not None else False
        if start or o[F["budget_left"]] > self._last_budget_left + 1e-9:
            self.reset()
        self._last_budget_left = float(o[F["budget_left"]])
        mask = None if action_masks is None else np.asarray(action_masks, dtype=bool).reshape(-1)
        return self.act(o, mask), state


class FixedBudget(Heuristic):
    """Never stops early, never switches, never prunes: the baseline everyone runs today."""

    name = "fixed_budget"

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        return CONTINUE


class PatienceStop(Heuristic):
    """transformers' EarlyStoppingCallback: stop after ``patience`` evals without an improvement larger
    than ``threshold`` (here relative to the initial eval loss, since the observation is scale-free)."""

    name = "patience"

    def __init__(self, action_names: list[str] | None = None, patience: int = 2, threshold: float = 0.0):
        self.patience, self.threshold = patience, threshold
        super().__init__(action_names)

    def reset(self) -> None:
        self.best, self.bad = float("inf"), 0

    def stop_now(self, obs: np.ndarray) -> bool:
        e = float(obs[F["eval_ratio"]])
        if self.best - e > self.threshold:
            self.best, self.bad = min(self.best, e), 0
        else:
            self.bad += 1
            self.best = min(self.best, e)
        return self.bad >= self.patience

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        return self.action("stop") if self.stop_now(obs) else CONTINUE


class MarginalGainStop(Heuristic):
    """The survey's rule: stop once the marginal eval gain per budget fraction (smoothed) stays below
    ``kappa`` × λ for ``patience`` intervals — the point where, under the reward, going on costs more
    than it earns (κ = 1 is the break-even)."""

    name = "marginal_gain"

    def __init__(self, action_names: list[str] | None = None, kappa: float = 1.0, patience: int = 1, use_ema: bool = True):
        self.kappa, self.patience, self.use_ema = kappa, patience, use_ema
        super().__init__(action_names)

    def reset(self) -> None:
        self.low, self.seen = 0, 0

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        rate = float(obs[F["gain_rate_ema" if self.use_ema else "gain_rate"]])
        self.seen += 1
        if self.seen > 1:  # the reset observation has no interval behind it, hence no rate
            self.low = self.low + 1 if rate < self.kappa * float(obs[F["lam"]]) else 0
        return self.action("stop") if self.low >= self.patience else CONTINUE


class ZeusStop(Heuristic):
    """Zeus-style cost threshold: stop once the cost spent exceeds β × the cost it took to reach the
    best eval loss so far (the job keeps paying without getting closer)."""

    name = "zeus"

    def __init__(self, action_names: list[str] | None = None, beta: float = 1.5):
        if not beta >= 1.0:  # below 1 it stops at the first decision, before any training: not a rule
            from govgym.typed import ConfigError

            raise ConfigError(f"zeus.beta: got {beta}; it must be >= 1 (stop once cost > beta x cost-to-best).")
        self.beta = beta
        super().__init__(action_names)

    def reset(self) -> None:
        self.best, self.cost_at_best = float("inf"), 0.0

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        cost = 1.0 - float(obs[F["budget_left"]])
        e = float(obs[F["eval_ratio"]])
        if e < self.best:
            self.best, self.cost_at_best = e, cost
        if self.cost_at_best > 0 and cost > self.beta * self.cost_at_best:
            return self.action("stop")
        return CONTINUE


class MemoryReactive(PatienceStop):
    """Switch to the leanest strategy that fits when memory headroom falls below ``margin``; back to
    the fastest that fits when it returns; patience early stopping on top."""

    name = "memory_reactive"
    LEANEST_FIRST = ("qlora+gc", "lora+gc", "qlora", "lora", "full")

    def __init__(self, action_names: list[str] | None = None, margin: float = 0.1, patience: int = 2, threshold: float = 0.0):
        self.margin = margin
        super().__init__(action_names, patience, threshold)

    def _switch(self, order: tuple[str, ...], mask: np.ndarray | None) -> int | None:
        for s in order:
            name = f"switch:{s}"
            if name in self.action_names and (mask is None or mask[self.action(name)]):
                return self.action(name)
        return None

    def reset(self) -> None:
        super().reset()
        self.lean_frac: float | None = None  # mem_frac observed under the lean strategy we switched to

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        if self.stop_now(obs):
            return self.action("stop")
        frac = float(obs[F["mem_frac"]])
        if frac > 1.0 - self.margin:
            a = self._switch(self.LEANEST_FIRST, mask)
            self.lean_frac = None
            return a if a is not None else CONTINUE
        if self.lean_frac is None and obs[F["strategy_full"]] < 1:
            self.lean_frac = frac
        # headroom is back when the same strategy's memory fraction fell: the cap grew (by >= 25%).
        # Comparing with the lean strategy's own fraction, not a fixed level, avoids flip-flopping
        # between a lean strategy and one that fits only just.
        if self.lean_frac is not None and (frac == 0.0 or frac < 0.8 * self.lean_frac):
            self.lean_frac = None
            fastest_first = tuple(reversed(self.LEANEST_FIRST))
            now = _strategy(obs)
            faster = fastest_first[: fastest_first.index(now)] if now in fastest_first else fastest_first
            a = self._switch(faster, mask)
            return a if a is not None else CONTINUE
        return CONTINUE


def _strategy(obs: np.ndarray) -> str:
    """The strategy in use, read back from the observation's one-hot and modifier flags."""
    base = next((b for b in BASES if obs[F[f"strategy_{b}"]] > 0.5), "full")
    return base + ("+gc" if obs[F["strategy_gc"]] > 0.5 else "") + ("+adam8" if obs[F["strategy_adam8"]] > 0.5 else "")


class RandomPolicy(Heuristic):
    """Uniform over the valid actions (seeded)."""

    name = "random"

    def __init__(self, action_names: list[str] | None = None, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        super().__init__(action_names)

    def act(self, obs: np.ndarray, mask: np.ndarray | None) -> int:
        if mask is None:
            raise ValueError("RandomPolicy.predict needs action_masks (env.action_masks()).")
        return int(self.rng.choice(np.flatnonzero(mask)))


POLICIES = {
    "fixed_budget": FixedBudget, "continue": FixedBudget, "patience": PatienceStop, "marginal_gain": MarginalGainStop,
    "zeus": ZeusStop, "memory_reactive": MemoryReactive, "random": RandomPolicy,
}  # fmt: skip


def make_policy(name: str, action_names: list[str], seed: int = 0, **knobs: Any) -> Heuristic:
    """A heuristic by name with its knobs (e.g. ``patience=3``); a bad name or knob is a clear error."""
    import inspect

    from govgym.typed import ConfigError, check_choice

    check_choice("--policy", name, POLICIES)
    cls = POLICIES[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "action_names")]
    for k in knobs:
        if k not in allowed:
            raise ConfigError(f"policy {name}: unknown knob {k!r}; allowed: {', '.join(allowed) or 'none'}.")
    if "seed" in allowed:
        knobs.setdefault("seed", seed)
    return cls(action_names, **knobs)
