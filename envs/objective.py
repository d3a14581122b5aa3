"""The equal-quality objective as a gymnasium wrapper over any govgym env (efficiency/objective.py defines it).

    env = gym.make("govgym/FineTune-v2", objective="equal_quality", tolerance=0.005)
    env = EqualQuality(gym.make("govgym/FineTune-v1"), tolerance=0.005)   # the same, on any govgym env

The wrapped env's own reward (gain − λ × compute) is replaced by the equal-quality one: −(budget
fraction spent) per step, and at the episode's end 1 − 1[violated] − (the fraction the initial eval
spent), so an episode's rewards sum to R = (1 − FLOPs used / budget) − 1[violated]. The reference loss
is the fixed-budget run of the same (instance, episode seed), which the unwrapped env answers
(``fixed_final_eval``): the real env replays it from a reset (exact: an episode is a function of
instance, seed and actions) and caches it; the memo env walks its tree's fixed path (free once
collected); the fast env re-simulates it from its reset state with the same random stream. The target
is appended to the observation as the feature ``tolerance``; ``info`` gains ``reference_eval``,
``violated`` and ``eq_return`` at the episode's end.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from govgym.efficiency.objective import TOLERANCE_RANGE, Objective, violated, with_tolerance


class EqualQuality(gym.Wrapper):
    """Reward = budget fraction saved, −1 when the final eval loss misses (1 + tolerance) × the fixed run's.

    Args:
        env: a govgym env (``FineTune-v0/v1/v2``, ``FineTuneFast-v1`` or ``MemoFineTuneEnv``) whose
            unwrapped env has ``fixed_final_eval()``.
        tolerance: relative excess allowed over the full budget's final eval loss (0.005 = 0.5%).
    """

    def __init__(self, env: gym.Env, tolerance: float = 0.005):
        super().__init__(env)
        self.objective = Objective("equal_quality", tolerance)
        self.tolerance = float(tolerance)
        if not callable(getattr(env.unwrapped, "fixed_final_eval", None)):
            from govgym.typed import ConfigError

            raise ConfigError(
                f"EqualQuality: {type(env.unwrapped).__name__} cannot tell the fixed-budget run's final eval "
                "loss (no fixed_final_eval()); wrap a govgym env (FineTune-v0/v1/v2, FineTuneFast-v1, MemoFineTuneEnv)."
            )
        base = env.observation_space
        self.observation_space = spaces.Box(
            np.concatenate([base.low, [TOLERANCE_RANGE[0]]]).astype(np.float32),
            np.concatenate([base.high, [TOLERANCE_RANGE[1]]]).astype(np.float32),
            dtype=np.float32,
        )
        self._frac = 0.0
        self._frac0 = 0.0
        self._last_eval = math.nan

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._frac = self._frac0 = float(info.get("budget_frac", 0.0))
        self._last_eval = float(info.get("eval_loss", math.nan))
        return with_tolerance(obs, self.tolerance), info

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()

    def step(self, action: Any):
        obs, _, terminated, truncated, info = self.env.step(action)
        frac = float(info.get("budget_frac", self._frac))
        reward = -(frac - self._frac)
        self._frac = frac
        error = str(info.get("error") or "")
        e = info.get("eval_loss")
        if not error and e is not None and math.isfinite(float(e)):
            self._last_eval = float(e)
        if terminated or truncated:
            ref = float(self.env.unwrapped.fixed_final_eval())
            v = violated(self._last_eval, ref, self.tolerance, error)
            reward += 1.0 - float(v) - self._frac0
            info = {
                **info,
                "reference_eval": ref,
                "violated": bool(v),
                "eq_return": (1.0 - frac) - float(v),
            }
        return with_tolerance(obs, self.tolerance), float(reward), terminated, truncated, info


def make_v2(objective: str = "price", tolerance: float = 0.005, **kwargs: Any) -> gym.Env:
    """Entry point of ``govgym/FineTune-v2``: the env, wrapped in ``EqualQuality`` for that objective."""
    from govgym.envs.finetune_v2 import FineTuneV2Env

    Objective(objective, tolerance)  # one clear error for a bad objective or tolerance, before any build
    env = FineTuneV2Env(**kwargs)
    return EqualQuality(env, tolerance) if objective == "equal_quality" else env


__all__ = ["EqualQuality", "make_v2", "with_tolerance"]
