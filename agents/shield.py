"""The shield: a learned governor may not stop a run that is still gaining far more than it costs.

``Shielded(policy, k=10)`` wraps any policy with SB3's ``predict`` (an SB3 agent, ``AgentPolicy``, an
exported ``Governor``, a heuristic) and has the same ``predict``. Where the wrapped policy chooses
``stop`` but

- **price objective** (20 features): the last interval's gain per budget fraction (the ``gain_rate``
  feature: (E_{t−1} − E_t)/E_0 per budget fraction) is above ``k`` × λ, i.e. going on for one more such
  interval would earn k times its price; or
- **equal quality** (21 features, the tolerance last): the curve fitted to the eval ratios so far
  (``agents/curvefit.py``) predicts a final eval ratio below current / ((1 + tolerance)(1 + ``margin``)),
  i.e. stopping now would end outside the tolerance of what the full budget reaches, by a margin,

the stop is replaced by ``continue`` (never while the peak memory is within 5% of its cap,
``MEM_GUARD``: there a stop may be what avoids an OOM), and ``fired`` counts it (``last_fired``: which rows of the last
call). It never adds a stop, a switch or a reprune. Why k = 10 by default: the tuned ``marginal_gain``
rule stops once the smoothed gain rate is below 6λ (κ = 6, ``configs/heuristics_v1.yaml``), so a tuned
rule's stops pass, while the issue-20 agent's stop at a loss still falling 15% per interval (a gain rate
near 2 at λ = 0.05: 40λ) is vetoed. ``gain_rate`` is clipped to [−10, 10] in the observation, so with
k·λ ≥ 10 the price check never fires.

numpy only (``GovernorCallback`` wraps learned governors in it; ``govgym evaluate`` adds ``+shield``
rows for learned governors: ``agents/harness.py``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from govgym.agents.curvefit import MIN_POINTS, fit_curve
from govgym.agents.heuristics import CONTINUE, F, Heuristic, tolerance
from govgym.agents.specs import ALGOS
from govgym.typed import ConfigError, check_range

DEFAULT_K = 10.0
"""Default ``k``: a stop is vetoed while the last interval gained more than 10 × its price (see above)."""
DEFAULT_MARGIN = 0.01
"""Default ``margin`` (equal quality): vetoed when the predicted final is > 1% below what the tolerance allows."""
MEM_GUARD = 0.95
"""No veto while the run's peak memory is at least this fraction of its cap (``mem_frac``): a stop there
may be what avoids an OOM (a cap arrived mid-run), and the shield must never cause one."""
SUFFIX = "+shield"
"""What a shielded policy's leaderboard label ends with (``govgym evaluate``)."""


class Shielded(Heuristic):
    """``policy`` with the shield on (see the module docstring); SB3's ``predict``.

    Args:
        policy: anything with SB3's ``predict(obs, state, episode_start, deterministic, action_masks)``.
        k: a stop is vetoed while the last interval's gain rate is above k × λ (price objective).
        margin: equal quality: a stop is vetoed while the predicted final eval ratio is below
            current / ((1 + tolerance)(1 + margin)).
        action_names: the env's actions (default: ``policy.action_names``); must hold 'stop'.
    """

    name = "shield"

    def __init__(
        self,
        policy: Any,
        k: float = DEFAULT_K,
        margin: float = DEFAULT_MARGIN,
        action_names: list[str] | None = None,
    ):
        check_range("shield.k", k, 0.0)  # NaN, inf and negative prices are refused
        check_range("shield.margin", margin, 0.0, 1.0)
        names = list(action_names or getattr(policy, "action_names", None) or [])
        if "stop" not in names or not callable(getattr(policy, "predict", None)):
            raise ConfigError(
                f"Shielded: the policy must have predict(...) and action names including 'stop'; got "
                f"{type(policy).__name__} with action names {names}. Pass action_names=env.action_names."
            )
        self.policy, self.k, self.margin = policy, float(k), float(margin)
        self.fired = 0
        self.last_fired = np.zeros(0, dtype=bool)
        super().__init__(names)
        self.stop = self.action("stop")
        self.interval_steps = getattr(policy, "interval_steps", None)  # an exported Governor's K

    def new_state(self) -> SimpleNamespace:
        return SimpleNamespace(c=[], r=[], seen=0)

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: Any = None,
    ) -> tuple[np.ndarray, Any]:
        """The wrapped policy's ``predict``, with each stop the shield vetoes turned into ``continue``."""
        given = {"state": state, "episode_start": episode_start, "action_masks": action_masks}
        kw = {k: v for k, v in given.items() if v is not None}  # SB3's own models take no action_masks
        actions, state = self.policy.predict(observation, deterministic=deterministic, **kw)
        batch, _, single = self._track(observation, episode_start, action_masks)
        out = np.array(actions, dtype=np.int64).reshape(-1)
        fired = np.zeros(len(batch), dtype=bool)
        for i, o in enumerate(batch):
            if self.veto(o, self._states[i]) and out[i] == self.stop:
                out[i], fired[i] = CONTINUE, True
        self.last_fired = fired
        self.fired += int(fired.sum())
        return (out.reshape(()) if single else out), state

    def veto(self, obs: np.ndarray, s: SimpleNamespace) -> bool:
        """Whether a stop on ``obs`` would be vetoed (also records the eval ratio for the curve fit)."""
        c, r = 1.0 - float(obs[F["budget_left"]]), float(obs[F["eval_ratio"]])
        s.seen += 1
        if s.seen > 1 and (not s.c or c > s.c[-1]):  # E_0 has no interval behind it
            s.c.append(c)
            s.r.append(r)
        if float(obs[F["mem_frac"]]) >= MEM_GUARD:  # at its memory cap: going on may OOM, a stop stands
            return False
        tol = tolerance(obs)
        if tol is None:  # the reset observation's gain_rate is 0: nothing to protect yet
            return float(obs[F["gain_rate"]]) > self.k * float(obs[F["lam"]])
        fit = fit_curve(s.c, s.r) if len(s.c) >= MIN_POINTS else None
        return fit is not None and fit(1.0) * (1.0 + tol) * (1.0 + self.margin) < r


LEARNED_RULES = ("learned_curve",)
"""Heuristic-shaped governors whose stop condition is learned (a model fitted on the corpus): shielded
like agents."""


def is_learned(policy: Any) -> bool:
    """A learned governor: an exported agent (``Governor`` of kind 'agent'), a loaded agent (``AgentPolicy``:
    its ``meta`` names an SB3 algorithm) or an SB3 model or policy. What the shield guards by default.

    A heuristic's stop condition is its definition, tuned as such, so it runs unshielded (as does any other
    object with a ``predict``); wrap one in ``Shielded`` yourself to shield it.
    """
    if getattr(policy, "kind", None) == "agent" or getattr(policy, "learned", False) is True:
        return True
    meta = getattr(policy, "meta", None)
    if isinstance(meta, dict) and meta.get("algo") in ALGOS:
        return True
    return type(policy).__module__.split(".")[0] in ("stable_baselines3", "sb3_contrib")


def shield(policy: Any, on: bool = True, k: float = DEFAULT_K, action_names: list[str] | None = None) -> Any:
    """``Shielded(policy, k)`` for a learned policy when ``on``; anything else, or ``on=False``, as is."""
    return Shielded(policy, k=k, action_names=action_names) if on and is_learned(policy) else policy


__all__ = ["DEFAULT_K", "DEFAULT_MARGIN", "LEARNED_RULES", "SUFFIX", "Shielded", "is_learned", "shield"]
