"""Policy specs and agent files, read without SB3 or gymnasium (what ``govgym.deploy`` may use).

A spec is what the CLI and the evaluation harness pass around (plain, picklable strings; see
``agents/policies.py`` for the forms). This module parses specs and reads an agent folder's
``agent.json`` and the files it names, every check included (format, own content hash, algorithm,
observation spec, confined names, file hashes: ``govgym.sealed``); building an SB3 policy from them is
``agents.policies``' job, the one module of this pair that imports torch's SB3 side and gymnasium.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from govgym import sealed
from govgym.agents.heuristics import POLICIES
from govgym.efficiency.signals import spec_hash
from govgym.typed import ConfigError, check_choice, load_yaml

TRAIN_ALGOS = ("maskable_ppo", "ppo", "dqn")
"""The algorithms ``govgym train`` trains with (agents/train.py)."""
ALGOS = (*TRAIN_ALGOS, "cql")
"""The algorithms an agent folder may name: ``govgym train``'s, and ``cql`` (``govgym offline``, agents/offline.py:
an SB3 DQNPolicy learned offline, acting greedily among its valid and allowed actions)."""
MASKED_Q_ALGOS = ("cql",)
"""Q-value agents whose argmax is restricted to the valid and allowed actions (trained with the masks)."""
AGENT_META = "agent.json"
AGENT_FORMAT = 2
"""2: policy in safetensors + observation statistics in JSON, content hashes (1 loaded SB3's pickles)."""
POLICY_FILE = "policy.safetensors"
OBS_NORM_FILE = "obs_norm.json"


def default_knobs_path(version: int | None = None) -> Path:
    """The packaged tuned knobs of the FineTune-v{version} train split (``govgym tune --write``).

    ``version`` None: the default env version (``envs.instances.DEFAULT_VERSION``, imported only then: it
    loads the run's config, and with it torch).
    """
    if version is None:
        from govgym.envs.instances import DEFAULT_VERSION

        version = DEFAULT_VERSION
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
    """A parsed spec: ``label`` (leaderboard name), ``kind`` ('heuristic' | 'agent'), and its payload.

    ``shield``: None, or the k of the shield the policy runs behind (``agents/shield.py``; ``govgym
    evaluate`` adds such a copy of each agent, labelled ``<label>+shield``).
    """

    label: str
    kind: str
    name: str = ""
    knobs: tuple[tuple[str, Any], ...] = ()
    path: str = ""
    shield: float | None = None


def parse_spec(
    spec: str, knobs_file: str | Path | None = None, load_agent: Callable[[Path], Any] | None = None
) -> PolicySpec:
    """Parse one spec string (see the module docstring); a bad one is a clear error.

    Args:
        spec: a heuristic (``patience``, ``patience:patience=3``) or an agent (``DIR``, ``DIR/final.zip``,
            ``label=DIR/final.zip``).
        knobs_file: the tuned knobs of a bare heuristic name (default: the packaged ones).
        load_agent: loads an agent to check it can be used (``agents.policies.AgentPolicy``; needs SB3's
            policy classes); None: only its ``agent.json`` is checked (what deploy/ can do without SB3).
    """

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
        if load_agent is None:
            return PolicySpec(label or meta.get("algo", "agent"), "agent", path=str(path))
        try:  # load it here, in the caller's process: a broken file is one clear error, not a worker's traceback
            load_agent(path)
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


def agent_folder(path: str | Path) -> Path:
    """The folder of an agent given as the folder itself or as a file in it (``DIR/final.zip``)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def agent_meta(path: Path) -> dict[str, Any]:
    """agent.json of the agent at ``path``, checked: format, own content hash, algorithm, observation spec."""
    meta_path = agent_folder(path) / AGENT_META
    if not meta_path.is_file():
        raise ConfigError(
            f"agent {path}: no {AGENT_META} beside it; it was not written by `govgym train` (retrain, or copy the whole folder)."
        )
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"agent {path}: {meta_path} is unreadable ({err}); it was not written by `govgym train`."
        ) from None
    if meta.get("format") != AGENT_FORMAT:
        raise ConfigError(
            f"agent {path}: {meta_path} has format {meta.get('format')!r}, this govgym reads format {AGENT_FORMAT} "
            "(policy in safetensors with content hashes; format 1 agents loaded SB3 pickles and are not loaded). Retrain it with this version."
        )
    if not sealed.is_sealed(meta):
        raise ConfigError(
            f"agent {path}: {meta_path} fails its content hash: it was edited after `govgym train` wrote it. Refused; retrain or restore the file."
        )

    if meta.get("algo") not in ALGOS:
        raise ConfigError(
            f"agent {path}: {meta_path}: algo {meta.get('algo')!r} is not one of {', '.join(ALGOS)}."
        )
    if meta.get("obs_spec") != spec_hash():
        raise ConfigError(
            f"agent {path}: trained on observation spec {meta.get('obs_spec')}, this govgym computes {spec_hash()}; "
            "its inputs would mean something else. Retrain it with this version."
        )
    return meta


def verified_bytes(path: Path, meta: dict[str, Any], role: str) -> bytes:
    """The bytes of the file agent.json names for ``role``, confined to the agent's folder and hash-checked."""
    entry = (meta.get("files") or {}).get(role)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(
            f"agent {path}: {AGENT_META} names no '{role}' file; it was not written by this govgym's `govgym train`."
        )
    file = sealed.confined(agent_folder(path), entry["name"], f"agent {path}: {AGENT_META} files.{role}")
    if not file.is_file():
        raise ConfigError(f"agent {path}: {file.name} is missing; copy the whole agent folder.")
    data = file.read_bytes()
    if sealed.sha256_bytes(data) != entry.get("sha256"):
        raise ConfigError(
            f"agent {path}: {file.name} fails the content hash in {AGENT_META}: it was changed after training. Refused."
        )
    return data


__all__ = [
    "AGENT_FORMAT",
    "AGENT_META",
    "ALGOS",
    "MASKED_Q_ALGOS",
    "TRAIN_ALGOS",
    "OBS_NORM_FILE",
    "POLICY_FILE",
    "PolicySpec",
    "agent_folder",
    "agent_meta",
    "default_knobs_path",
    "load_knobs",
    "parse_spec",
    "verified_bytes",
]
