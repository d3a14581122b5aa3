"""Restrict a govgym env's actions by name: ``AllowedActions(env, ["continue", "stop"])``.

A stop-only governor (``govgym train levers=false``) trains and acts under the env's own mask
intersected with its allowed actions: MaskablePPO reads ``action_masks()`` through the wrapper, and the
agent records the names in ``agent.json`` (``allowed_actions``) so that it is restricted the same way
wherever it acts (``agents/agentfile.AgentPolicy``). An action outside the set passed to ``step`` is
refused here, as the env refuses an invalid one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from govgym.envs.actions import CONTINUE, STOP, action_index, allowed_mask

STOP_ONLY = (CONTINUE, STOP)
"""The actions of a governor that only decides when to stop."""


class AllowedActions(gym.Wrapper):
    """The env with only ``allowed`` actions valid: its mask is the env's mask and the allowed set."""

    def __init__(self, env: gym.Env, allowed: Sequence[str] = STOP_ONLY):
        super().__init__(env)
        self.action_names = list(env.get_wrapper_attr("action_names"))
        self.allowed = list(allowed)
        self.allowed_mask = allowed_mask(self.action_names, self.allowed)

    def action_masks(self) -> np.ndarray:
        return np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool) & self.allowed_mask

    def step(self, action: Any):
        a = action_index(action, len(self.action_names), self.action_names)
        if not self.allowed_mask[a]:
            raise ValueError(
                f"action {a} ({self.action_names[a]}) is not allowed here; allowed: {', '.join(self.allowed)}."
            )
        return self.env.step(action)


__all__ = ["STOP_ONLY", "AllowedActions", "allowed_mask"]
