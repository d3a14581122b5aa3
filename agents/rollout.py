"""Run governors on one (instance, episode seed) with an exact memo of the real env's steps.

An episode of ``govgym/FineTune-v0`` is fully determined by (instance, seed, action log) — the env's
determinism test and ``replay`` check it bit for bit. So when several policies govern the same
(instance, seed), every step after an action prefix already taken is the *same* real step: an
``EpisodeTree`` keeps each (prefix → outcome) it has run and hands it back instead of running it
again. Nothing is approximated: a step that no policy has taken yet runs for real (the live env is
re-driven through the prefix first when it is elsewhere; those replayed steps are counted).

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

# info keys kept per step (deterministic ones only: wall time would differ between a run and its memo)
STEP_KEYS = ("eval_loss", "train_loss", "flops_used", "budget_frac", "strategy", "kept_fraction", "cap_mb", "step", "error", "invalid_action")


@dataclass
class StepOutcome:
    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    mask: np.ndarray
    """The action mask after this step (what the next decision may do)."""


class EpisodeTree:
    """Exact memo of one (instance, episode seed): action prefix -> real step outcome.

    Args:
        env: a ``FineTuneEnv`` (unwrapped) built with ``wall_time_info=False``, owned by this tree.
        instance: instance name.
        episode_seed: the episode seed passed to ``reset``.
    """

    def __init__(self, env: Any, instance: str, episode_seed: int):
        self.env, self.instance, self.episode_seed = env, instance, int(episode_seed)
        self.nodes: dict[tuple[int, ...], StepOutcome] = {}
        self.live: tuple[int, ...] | None = None  # the prefix the live env stands at (None: ended/unknown)
        self.real_steps = 0
        """Env steps run for the first time (each is a real interval of the run)."""
        self.replayed_steps = 0
        """Env steps re-run only to bring the live env back to a prefix."""
        self.memo_hits = 0
        """Steps answered from the memo."""

    def _reset_live(self) -> StepOutcome:
        obs, info = self.env.reset(options={"instance": self.instance, "episode_seed": self.episode_seed})
        self.live = ()
        return StepOutcome(obs, 0.0, False, False, _keep(info), self.env.action_masks())

    def root(self) -> StepOutcome:
        """The episode's first observation (reset), memoized."""
        if () not in self.nodes:
            self.nodes[()] = self._reset_live()
        return self.nodes[()]

    def step(self, prefix: tuple[int, ...], action: int) -> StepOutcome:
        """The outcome of ``action`` after the actions ``prefix`` (run for real once, then memoized)."""
        key = (*prefix, int(action))
        hit = self.nodes.get(key)
        if hit is not None:
            self.memo_hits += 1
            return hit
        if self.live != prefix:
            self._reset_live()
            for a in prefix:
                self.env.step(a)
            self.replayed_steps += len(prefix)
        obs, r, term, trunc, info = self.env.step(int(action))
        self.real_steps += 1
        out = StepOutcome(obs, float(r), bool(term), bool(trunc), _keep(info), self.env.action_masks())
        self.nodes[key] = out
        self.live = None if term or trunc else key
        return out


def _keep(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in STEP_KEYS if k in info}


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
            "policy": self.policy, "instance": self.instance, "episode_seed": self.episode_seed, "e0": self.e0,
            "budget": self.budget, "lam": self.lam, "actions": self.actions, "evals": self.evals, "flops": self.flops,
            "rewards": self.rewards, "error": self.error,
        }  # fmt: skip


def run_episode(tree: EpisodeTree, policy: Any, name: str) -> Episode:
    """Govern one episode of ``tree`` with ``policy`` (SB3's ``predict`` interface, action masks passed)."""
    env = tree.env
    node = tree.root()
    inst = env.iset.get(tree.instance)
    ep = Episode(name, tree.instance, tree.episode_seed, e0=float(node.info["eval_loss"]), budget=inst.budget_tflops * 1e12, lam=inst.lam)
    ep.evals.append(ep.e0)
    ep.flops.append(float(node.info["flops_used"]))
    prefix: tuple[int, ...] = ()
    start = True
    while True:
        a, _ = policy.predict(node.obs, episode_start=np.array([start]), deterministic=True, action_masks=node.mask)
        a = int(np.asarray(a).reshape(-1)[0])
        start = False
        node = tree.step(prefix, a)
        prefix = (*prefix, a)
        taken = env.action_names[a] if not node.info.get("invalid_action") else "continue"
        ep.actions.append(taken)
        ep.rewards.append(node.reward)
        e = node.info.get("eval_loss")
        ep.evals.append(float(e) if e is not None and math.isfinite(float(e)) and not node.info.get("error") else ep.evals[-1])
        ep.flops.append(float(node.info["flops_used"]))
        if node.terminated or node.truncated:
            ep.error = str(node.info.get("error") or "")
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


__all__ = ["Episode", "EpisodeTree", "StepOutcome", "oracle_episode", "run_episode"]
