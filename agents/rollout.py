"""Run governors on one (instance, episode seed) through the env's exact step memo; the oracle.

When several policies govern the same (instance, seed), every step after an action prefix already
taken is the *same* real step (``govgym.envs.memo.EpisodeTree``): it is handed back, not run again.

Stop-only governors (fixed budget, patience, marginal gain, Zeus) all follow the fixed-budget run's
path until they stop, so judging all of them — and every knob of a tuning grid — costs one real
fixed-budget run per (instance, seed) plus the branches that switching or repruning policies open.
FLOPs in the results are the episode's own (what the governor caused), never the tree's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from govgym.efficiency.objective import with_tolerance
from govgym.envs.memo import EpisodeTree


@dataclass
class Episode:
    """One governed episode: the actions taken and what each interval produced."""

    policy: str
    instance: str
    episode_seed: int
    e0: float
    budget: float
    lam: float
    actions: list[str] = field(default_factory=list)
    evals: list[float] = field(default_factory=list)
    """Eval loss after each interval (E_0 first; an errored step repeats the last good value)."""
    flops: list[float] = field(default_factory=list)
    """FLOPs used after each interval (0 first)."""
    rewards: list[float] = field(default_factory=list)
    error: str = ""
    shield_fired: int = 0
    """Stops of the policy the shield turned into continue (``agents/shield.py``; 0 without a shield)."""

    @property
    def final_eval(self) -> float:
        """The eval loss the governor ends with (the last good evaluation)."""
        return self.evals[-1]

    @property
    def flops_used(self) -> float:
        return self.flops[-1]

    @property
    def ret(self) -> float:
        return float(sum(self.rewards))

    def count(self, prefix: str) -> int:
        return sum(a.startswith(prefix) for a in self.actions)

    def flops_to_reach(self, target: float) -> float:
        """FLOPs used at the first evaluation with eval loss <= ``target`` (inf if never)."""
        for e, f in zip(self.evals, self.flops):
            if e <= target:
                return f
        return math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "instance": self.instance,
            "episode_seed": self.episode_seed,
            "e0": self.e0,
            "budget": self.budget,
            "lam": self.lam,
            "actions": self.actions,
            "evals": self.evals,
            "flops": self.flops,
            "rewards": self.rewards,
            "error": self.error,
            "shield_fired": self.shield_fired,
        }


def run_episode(tree: EpisodeTree, policy: Any, name: str, tolerance: float | None = None) -> Episode:
    """Govern one episode of ``tree`` with ``policy`` (SB3's ``predict`` interface, action masks passed).

    ``tolerance``: under the equal-quality objective the policy sees it appended to each observation
    (envs/objective.py); None = the price objective's 20 features.
    """
    env = tree.env
    node = tree.root()
    inst = env.iset.get(tree.instance)
    ep = Episode(
        name,
        tree.instance,
        tree.episode_seed,
        e0=float(node.info["eval_loss"]),
        budget=float(node.info.get("budget") or (inst.budget_tflops or 0.0) * 1e12),  # trees saved before v1
        lam=inst.lam,
    )
    ep.evals.append(ep.e0)
    ep.flops.append(float(node.info["flops_used"]))
    prefix: tuple[int, ...] = ()
    start = True
    fired0 = getattr(policy, "fired", 0)  # a Shielded policy counts its vetoes
    while True:
        obs = node.obs if tolerance is None else with_tolerance(node.obs, tolerance)
        a, _ = policy.predict(
            obs, episode_start=np.array([start]), deterministic=True, action_masks=node.mask
        )
        a = int(np.asarray(a).reshape(-1)[0])
        start = False
        node = tree.step(prefix, a)
        prefix = (*prefix, a)
        taken = env.action_names[a] if not node.info.get("invalid_action") else "continue"
        ep.actions.append(taken)
        ep.rewards.append(node.reward)
        e = node.info.get("eval_loss")
        ep.evals.append(
            float(e)
            if e is not None and math.isfinite(float(e)) and not node.info.get("error")
            else ep.evals[-1]
        )
        ep.flops.append(float(node.info["flops_used"]))
        if node.terminated or node.truncated:
            ep.error = str(node.info.get("error") or "")
            ep.shield_fired = int(getattr(policy, "fired", 0) - fired0)
            return ep


def oracle_episode(fixed: Episode) -> Episode:
    """The best stop point in hindsight on the fixed-budget run: the prefix with the highest return.

    Stopping after interval t earns the rewards of intervals 1..t and nothing after, so the oracle's
    return is max_t Σ_{s≤t} r_s (t = 0: stop at once). It sees the future; no governor can beat it
    along the fixed-budget path.
    """
    cum = np.concatenate([[0.0], np.cumsum(fixed.rewards)])
    n_ok = len(fixed.rewards) - (1 if fixed.error else 0)  # an errored last step is not a place to stop after
    t = int(np.argmax(cum[: n_ok + 1]))
    ep = Episode("oracle", fixed.instance, fixed.episode_seed, fixed.e0, fixed.budget, fixed.lam)
    ep.actions = ["continue"] * t + ["stop"]
    ep.evals = fixed.evals[: t + 1] + [fixed.evals[t]]
    ep.flops = fixed.flops[: t + 1] + [fixed.flops[t]]
    ep.rewards = list(fixed.rewards[:t]) + [0.0]
    return ep


__all__ = ["Episode", "EpisodeTree", "oracle_episode", "run_episode"]
