"""Policies by spec: tuned heuristics and trained SB3 agents behind one ``predict`` interface.

A spec is what the CLI and the evaluation harness pass around (plain, picklable strings):

- ``patience`` — a heuristic with its *tuned* knobs from the knobs YAML (packaged
  ``configs/heuristics.yaml``, written by ``govgym tune``), or its defaults if the file has none;
- ``patience:patience=3,threshold=0.01`` — a heuristic with explicit knobs;
- ``runs/train/final.zip`` or ``mppo=runs/train/final.zip`` — a trained agent (the folder's
  ``agent.json`` names the algorithm; ``vecnormalize.pkl`` beside it normalizes observations exactly
  as in training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from govgym.typed import ConfigError, load_yaml

AGENT_META = "agent.json"
AGENT_FORMAT = 1


def default_knobs_path() -> Path:
    from importlib.resources import files

    return Path(str(files("govgym.configs") / "heuristics.yaml"))


def load_knobs(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """{heuristic: knobs} from a knobs YAML (default: packaged ``configs/heuristics.yaml``)."""
    p = Path(path) if path else default_knobs_path()
    if not p.is_file():
        if path:
            raise ConfigError(f"knobs: {p} is not a file; pass a YAML written by `govgym tune` (or leave it empty).")
        return {}
    data = load_yaml(p).get("heuristics", {})
    from govgym.agents.heuristics import POLICIES

    for name, knobs in data.items():
        if name not in POLICIES or not isinstance(knobs, dict):
            raise ConfigError(f"knobs: {p}: '{name}' is not a heuristic with a mapping of knobs; heuristics: {', '.join(POLICIES)}.")
    return data


@dataclass(frozen=True)
class PolicySpec:
    """A parsed spec: ``label`` (leaderboard name), ``kind`` ('heuristic' | 'agent'), and its payload."""

    label: str
    kind: str
    name: str = ""
    knobs: tuple[tuple[str, Any], ...] = ()
    path: str = ""


def parse_spec(spec: str, knobs_file: str | Path | None = None) -> PolicySpec:
    """Parse one spec string (see the module docstring); a bad one is a clear error."""
    from govgym.agents.heuristics import POLICIES
    from govgym.typed import check_choice

    s = spec.strip()
    label, _, rest = s.partition("=") if "=" in s.split(":", 1)[0] else ("", "", s)
    target = rest if label else s
    if target.endswith(".zip") or Path(target).is_dir():
        path = Path(target)
        if path.is_dir():
            path = path / "final.zip"
        if not path.is_file():
            raise ConfigError(f"policy {spec!r}: no trained agent at {path}; train one with `govgym train --out DIR` and pass DIR/final.zip.")
        meta = _agent_meta(path)
        try:  # load it here, in the caller's process: a broken file is one clear error, not a worker's traceback
            AgentPolicy(path)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"agent {path}: cannot be loaded ({type(err).__name__}: {err}); point to a final.zip written by `govgym train`.") from None
        return PolicySpec(label or meta.get("algo", "agent"), "agent", path=str(path))
    name, _, kv = target.partition(":")
    check_choice("policy", name, POLICIES)
    if kv:
        knobs = {k: yaml.safe_load(v) for k, v in (_pair(spec, p) for p in kv.split(","))}
        return PolicySpec(label or target, "heuristic", name, tuple(sorted(knobs.items())))
    tuned = load_knobs(knobs_file).get(name, {})
    return PolicySpec(label or name, "heuristic", name, tuple(sorted(tuned.items())))


def _pair(spec: str, p: str) -> tuple[str, str]:
    if "=" not in p:
        raise ConfigError(f"policy {spec!r}: knob {p!r} must be key=value, e.g. patience:patience=3,threshold=0.01.")
    k, v = p.split("=", 1)
    return k.strip(), v.strip()


def _agent_meta(path: Path) -> dict[str, Any]:
    meta_path = path.parent / AGENT_META
    if not meta_path.is_file():
        raise ConfigError(f"agent {path}: no {AGENT_META} beside it; it was not written by `govgym train` (retrain, or copy the whole folder).")
    try:
        meta = json.loads(meta_path.read_text())
        from govgym.agents.train import ALGOS

        if meta.get("algo") not in ALGOS:
            raise ValueError(f"algo {meta.get('algo')!r} is not one of {', '.join(ALGOS)}")
    except (OSError, ValueError) as err:
        raise ConfigError(f"agent {path}: {meta_path} is unreadable ({err}); it was not written by `govgym train`.") from None
    from govgym.efficiency.signals import spec_hash

    if meta.get("obs_spec") != spec_hash():
        raise ConfigError(
            f"agent {path}: trained on observation spec {meta.get('obs_spec')}, this govgym computes {spec_hash()}; "
            "its inputs would mean something else. Retrain it with this version."
        )
    return meta


class AgentPolicy:
    """A trained SB3 agent with its saved VecNormalize statistics, deterministic by default."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.meta = _agent_meta(path)
        self.algo = self.meta["algo"]
        from govgym.agents.train import algo_class

        self.model = algo_class(self.algo).load(str(path), device="cpu")
        self.vecnorm = None
        vn = path.parent / self.meta.get("vecnormalize", "vecnormalize.pkl")
        if vn.is_file():
            import pickle

            with vn.open("rb") as f:
                self.vecnorm = pickle.load(f)  # VecNormalize without its venv: normalize_obs only
            self.vecnorm.training = False

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True, action_masks: Any = None):
        o = np.asarray(obs, dtype=np.float32).reshape(1, -1)
        if self.vecnorm is not None:
            o = self.vecnorm.normalize_obs(o)
        kw = {"action_masks": np.asarray(action_masks, dtype=bool).reshape(1, -1)} if self.algo == "maskable_ppo" and action_masks is not None else {}
        a, state = self.model.predict(o, state=state, episode_start=episode_start, deterministic=deterministic, **kw)
        return int(np.asarray(a).reshape(-1)[0]), state


def build_policy(spec: PolicySpec, action_names: list[str], seed: int = 0) -> Any:
    """The live policy object of ``spec`` for an env with ``action_names``."""
    if spec.kind == "agent":
        return AgentPolicy(spec.path)
    from govgym.agents.heuristics import make_policy

    return make_policy(spec.name, action_names, seed, **dict(spec.knobs))


__all__ = ["AgentPolicy", "PolicySpec", "build_policy", "load_knobs", "parse_spec"]
