"""Policies by spec: tuned heuristics and trained SB3 agents behind one ``predict`` interface.

A spec is what the CLI and the evaluation harness pass around (plain, picklable strings):

- ``patience`` — a heuristic with its *tuned* knobs from the knobs YAML (packaged
  ``configs/heuristics.yaml``, written by ``govgym tune``), or its defaults if the file has none;
- ``patience:patience=3,threshold=0.01`` — a heuristic with explicit knobs;
- ``runs/train/final.zip``, ``runs/train`` or ``mppo=runs/train/final.zip`` — a trained agent: its
  folder's ``agent.json``, ``policy.safetensors`` and ``obs_norm.json`` (see ``AgentPolicy``).

Spec parsing, knobs and agent.json reading are ``agents/specs.py``'s (free of SB3 and gymnasium, so
``govgym.deploy`` can use them); the agent folder itself (its files, their value checks, ``AgentPolicy``)
is ``agents/agentfile.py``'s. Their names are re-exported here, where callers found them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govgym.agents.agentfile import (  # re-exported (see __all__): the agent folder's names, where callers found them
    ACTIVATIONS,
    AgentPolicy,
    canonical_meta,
    check_obs_norm,
    policy_class,
    write_agent,
)
from govgym.agents.heuristics import make_policy
from govgym.agents.specs import (  # re-exported (see __all__): spec and agent.json names
    AGENT_FORMAT,
    AGENT_META,
    ALGOS,
    OBS_NORM_FILE,
    POLICY_FILE,
    PolicySpec,
    agent_folder,
    agent_meta,
    default_knobs_path,
    load_knobs,
)
from govgym.agents.specs import parse_spec as parse_any_spec
from govgym.typed import ConfigError


def parse_spec(spec: str, knobs_file: str | Path | None = None) -> PolicySpec:
    """Parse one spec string (see the module docstring); an agent is loaded here to check it (``AgentPolicy``)."""
    return parse_any_spec(spec, knobs_file, load_agent=AgentPolicy)


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
    "default_knobs_path",
    "check_obs_norm",
    "load_knobs",
    "parse_spec",
    "policy_class",
    "write_agent",
]
