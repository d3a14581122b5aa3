"""Heuristic governors: policies over the env's observation and action space with SB3's ``predict``.

Every policy implements ``predict(obs, state=None, episode_start=None, deterministic=True,
action_masks=None) -> (action, state)`` so evaluation treats heuristics and SB3 agents alike.
(The tuned heuristics of the agents issue extend this module.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

CONTINUE = 0


class FixedBudget:
    """Never stops early, never switches, never prunes: the baseline everyone runs today."""

    name = "continue"

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True, action_masks: Any = None):
        return CONTINUE, state


class RandomPolicy:
    """Uniform over the valid actions (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True, action_masks: Any = None):
        valid = np.flatnonzero(np.asarray(action_masks, dtype=bool)) if action_masks is not None else None
        if valid is None or not len(valid):
            raise ValueError("RandomPolicy.predict needs action_masks (env.action_masks()).")
        return int(self.rng.choice(valid)), state


POLICIES = {"continue": FixedBudget, "random": RandomPolicy}


def make_policy(name: str, seed: int = 0) -> Any:
    from govgym.typed import check_choice

    check_choice("--policy", name, POLICIES)
    cls = POLICIES[name]
    return cls(seed) if cls is RandomPolicy else cls()
