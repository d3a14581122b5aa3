"""``Governor``: an exported policy acting with numpy only (SB3's ``predict``, no torch, SB3 or gymnasium).

Built by ``deploy.artifact.load_governor`` from a checked artifact: an agent's action network as numbered
linear layers with their activations, VecNormalize's observation statistics, and the mode of the policy's
distribution computed as torch computes it (so an exported agent picks SB3's action on every
observation); or a heuristic rebuilt by ``agents.heuristics.make_policy``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from govgym.agents.heuristics import make_policy
from govgym.deploy.validate import ACTIVATIONS
from govgym.efficiency.signals import normalize_obs
from govgym.envs.actions import allowed_mask, masked_argmax, restricted
from govgym.errors import ConfigError


def _activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "Tanh":
        return np.tanh(x)
    if name == "ReLU":
        return np.maximum(x, 0)
    if name == "LeakyReLU":
        return np.where(x >= 0, x, x * np.float32(0.01))
    if name == "ELU":
        return np.where(x > 0, x, np.expm1(x))
    if name == "SiLU":
        return x / (1 + np.exp(-x))
    if name == "GELU":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype)
    raise ConfigError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}.")


def _categorical_mode(logits: np.ndarray) -> np.ndarray:
    """The mode of torch's ``Categorical(logits=...)`` as SB3 takes it: argmax of its probabilities.

    Done step by step as torch does it in float32 (logits minus their logsumexp, then softmax), so that
    two actions whose logits differ by less than float32 can resolve tie the same way (first index).
    """
    z = logits.astype(np.float32)
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True, dtype=np.float32))
    z = z - lse
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True, dtype=np.float32)).argmax(axis=1)


class Governor:
    """An exported policy: SB3's ``predict`` over govgym's observation, with numpy only.

    Attributes:
        kind: 'agent' or 'heuristic'.
        action_names: the env's actions, in the order the policy indexes them.
        interval_steps: the decision interval K (optimizer steps per decision) it was trained with.
        feature_names: the observation's features, in order.
        meta: the artifact's governor.json.
    """

    def __init__(self, meta: dict[str, Any], weights: dict[str, np.ndarray] | None = None):
        self.meta = meta
        self.kind: str = meta["kind"]
        self.action_names: list[str] = list(meta["action_names"])
        self.interval_steps: int = int(meta["interval_steps"])
        self.feature_names: list[str] = list(meta["observation"]["features"])
        self.n_actions = len(self.action_names)
        if self.kind == "heuristic":
            h = meta["heuristic"]
            self._heuristic = make_policy(h["name"], self.action_names, **dict(h["knobs"]))
            # a rule whose stop is a fitted model (learned_curve) stays shielded when exported, as in evaluate
            self.learned = getattr(self._heuristic, "learned", False) is True
            return
        self.learned = True
        allowed = meta.get("allowed_actions")
        try:  # a stop-only agent (train levers=false) stays one when exported
            self.allowed = None if allowed is None else allowed_mask(self.action_names, allowed)
        except ValueError as err:
            raise ConfigError(f"governor.json: {err} Export the agent again (govgym export).") from None
        net = meta["network"]
        self.masked = bool(net["masked"])
        self.q_values = net["head"] == "q"
        self.layers = []
        for i, act in enumerate(net["activations"]):
            w, b = weights[f"layer{i}.weight"], weights[f"layer{i}.bias"]  # type: ignore[index]
            self.layers.append((w.astype(np.float32), b.astype(np.float32), act))
        norm = meta["normalization"]
        self.norm_obs = bool(norm["norm_obs"])
        self.mean = np.asarray(norm["mean"], dtype=np.float64)
        self.var = np.asarray(norm["var"], dtype=np.float64)
        self.clip_obs, self.epsilon = float(norm["clip_obs"]), float(norm["epsilon"])

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """VecNormalize's formula: clip((obs - mean) / sqrt(var + eps), -clip, clip) as float32."""
        if not self.norm_obs:
            return obs
        return normalize_obs(obs, self.mean, self.var, self.clip_obs, self.epsilon)

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The action logits (or Q-values) of a batch (n, n_features) of raw observations."""
        x = self.normalize_obs(np.asarray(obs, dtype=np.float32))
        for w, b, act in self.layers:
            x = x @ w.T + b
            if act:
                x = _activation(act, x)
        return x

    def predict(
        self,
        obs: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: Any = None,
    ) -> tuple[np.ndarray, Any]:
        """SB3's predict: one observation (n_features,) -> a 0-d int64 array; a batch (n, n_features) -> (n,).

        Always deterministic (the mode of the policy's distribution). ``action_masks`` (True = valid)
        restrict a maskable agent's choice as MaskablePPO does (a masked-Q agent of ``govgym offline``: its
        argmax); an unmasked agent (PPO, DQN) ignores
        them, as SB3 does. Heuristics use them as in ``govgym evaluate``.
        """
        if self.kind == "heuristic":
            return self._heuristic.predict(obs, state, episode_start, deterministic, action_masks)
        o = np.asarray(obs, dtype=np.float32)
        single = o.ndim == 1
        o = o.reshape(1, -1) if single else o
        n_feat = len(self.feature_names)
        if o.ndim != 2 or o.shape[1] != n_feat:
            raise ConfigError(
                f"Governor.predict: expected observations of shape ({n_feat},) or (n, {n_feat}), got {np.shape(obs)}."
            )
        z = self.logits(o)
        m = restricted(action_masks, self.allowed, len(o), self.n_actions) if self.masked else None
        if self.q_values:  # a masked-Q agent (govgym offline) takes the best valid and allowed action
            a = masked_argmax(z, m)
        else:
            if m is not None:
                z = np.where(m, z, np.float32(-1e8))  # MaskableCategorical's HUGE_NEG
            a = _categorical_mode(z)
        a = a.astype(np.int64)
        return (a.reshape(()) if single else a), state


__all__ = ["Governor"]
