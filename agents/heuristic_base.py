"""The heuristic governors' shared base: SB3's ``predict`` over per-env episode bookkeeping, features by name.

The observation is the 20 features of ``FEATURE_NAMES`` (the price objective: λ is the ``lam`` feature),
or those 20 and one more, ``tolerance`` (index 20), under the equal-quality objective. numpy only.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from govgym.efficiency.signals import FEATURE_NAMES
from govgym.typed import ConfigError

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
TOLERANCE = len(FEATURE_NAMES)
"""Index of the equal-quality objective's ``tolerance``, appended after the 20 features when present."""
N_FEATURES = (len(FEATURE_NAMES), len(FEATURE_NAMES) + 1)
"""Observation lengths a heuristic accepts: the price objective's 20, the equal-quality objective's 21."""
CONTINUE = 0


def tolerance(obs: np.ndarray) -> float | None:
    """The equal-quality objective's tolerance (obs[20]); None under the price objective (20 features)."""
    return float(obs[TOLERANCE]) if len(obs) > TOLERANCE else None


class Heuristic:
    """Shared bookkeeping: one episode state per env, reset when its episode starts; actions by name.

    Subclasses implement ``new_state`` (a fresh episode's bookkeeping for one env) and ``act`` (one
    env's action from its observation, action mask and state, which ``act`` updates in place).
    """

    name = "heuristic"

    def __init__(self, action_names: list[str] | None = None):
        self.action_names = list(action_names or [])
        self._states: list[SimpleNamespace] = []  # env i of the last batch -> its episode bookkeeping
        self._budget_left = np.empty(0, dtype=np.float32)

    def new_state(self) -> SimpleNamespace:
        """A fresh episode's bookkeeping for one env."""
        return SimpleNamespace()

    def act(self, obs: np.ndarray, mask: np.ndarray | None, s: SimpleNamespace) -> int:
        raise NotImplementedError

    def action(self, name: str) -> int:
        return self.action_names.index(name)

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: Any = None,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``: actions for one observation or a batch (row i = env i of a VecEnv).

        Args:
            observation: Shape (20,) for one env, or (n, 20) for n envs; 21 features (the tolerance
                last) under the equal-quality objective.
            state: Returned unchanged (heuristics keep their own per-env bookkeeping, so like SB3's
                non-recurrent policies they need none passed back).
            episode_start: Bool per env (or one bool): a true entry starts that env's episode afresh.
                Without it a new episode is still detected by that env's budget-left feature rising.
            deterministic: Unused (heuristics are deterministic; ``random`` draws from its own seed).
            action_masks: Shape (A,) or (n, A), True where an action is valid (``env.action_masks()``).

        Returns:
            ``(actions, state)``: a 0-d int64 array for one observation, shape (n,) for a batch, as
            SB3's policies return them.
        """
        batch, masks, single = self._track(observation, episode_start, action_masks)
        actions = np.array(
            [self.act(o, None if masks is None else masks[i], self._states[i]) for i, o in enumerate(batch)],
            dtype=np.int64,
        )
        return (actions.squeeze(axis=0) if single else actions), state

    def _track(
        self, observation: Any, episode_start: Any, action_masks: Any
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(observations as (n, 20|21), masks as (n, A) or None, whether one observation was given), with
        each env's episode bookkeeping started afresh where its episode starts."""
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs.reshape(1, -1) if single else obs
        if batch.ndim != 2 or batch.shape[1] not in N_FEATURES:
            raise ConfigError(
                f"{self.name}.predict: expected an observation of shape ({N_FEATURES[0]},) or a batch (n, "
                f"{N_FEATURES[0]}) (price objective), or {N_FEATURES[1]} features with the tolerance last "
                f"(equal quality); got shape {obs.shape}. Pass what the govgym env returns."
            )
        n = len(batch)
        if len(self._states) != n:  # another number of envs: each starts its own bookkeeping
            self._states = [self.new_state() for _ in range(n)]
            self._budget_left = np.full(n, np.inf, dtype=np.float32)
        starts = (
            np.zeros(n, dtype=bool)
            if episode_start is None
            else np.asarray(episode_start, dtype=bool).reshape(-1)
        )
        masks = None if action_masks is None else np.asarray(action_masks, dtype=bool).reshape(n, -1)
        if starts.size not in (1, n):
            raise ConfigError(
                f"{self.name}.predict: episode_start has {starts.size} entries for {n} observations; pass one per env."
            )
        starts = np.broadcast_to(starts, (n,))
        for i, o in enumerate(batch):
            left = o[F["budget_left"]]
            if starts[i] or left > self._budget_left[i] + 1e-9:  # budget left only falls within an episode
                self._states[i] = self.new_state()
            self._budget_left[i] = left
        return batch, masks, single


__all__ = ["CONTINUE", "F", "N_FEATURES", "TOLERANCE", "Heuristic", "tolerance"]
