"""Hindsight demonstrations from saved step trees, and behaviour cloning of an SB3 policy on them.

A saved tree of a *train* (instance, seed) holds every step any policy took there: the fixed-budget
path, each heuristic's stop and switch branches, whatever an agent explored. On that tree the best
decision at each explored node is known in hindsight by dynamic programming:

    V(node) = max(0, max over explored valid actions a: r_a + V(child_a))     (0: stop now)

and the label is the maximizing action (stop when nothing explored beats 0). Cloning these labels —
the policy head by cross-entropy under the action mask, the value head by regression on V — gives PPO
a start near the best of what was tried, instead of a uniform policy whose every branch costs real
fine-tuning steps. RL then improves on it (AlphaGo-style: supervised start, then reinforcement).
Demonstrations come from the train split only; held-out instances are never looked at.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from govgym.envs.memo import TREE_SUFFIX, load_nodes


@dataclass
class Demonstrations:
    obs: np.ndarray
    """(n, n_features) raw observations."""
    masks: np.ndarray
    """(n, n_actions) valid actions at each observation."""
    actions: np.ndarray
    """(n,) the hindsight-best action."""
    values: np.ndarray
    """(n,) the hindsight-best return from that observation on."""
    trees: int = 0


def tree_labels(
    nodes: dict[tuple[int, ...], Any], stop: int
) -> list[tuple[np.ndarray, np.ndarray, int, float]]:
    """(obs, mask, best action, value) at every explored, non-terminal node of one tree."""
    children: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for key in nodes:
        if key:
            children[key[:-1]].append(key[-1])
    values: dict[tuple[int, ...], tuple[float, int]] = {}

    def solve(prefix: tuple[int, ...]) -> float:
        if prefix in values:
            return values[prefix][0]
        node = nodes[prefix]
        best, best_a = 0.0, stop  # stopping now earns nothing more
        if not (node.terminated or node.truncated):
            for a in sorted(children[prefix]):  # sorted: ties go to the lower index (continue first)
                if a == stop or not node.mask[a]:
                    continue  # an invalid action acted as continue; its label would be unreachable
                v = nodes[(*prefix, a)].reward + solve((*prefix, a))
                if v > best:
                    best, best_a = v, a
        values[prefix] = (best, best_a)
        return best

    out = []
    for prefix, node in nodes.items():
        if node.terminated or node.truncated or not children[prefix]:
            continue  # a leaf nobody continued from: its best action is not known
        v = solve(prefix)
        out.append(
            (np.asarray(node.obs, dtype=np.float32), np.asarray(node.mask, dtype=bool), values[prefix][1], v)
        )
    return out


def load_demonstrations(folders: list[Path], instances: list[str], stop: int) -> Demonstrations:
    """Labels from every saved tree of ``instances`` in ``folders`` (the first folder holding a tree wins)."""

    rows: list[tuple[np.ndarray, np.ndarray, int, float]] = []
    seen: set[str] = set()
    n = 0
    for folder in folders:
        for path in sorted(Path(folder).glob(f"*{TREE_SUFFIX}")):
            inst = path.stem.rsplit("-", 1)[0]
            if inst not in instances or path.name in seen:
                continue
            nodes = load_nodes(path)  # a file that fails its checks is skipped with a warning
            if not nodes:
                continue
            seen.add(path.name)
            rows += tree_labels(nodes, stop)
            n += 1
    if not rows:
        return Demonstrations(
            np.zeros((0, 0), np.float32),
            np.zeros((0, 0), bool),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
        )
    obs, masks, acts, vals = zip(*rows)
    return Demonstrations(
        np.stack(obs), np.stack(masks), np.asarray(acts, np.int64), np.asarray(vals, np.float32), n
    )


def behaviour_clone(
    model: Any, venv: Any, demos: Demonstrations, epochs: int = 300, lr: float = 1e-3, seed: int = 0
) -> dict[str, float]:
    """Fit ``model.policy`` (PPO / MaskablePPO) to the demonstrations; set ``venv``'s obs statistics from them.

    Returns the final cross-entropy, the agreement with the labels, and the value-head error.
    """
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    masked = isinstance(model.policy, MaskableActorCriticPolicy)
    venv.obs_rms.update(
        demos.obs.astype(np.float64)
    )  # VecNormalize starts from the demonstrations' statistics
    obs = torch.as_tensor(venv.normalize_obs(demos.obs), dtype=torch.float32)
    acts = torch.as_tensor(demos.actions)
    vals = torch.as_tensor(demos.values)
    policy = model.policy
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    policy.set_training_mode(True)
    batch = min(256, len(obs))
    for _ in range(epochs):
        perm = torch.randperm(len(obs), generator=gen)
        for i in range(0, len(obs), batch):
            idx = perm[i : i + batch]
            kw = {"action_masks": demos.masks[idx.numpy()]} if masked else {}
            dist = policy.get_distribution(obs[idx], **kw)
            ce = -dist.log_prob(acts[idx]).mean()
            v_err = torch.nn.functional.mse_loss(policy.predict_values(obs[idx]).flatten(), vals[idx])
            opt.zero_grad()
            (ce + 0.5 * v_err).backward()
            opt.step()
    policy.set_training_mode(False)
    with torch.no_grad():
        kw = {"action_masks": demos.masks} if masked else {}
        dist = policy.get_distribution(obs, **kw)
        ce = float(-dist.log_prob(acts).mean())
        agree = float((dist.get_actions(deterministic=True) == acts).float().mean())
        v_rmse = float(torch.sqrt(torch.nn.functional.mse_loss(policy.predict_values(obs).flatten(), vals)))
    return {
        "samples": len(obs),
        "trees": demos.trees,
        "cross_entropy": ce,
        "agreement": agree,
        "value_rmse": v_rmse,
    }


__all__ = ["Demonstrations", "behaviour_clone", "load_demonstrations", "tree_labels"]
