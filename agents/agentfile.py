"""A trained agent's folder: writing it, reading it back with every value checked, ``AgentPolicy``.

An agent folder written by ``govgym train`` (format 2):

- ``agent.json`` — what the agent is (algorithm, SB3 policy class and kwargs, number of actions, the
  observation spec it was trained on, training config and statistics), the sha256 of every file it
  names, its own format version and a sha256 of its own content (canonical JSON without that field);
- ``policy.safetensors`` — ``model.policy.state_dict()``;
- ``obs_norm.json`` — VecNormalize's observation statistics (mean, var, count, clip_obs, epsilon);
- ``final.zip``, ``vecnormalize.pkl``, ``checkpoints/`` — SB3's own pickled files, for ``govgym train
  --resume`` only. **Trusted files only: resuming unpickles SB3's own files.** Evaluating, replaying,
  deploying or sharing an agent never opens them.

The content hashes are integrity, not validation (anyone can recompute them after an edit), so every
value read is also checked as a typed config value would be: ``n_actions`` and ``action_names``, the
observation statistics (``check_obs_norm``), finite policy weights, policy kwargs that build.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors.torch import load, save

from govgym import sealed
from govgym.agents.specs import (
    AGENT_FORMAT,
    AGENT_META,
    ALGOS,
    MASKED_Q_ALGOS,
    OBS_NORM_FILE,
    POLICY_FILE,
    agent_folder,
    agent_meta,
    verified_bytes,
)
from govgym.efficiency.signals import HIGH, LOW, normalize_obs
from govgym.envs.actions import allowed_mask, masked_argmax, restricted
from govgym.results import atomic_write, no_nan
from govgym.typed import ConfigError

ACTIVATIONS = ("Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU")
"""torch.nn activations a policy's ``activation_fn`` may name in agent.json."""


canonical_meta = sealed.canonical
"""The bytes a meta file's own hash covers (``govgym.sealed.canonical``; the name kept for callers)."""

MAX_ACTIONS = 64
"""An agent.json's n_actions above this is not an action table of govgym's (7 actions in v1)."""


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_obs_norm(norm: Any, where: str) -> None:
    """Refuse an obs_norm.json whose statistics VecNormalize could not have written.

    ``norm_obs`` a bool; ``mean`` and ``var`` one finite number per observation feature, ``var`` >= 0;
    ``clip_obs`` and ``epsilon`` finite and > 0 (``count`` is not used to act).
    """
    if not isinstance(norm, dict):
        raise ConfigError(
            f"{where}: expected a JSON object of normalization statistics, got {type(norm).__name__}."
        )
    missing = [k for k in ("norm_obs", "mean", "var", "clip_obs", "epsilon") if k not in norm]
    if missing:
        raise ConfigError(f"{where}: lacks {', '.join(missing)}; write the agent again (govgym train).")
    if not isinstance(norm["norm_obs"], bool):
        raise ConfigError(f"{where}: norm_obs must be true or false, got {norm['norm_obs']!r}.")
    for key in ("mean", "var"):
        v = norm[key]
        if not isinstance(v, list) or len(v) != LOW.shape[0] or not all(_number(x) for x in v):
            raise ConfigError(
                f"{where}: {key} must be {LOW.shape[0]} finite numbers (one per observation feature); got "
                f"{(str(len(v)) + ' values') if isinstance(v, list) else repr(v)[:60]}"
                f"{'' if not isinstance(v, list) or len(v) != LOW.shape[0] else ', not all finite'}."
            )
    if any(x < 0 for x in norm["var"]):
        raise ConfigError(f"{where}: var holds a negative variance; a variance is >= 0.")
    for key in ("clip_obs", "epsilon"):
        if not _number(norm[key]) or not norm[key] > 0:
            raise ConfigError(f"{where}: {key} must be a finite number > 0, got {norm[key]!r}.")


def policy_class(name: str) -> Any:
    """The SB3 policy class agent.json names (an allowlist: nothing else is constructed)."""
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy

    classes = {c.__name__: c for c in (MaskableActorCriticPolicy, ActorCriticPolicy, DQNPolicy)}
    if name not in classes:
        raise ConfigError(f"agent: policy class {name!r} is not one of {', '.join(classes)}.")
    return classes[name]


def _policy_kwargs(kw: dict[str, Any], out: bool) -> dict[str, Any]:
    """SB3 policy kwargs to JSON (``out``) or back: plain values, and ``activation_fn`` by torch.nn name."""

    res = dict(kw)
    act = res.get("activation_fn")
    if act is not None:
        name = act.__name__ if out else act
        if name not in ACTIVATIONS:
            raise ConfigError(f"agent: policy activation_fn {name!r} is not one of {', '.join(ACTIVATIONS)}.")
        res["activation_fn"] = name if out else getattr(torch.nn, name)
    for k, v in res.items():
        if k != "activation_fn" and not isinstance(v, (int, float, str, bool, list, dict, type(None))):
            raise ConfigError(
                f"agent: policy_kwargs[{k!r}] = {v!r} cannot be described in {AGENT_META}; train with JSON-able policy kwargs."
            )
    return res


def write_agent(folder: Path, model: Any, venv: Any, meta: dict[str, Any]) -> Path:
    """Write the safe agent files beside SB3's: ``policy.safetensors``, ``obs_norm.json``, ``agent.json``.

    ``venv`` is the VecNormalize the model trained under; ``meta`` the descriptive fields (algo,
    config, ...). agent.json gets the files' sha256, the policy's class, kwargs and spaces, and its own hash.
    """
    rms = venv.obs_rms
    norm = {
        "norm_obs": bool(venv.norm_obs),
        "mean": [float(x) for x in rms.mean],
        "var": [float(x) for x in rms.var],
        "count": float(rms.count),
        "clip_obs": float(venv.clip_obs),
        "epsilon": float(venv.epsilon),
    }
    return write_agent_files(
        folder, model.policy, int(venv.action_space.n), norm, model.policy_kwargs or {}, meta
    )


def write_agent_files(
    folder: Path,
    policy: Any,
    n_actions: int,
    norm: dict[str, Any],
    policy_kwargs: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """The safe agent files of an SB3 ``policy`` however it was trained (``govgym train``, ``govgym offline``):
    its state dict, the observation statistics ``norm`` (VecNormalize's fields), agent.json sealed."""
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in policy.state_dict().items()}
    policy_bytes = save(sd)
    norm_bytes = json.dumps(norm, allow_nan=False).encode()
    atomic_write(folder / POLICY_FILE, policy_bytes)
    atomic_write(folder / OBS_NORM_FILE, norm_bytes)
    meta = no_nan(
        {
            "resume_only": "final.zip, vecnormalize.pkl and checkpoints/ are SB3 pickles for `govgym train --resume` (trusted files only)",
            **meta,
            "format": AGENT_FORMAT,
            "policy_class": type(policy).__name__,
            "n_actions": int(n_actions),
            "policy_kwargs": _policy_kwargs(policy_kwargs, out=True),
            "files": {
                "policy": {"name": POLICY_FILE, "sha256": sealed.sha256_bytes(policy_bytes)},
                "obs_norm": {"name": OBS_NORM_FILE, "sha256": sealed.sha256_bytes(norm_bytes)},
            },
        }
    )
    meta = sealed.seal(meta)
    atomic_write(folder / AGENT_META, json.dumps(meta, indent=1, allow_nan=False).encode())
    return folder / AGENT_META


class AgentPolicy:
    """A trained agent loaded from its safe files only, deterministic by default.

    Reads ``agent.json`` (format, own hash, observation spec checked), then ``policy.safetensors`` and
    ``obs_norm.json`` after checking their sha256 against agent.json; builds the SB3 policy object
    (MaskableActorCriticPolicy / ActorCriticPolicy / DQNPolicy) for the env's spaces and loads its
    weights. Observations are normalized as VecNormalize did in training. Nothing is unpickled:
    ``final.zip`` and ``vecnormalize.pkl`` are never opened.

    Args:
        path: the agent's folder, or a file in it (``DIR/final.zip``, as ``govgym train`` prints).
    """

    def __init__(self, path: str | Path):

        path = Path(path)
        self.meta = agent_meta(path)
        self.algo = self.meta["algo"]
        policy_bytes = verified_bytes(path, self.meta, "policy")
        try:
            norm = json.loads(verified_bytes(path, self.meta, "obs_norm"))
        except ValueError as err:
            raise ConfigError(
                f"agent {path}: {OBS_NORM_FILE} is not JSON ({err}); write the agent again."
            ) from None
        n = self.meta.get("n_actions")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ACTIONS:
            raise ConfigError(
                f"agent {path}: {AGENT_META} n_actions={n!r} is not an integer in [1, {MAX_ACTIONS}]."
            )
        self.n_actions = n
        names = self.meta.get("action_names")
        if names is not None and (
            not isinstance(names, list) or len(names) != n or not all(isinstance(a, str) for a in names)
        ):
            raise ConfigError(
                f"agent {path}: {AGENT_META} action_names must be {n} strings (n_actions), got {names!r:.120}."
            )
        allowed = self.meta.get("allowed_actions")
        try:  # a stop-only agent (train levers=false): the actions it may take, applied in predict
            self.allowed = None if allowed is None else allowed_mask(names or [], allowed)
        except ValueError as err:
            raise ConfigError(
                f"agent {path}: {AGENT_META} {err} Write the agent again (govgym train)."
            ) from None
        check_obs_norm(norm, f"agent {path}: {OBS_NORM_FILE}")
        cls = policy_class(str(self.meta.get("policy_class")))
        # MaskablePPO masks its logits; a masked-Q agent (govgym offline) its argmax; PPO and DQN ignore masks
        self.masked_q = self.algo in MASKED_Q_ALGOS and cls.__name__ == "DQNPolicy"
        self.masked = cls.__name__ == "MaskableActorCriticPolicy" or self.masked_q
        kwargs = _policy_kwargs(self.meta.get("policy_kwargs") or {}, out=False)
        try:
            self.policy = cls(
                spaces.Box(LOW, HIGH, dtype=np.float32), spaces.Discrete(n), lambda _: 0.0, **kwargs
            )
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(
                f"agent {path}: {AGENT_META} policy_kwargs {kwargs} do not build a {cls.__name__} "
                f"({type(err).__name__}: {str(err)[:200]}); write the agent again (govgym train)."
            ) from None
        try:
            weights = load(policy_bytes)
        except Exception as err:  # safetensors raises its own error types for a garbled header
            raise ConfigError(
                f"agent {path}: {POLICY_FILE} is not a safetensors file ({str(err)[:200]})."
            ) from None
        bad = [
            k for k, v in weights.items() if v.dtype.is_floating_point and not bool(torch.isfinite(v).all())
        ]
        if bad:
            raise ConfigError(
                f"agent {path}: {POLICY_FILE} tensor {bad[0]} holds nan or inf values; a policy with them acts "
                "arbitrarily. Use a checkpoint from before training diverged."
            )
        try:
            self.policy.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            raise ConfigError(
                f"agent {path}: {POLICY_FILE} does not fit a {cls.__name__} with {kwargs} ({str(err)[:300]})."
            ) from None
        self.policy.set_training_mode(False)
        self.norm_obs = bool(norm["norm_obs"])
        self.mean = np.asarray(norm["mean"], dtype=np.float64)
        self.var = np.asarray(norm["var"], dtype=np.float64)
        self.clip_obs, self.epsilon = float(norm["clip_obs"]), float(norm["epsilon"])
        if self.mean.shape != LOW.shape or self.var.shape != LOW.shape:
            raise ConfigError(
                f"agent {path}: {OBS_NORM_FILE} holds statistics of {self.mean.shape} features, the observation has {LOW.shape}."
            )

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """VecNormalize.normalize_obs: clip((obs - mean) / sqrt(var + eps), -clip, clip) as float32."""
        if not self.norm_obs:
            return obs
        return normalize_obs(obs, self.mean, self.var, self.clip_obs, self.epsilon)

    def predict(
        self,
        obs: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: Any = None,
    ):
        """SB3's predict: one observation (n_features,) -> a 0-d action array; a batch (n, n_features) -> (n,)."""
        o = np.asarray(obs, dtype=np.float32)
        single = o.ndim == 1
        o = o.reshape(1, -1) if single else o
        if o.ndim != 2 or o.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"AgentPolicy.predict: expected observations of shape ({self.mean.shape[0]},) or (n, {self.mean.shape[0]}), got {np.shape(obs)}."
            )
        masks = restricted(action_masks, self.allowed, len(o), self.n_actions) if self.masked else None
        if self.masked_q:
            with torch.no_grad():
                q = self.policy.q_net(torch.as_tensor(self.normalize_obs(o))).numpy()
            a = masked_argmax(q, masks)
            return (a.reshape(()) if single else a), state
        kw = {} if masks is None else {"action_masks": masks}
        a, state = self.policy.predict(
            self.normalize_obs(o), state=state, episode_start=episode_start, deterministic=deterministic, **kw
        )
        a = np.asarray(a).reshape(-1)
        return (a.reshape(()) if single else a), state


__all__ = [
    "ACTIVATIONS",
    "AGENT_FORMAT",
    "AGENT_META",
    "ALGOS",
    "MAX_ACTIONS",
    "OBS_NORM_FILE",
    "POLICY_FILE",
    "AgentPolicy",
    "agent_folder",
    "agent_meta",
    "canonical_meta",
    "check_obs_norm",
    "policy_class",
    "write_agent",
    "write_agent_files",
]
