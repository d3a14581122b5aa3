"""An exact memo of the real environment: (instance, seed, action prefix) -> the step it produces.

An episode of ``govgym/FineTune-v0`` is fully determined by (instance, seed, action log): the env's
determinism test and ``govgym replay`` check it bit for bit. So a step that follows an action prefix
already taken is the *same* real step, and need not be run twice:

- ``EpisodeTree`` memoizes one (instance, episode seed). A step no one has taken yet runs for real:
  the live env is brought to its prefix from the nearest in-memory fork point
  (``FineTuneEnv.snapshot``; a bounded LRU of them) and the rest of the prefix is replayed; those
  replayed steps are counted. Nothing is approximated.
- ``MemoFineTuneEnv`` is a gymnasium env over a fixed set of (instance, seed) pairs of a split, each
  with its tree: SB3 trains on it as on the real env; repeated paths (continue ... stop) cost nothing
  after their first visit. It is the real env, replayed — not a surrogate model of it.

Several trees may share one live env (and one store of fork points); ``FineTuneEnv.position()`` says
which (instance, seed, prefix) it stands at.
Trees can be saved to and loaded from a folder (``save_tree``/``load_tree``) under a namespace that
pins everything the numbers depend on (``memo_namespace``), so ``govgym tune`` and ``govgym evaluate``
reuse each other's real steps across invocations.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from govgym.efficiency import safefile
from govgym.envs.finetune_env import FineTuneEnv, action_index
from govgym.envs.memonames import (  # noqa: F401  (re-exported: where callers found them)
    TREE_SUFFIX,
    memo_folder,
    memo_namespace,
    memo_siblings,
    stray_memo_warning,
    worker_threads,
)

# info keys kept per step: the deterministic ones (wall time would differ between a run and its memo)
STEP_KEYS = (
    "eval_loss",
    "train_loss",
    "flops_used",
    "budget",
    "budget_frac",
    "strategy",
    "kept_fraction",
    "cap_mb",
    "step",
    "error",
    "invalid_action",
    "instance",
    "episode_seed",
)


@dataclass
class StepOutcome:
    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    mask: np.ndarray
    """The action mask after this step (what the next decision may do)."""


def _keep(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in STEP_KEYS if k in info}


class EpisodeTree:
    """Exact memo of one (instance, episode seed): action prefix -> real step outcome.

    Args:
        env: a ``FineTuneEnv`` (unwrapped) built with ``wall_time_info=False``; may be shared by trees.
        instance: instance name.
        episode_seed: the episode seed passed to ``reset``.
        max_snapshots: in-memory fork points kept (LRU) to branch from without replaying from the start
            (a few MB each on the default workload).
        forks: the LRU store of fork points; trees on one env pass the same one so that its bound
            holds for all of them (default: this tree's own).
    """

    def __init__(
        self,
        env: Any,
        instance: str,
        episode_seed: int,
        max_snapshots: int = 16,
        forks: OrderedDict[tuple[Any, ...], dict[str, Any]] | None = None,
    ):
        self.env, self.instance, self.episode_seed = env, instance, int(episode_seed)
        self.nodes: dict[tuple[int, ...], StepOutcome] = {}
        self.snaps = OrderedDict() if forks is None else forks
        self.max_snapshots = max_snapshots
        self.real_steps = 0
        self.derived_stops = 0
        """Stops derived from their parent node (new nodes that ran nothing; saved like real steps)."""
        """Env steps run for the first time (each is a real interval of the run)."""
        self.replayed_steps = 0
        """Env steps re-run only to bring the live env back to a prefix."""
        self.memo_hits = 0
        """Steps answered from the memo."""

    def _at(self) -> tuple[int, ...] | None:
        """The prefix the live env stands at in this tree's episode (None: elsewhere, ended or not started)."""
        pos = self.env.position()
        return pos[2] if pos is not None and pos[:2] == (self.instance, self.episode_seed) else None

    def _key(self, prefix: tuple[int, ...]) -> tuple[Any, ...]:
        return (self.instance, self.episode_seed, prefix)

    def _fork(self, prefix: tuple[int, ...]) -> None:
        if self.max_snapshots <= 0:
            return
        k = self._key(prefix)
        self.snaps[k] = self.env.snapshot()
        self.snaps.move_to_end(k)
        while len(self.snaps) > self.max_snapshots:
            self.snaps.popitem(last=False)

    @property
    def new_nodes(self) -> int:
        """Nodes this tree added since it was built or loaded (real steps + derived stops): what a save must keep."""
        return self.real_steps + self.derived_stops

    def _is_stop(self, action: int) -> bool:
        acts = getattr(self.env, "actions", None)
        return acts is not None and 0 <= action < len(acts) and acts[action][0] == "stop"

    def root(self) -> StepOutcome:
        """The episode's first observation (reset), memoized."""
        if () not in self.nodes:
            obs, info = self.env.reset(options={"instance": self.instance, "episode_seed": self.episode_seed})
            self.nodes[()] = StepOutcome(obs, 0.0, False, False, _keep(info), self.env.action_masks())
            self._fork(())
        return self.nodes[()]

    def _goto(self, prefix: tuple[int, ...]) -> None:
        """Bring the live env to ``prefix``: from where it stands, a fork point, or a fresh reset."""
        at = self._at()
        if at == prefix:
            return
        start: tuple[int, ...] | None = at if at is not None and prefix[: len(at)] == at else None
        lo = (
            0 if start is None else len(start) + 1
        )  # a fork point beats the live position only when further on
        for n in range(len(prefix), lo - 1, -1):
            k = self._key(prefix[:n])
            if k in self.snaps:
                self.env.restore(self.snaps[k])
                self.snaps.move_to_end(k)
                start = prefix[:n]
                break
        if start is None:
            self.env.reset(options={"instance": self.instance, "episode_seed": self.episode_seed})
            start = ()
        for i in range(len(start), len(prefix)):
            self.env.step(prefix[i])
            self._fork(prefix[: i + 1])  # replayed once, branched from cheaply after
        self.replayed_steps += len(prefix) - len(start)

    def step(self, prefix: tuple[int, ...], action: int) -> StepOutcome:
        """The outcome of ``action`` after the actions ``prefix`` (run for real once, then memoized)."""
        key = (*prefix, int(action))
        hit = self.nodes.get(key)
        if hit is not None:
            self.memo_hits += 1
            return hit
        parent = self.nodes.get(tuple(prefix)) if prefix else self.root()
        if self._is_stop(int(action)) and parent is not None and not (parent.terminated or parent.truncated):
            # a stop changes nothing: the env hands back the last observation, reward 0 and the state's
            # info (no train loss: no interval ran). Derived from the parent instead of bringing the live
            # env to the prefix (a replay of the whole prefix in a fresh process); tests/test_memo.py
            # checks it equals the real env's stop bit for bit.
            info = {k: v for k, v in parent.info.items() if k != "train_loss"}
            out = StepOutcome(parent.obs.copy(), 0.0, True, False, info, parent.mask.copy())
            self.nodes[key] = out
            self.derived_stops += 1
            return out
        self.root()
        self._goto(prefix)
        obs, r, term, trunc, info = self.env.step(int(action))
        self.real_steps += 1
        out = StepOutcome(obs, float(r), bool(term), bool(trunc), _keep(info), self.env.action_masks())
        self.nodes[key] = out
        if not (term or trunc):
            self._fork(key)
        return out


def tree_fixed_final_eval(tree: EpisodeTree) -> float:
    """The fixed-budget path of ``tree`` (every action continue) to its end: its last good eval loss.

    Free once the path is in the memo (every collection and evaluation runs the fixed budget first).
    """
    node = tree.root()
    last = float(node.info["eval_loss"])
    prefix: tuple[int, ...] = ()
    while not (node.terminated or node.truncated):
        node = tree.step(prefix, 0)
        prefix = (*prefix, 0)
        e = node.info.get("eval_loss")
        if not node.info.get("error") and e is not None and math.isfinite(float(e)):
            last = float(e)
    return last


TREE_FORMAT = "govgym-memo-tree"
TREE_VERSION = 2
"""2: JSON behind a content hash (1 was a pickle, no longer read: a memo is a cache, recomputed)."""


def tree_path(folder: Path, instance: str, episode_seed: int) -> Path:
    """``folder/<instance>-<seed>.tree``, refused (UnsafeFileError) if the name would leave ``folder``."""
    return safefile.confined(
        folder, f"{instance}-{int(episode_seed)}{TREE_SUFFIX}", what=f"memo tree of instance {instance!r}"
    )


def load_nodes(path: Path) -> dict[tuple[int, ...], StepOutcome]:
    """The nodes of one saved tree (``<instance>-<seed>.tree``, written by ``save_tree``).

    The file is JSON behind a format version and a sha256 of its content; one that fails a check is
    skipped with a warning (it is a cache: its steps are run again) and never executed.
    """
    try:
        _, body, _ = safefile.read(path, TREE_FORMAT, TREE_VERSION, "memo tree")
        nodes = {}
        for n in body["nodes"]:
            obs, mask = safefile.unpack(n["obs"]), safefile.unpack(n["mask"])
            if not (
                isinstance(obs, np.ndarray)
                and obs.dtype == np.float32
                and isinstance(mask, np.ndarray)
                and mask.dtype == bool
            ):
                raise ValueError("obs must be float32 and mask bool arrays")
            info = safefile.unpack(n["info"])
            nodes[tuple(int(a) for a in n["prefix"])] = StepOutcome(
                obs,
                float(n["reward"]),
                bool(n["terminated"]),
                bool(n["truncated"]),
                {k: info[k] for k in STEP_KEYS if k in info},
                mask,
            )
        return nodes
    except (OSError, ValueError, KeyError, TypeError) as err:  # UnsafeFileError is a ValueError
        warnings.warn(f"memo: skipping {path} ({err}); its steps will be run again.", stacklevel=2)
        return {}


def load_tree(tree: EpisodeTree, folder: Path) -> bool:
    """Fill ``tree`` with the nodes saved in ``folder`` (if any); True when something was loaded."""
    path = tree_path(folder, tree.instance, tree.episode_seed)
    if not path.is_file():
        return False
    nodes = load_nodes(path)
    tree.nodes.update(nodes)
    return bool(nodes)


def save_tree(tree: EpisodeTree, folder: Path) -> Path:
    """Write ``tree``'s nodes (outcomes only, no snapshots: a few KB of JSON) atomically into ``folder``."""
    path = tree_path(folder, tree.instance, tree.episode_seed)
    nodes = [
        {
            "prefix": list(k),
            "obs": safefile.pack(np.asarray(v.obs)),
            "reward": safefile.pack(float(v.reward)),
            "terminated": bool(v.terminated),
            "truncated": bool(v.truncated),
            "info": safefile.pack(_keep(v.info)),
            "mask": safefile.pack(np.asarray(v.mask, dtype=bool)),
        }
        for k, v in tree.nodes.items()
    ]
    return safefile.write(
        path,
        TREE_FORMAT,
        TREE_VERSION,
        {"instance": tree.instance, "episode_seed": tree.episode_seed, "nodes": nodes},
    )


class MemoFineTuneEnv(gym.Env):
    """``govgym/FineTune-v0`` over a fixed set of (instance, seed) pairs, each step memoized exactly.

    ## Description
    The real environment (``FineTuneEnv``) behind an ``EpisodeTree`` per (instance, seed): a step
    taken before on the same path is answered from memory, a new one runs the real fine-tuning run.
    Meant for training on the train split, where an agent revisits the same (instance, seed) many times.

    ## Action Space / Observation Space / Rewards / Episode End
    Exactly those of ``FineTuneEnv`` (same spaces, action masks via ``action_masks()``).

    ## Starting State
    ``reset`` draws an instance of ``split`` and an episode seed from ``seeds`` with the env's
    ``np_random``; ``options={"instance": name, "episode_seed": s}`` picks one.

    ## Arguments
    ``instances``, ``split``: as for ``FineTuneEnv``; ``seeds``: the episode seeds of each instance
    (vectorized envs get disjoint seeds so that no path is computed twice); ``max_snapshots``: fork
    points kept in memory (LRU, shared by the trees); ``memo``: a folder of saved trees to start from
    and extend (``govgym tune``/``evaluate`` write the same folder; '' = in memory only).

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        instances: Any = None,
        split: str = "train",
        seeds: Any = (0, 1, 2, 3),
        max_snapshots: int = 64,
        memo: str = "",
    ):
        super().__init__()

        self.env = FineTuneEnv(instances, split=split, wall_time_info=False)
        self.action_space, self.observation_space = self.env.action_space, self.env.observation_space
        self.action_names = self.env.action_names
        self.names = [i.name for i in self.env.pool]
        self.seeds, self.max_snapshots = [int(s) for s in seeds], int(max_snapshots)
        if not self.seeds:
            raise ValueError("MemoFineTuneEnv: seeds is empty; pass at least one episode seed.")
        self.trees: dict[tuple[str, int], EpisodeTree] = {}
        self.memo: Path | None = None
        if (
            memo
        ):  # saved trees of this instance set (e.g. from govgym tune): their paths are free from the start
            self.memo = memo_folder(memo, self.env.iset.source, torch.get_num_threads())
        self._saved: dict[tuple[str, int], int] = {}
        self._forks: OrderedDict[tuple[Any, ...], dict[str, Any]] = (
            OrderedDict()
        )  # shared by the trees: one bound
        self.tree: EpisodeTree | None = None
        self.prefix: tuple[int, ...] = ()
        self.node: StepOutcome | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        name = options.get("instance") or self.names[int(self.np_random.integers(len(self.names)))]
        ep_seed = int(options.get("episode_seed", self.seeds[int(self.np_random.integers(len(self.seeds)))]))
        key = (name, ep_seed)
        if key not in self.trees:
            self.trees[key] = EpisodeTree(self.env, name, ep_seed, self.max_snapshots, self._forks)
            if self.memo is not None:
                load_tree(self.trees[key], self.memo)
            self._saved[key] = 0
        self.tree, self.prefix = self.trees[key], ()
        self.node = self.tree.root()
        return self.node.obs.copy(), dict(self.node.info)

    def action_masks(self) -> np.ndarray:
        return (self.node.mask if self.node is not None else np.ones(self.action_space.n, dtype=bool)).copy()

    def step(self, action: Any):
        if self.tree is None or self.node is None or self.node.terminated or self.node.truncated:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset().")
        a = action_index(action, int(self.action_space.n))  # the env's own check: 3.99 is not 3
        self.node = self.tree.step(self.prefix, a)
        self.prefix = (*self.prefix, a)
        key = (self.tree.instance, self.tree.episode_seed)
        if (
            self.memo is not None
            and (self.node.terminated or self.node.truncated)
            and self.tree.new_nodes > self._saved[key]
        ):
            save_tree(self.tree, self.memo)  # each env owns its seeds: no two processes write one file
            self._saved[key] = self.tree.new_nodes
        # info is the step's own, identical whether it ran now or came from the memo (env_checker
        # demands a deterministic info); how many steps were real is in stats()
        return (
            self.node.obs.copy(),
            self.node.reward,
            self.node.terminated,
            self.node.truncated,
            dict(self.node.info),
        )

    def fixed_final_eval(self) -> float:
        """The current tree's fixed-budget run's final eval loss (its last good eval), walked through the memo."""
        if self.tree is None:
            raise RuntimeError("fixed_final_eval() before reset(); call reset() first.")
        return tree_fixed_final_eval(self.tree)

    def stats(self) -> dict[str, int]:
        """Real, replayed and memoized steps so far, over every tree."""
        return {
            k: sum(getattr(t, k) for t in self.trees.values())
            for k in ("real_steps", "replayed_steps", "memo_hits")
        }


__all__ = [
    "TREE_SUFFIX",
    "EpisodeTree",
    "MemoFineTuneEnv",
    "StepOutcome",
    "load_nodes",
    "load_tree",
    "memo_folder",
    "memo_namespace",
    "memo_siblings",
    "stray_memo_warning",
    "save_tree",
    "tree_fixed_final_eval",
    "tree_path",
    "worker_threads",
]
