"""Policies by spec: tuned heuristics and trained SB3 agents behind one ``predict`` interface.

A spec is what the CLI and the evaluation harness pass around (plain, picklable strings):

- ``patience`` — a heuristic with its *tuned* knobs from the knobs YAML (packaged
  ``configs/heuristics.yaml``, written by ``govgym tune``), or its defaults if the file has none;
- ``patience:patience=3,threshold=0.01`` — a heuristic with explicit knobs;
- ``runs/train/final.zip``, ``runs/train`` or ``mppo=runs/train/final.zip`` — a trained agent: its
  folder's ``agent.json``, ``policy.safetensors`` and ``obs_norm.json`` (see ``AgentPolicy``).

The agent folder itself (its files, their checks, ``AgentPolicy``) is ``agents/agentfile.py``'s;
its names are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from govgym.agents.agentfile import (  # re-exported (see __all__): the agent folder's names, where callers found them
    ACTIVATIONS,
    AGENT_FORMAT,
    AGENT_META,
    ALGOS,
    OBS_NORM_FILE,
    POLICY_FILE,
    AgentPolicy,
    agent_folder,
    agent_meta,
    canonical_meta,
    check_obs_norm,
    policy_class,
    write_agent,
)
from govgym.agents.heuristics import POLICIES, make_policy
from govgym.envs.instances import DEFAULT_VERSION
from govgym.typed import ConfigError, check_choice, load_yaml


def default_knobs_path(version: int = DEFAULT_VERSION) -> Path:
    """The packaged tuned knobs of the FineTune-v{version} train split (``govgym tune --write``)."""
    return Path(str(files("govgym.configs") / ("heuristics.yaml" if version == 0 else "heuristics_v1.yaml")))


def load_knobs(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """{heuristic: knobs} from a knobs YAML (default: packaged ``configs/heuristics.yaml``)."""
    p = Path(path) if path else default_knobs_path()
    if not p.is_file():
        if path:
            raise ConfigError(
                f"knobs: {p} is not a file; pass a YAML written by `govgym tune` (or leave it empty)."
            )
        return {}
    data = load_yaml(p).get("heuristics", {})

    for name, knobs in data.items():
        if name not in POLICIES or not isinstance(knobs, dict):
            raise ConfigError(
                f"knobs: {p}: '{name}' is not a heuristic with a mapping of knobs; heuristics: {', '.join(POLICIES)}."
            )
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

    s = spec.strip()
    label, _, rest = s.partition("=") if "=" in s.split(":", 1)[0] else ("", "", s)
    target = rest if label else s
    if target.endswith(".zip") or Path(target).is_dir():
        path = Path(target)
        folder = path if path.is_dir() else path.parent
        if not (folder / AGENT_META).is_file() and not (path.is_dir() or path.is_file()):
            raise ConfigError(
                f"policy {spec!r}: no trained agent at {path}; train one with `govgym train --out DIR` and pass DIR/final.zip."
            )
        meta = agent_meta(path)
        try:  # load it here, in the caller's process: a broken file is one clear error, not a worker's traceback
            AgentPolicy(path)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(
                f"agent {path}: cannot be loaded ({type(err).__name__}: {err}); point to a final.zip written by `govgym train`."
            ) from None
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
        raise ConfigError(
            f"policy {spec!r}: knob {p!r} must be key=value, e.g. patience:patience=3,threshold=0.01."
        )
    k, v = p.split("=", 1)
    return k.strip(), v.strip()


def build_policy(spec: PolicySpec, action_names: list[str], seed: int = 0) -> Any:
    """The live policy object of ``spec`` for an env with ``action_names``."""
    if spec.kind == "agent":
        policy = AgentPolicy(spec.path)
        names = policy.meta.get("action_names")
        if names is not None and list(names) != list(action_names):
            raise ConfigError(
                f"agent {spec.path}: trained with actions {names}, this env has {list(action_names)}; retrain it for this env."
            )
        return policy

    return make_policy(spec.name, action_names, seed, **dict(spec.knobs))


__all__ = [
    "ACTIVATIONS",
    "AGENT_FORMAT",
    "AGENT_META",
    "ALGOS",
    "OBS_NORM_FILE",
    "POLICY_FILE",
    "AgentPolicy",
    "PolicySpec",
    "agent_folder",
    "agent_meta",
    "build_policy",
    "canonical_meta",
    "check_obs_norm",
    "load_knobs",
    "parse_spec",
    "policy_class",
    "write_agent",
]
