"""Governors that ship in the package: ``GovernorCallback("default")`` with no training of one's own.

Each is an artifact folder ``govgym/configs/governors/<name>/governor.json`` (package data), written by
``export`` (the function behind ``govgym export NAME``) from the knobs tuned on the FineTune-v1 train split
(``configs/heuristics_v1.yaml``, ``govgym tune``) for the packaged v1 instance set's actions and K = 20.
Loading one runs every check of ``load_governor`` (hashes, observation spec). Rebuild them after a change of
the knobs or of the observation spec (``tests/test_shipped.py`` fails until then)::

    python -m govgym.deploy.shipped configs/governors

The default is the best governor on the held-out leaderboard that can be trusted outside the training
world: on "Leaderboard on FineTune-v1" (docs/results.md, formerly the README; 12 held-out instances x 5 seeds, ``govgym evaluate
seeds=5``) marginal_gain returns 0.085 ± 0.001 and ties the agent (0.085 ± 0.001), and the agent stops
real runs too early outside its world (issue 20), so the default is the tuned marginal_gain. Its
``provenance`` says so (policy, knobs file, leaderboard, figures); ``docs/deploy.md`` repeats it.
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from govgym.deploy.artifact import META_FILE, export, governor_from_spec, load_governor
from govgym.deploy.governor import Governor
from govgym.errors import ConfigError

DEFAULT = "marginal_gain"
"""The governor ``"default"`` names (see the module docstring for why)."""
HEURISTICS = ("marginal_gain", "patience", "memory_reactive", "zeus")
"""The heuristics with knobs tuned on the v1 train split (``configs/heuristics_v1.yaml``), each shipped."""
NAMES = ("default", *HEURISTICS)
LEADERBOARD = {
    "table": "docs/results.md (formerly the README), 'Leaderboard on FineTune-v1 (held out: 12 instances x 5 seeds)'",
    "command": "govgym evaluate seeds=5 workers=2 --agent agent=runs/train_v1/final.zip map=runs/map_v1 --out runs/eval_v1",
    "return_mean_sd": {
        "marginal_gain": [0.085, 0.001],
        "agent": [0.085, 0.001],
        "patience": [0.081, 0.002],
        "memory_reactive": [0.081, 0.002],
        "zeus": [-0.269, 0.052],
        "fixed_budget": [-0.372, 0.001],
    },
    "marginal_gain": {"final_eval_over_fixed": 1.0408, "flops_over_fixed": 0.267, "regret_vs_map": 0.009},
}
"""The held-out figures the shipped governors were chosen on (return = the env's reward summed, λ = 0.3)."""
WHY_DEFAULT = (
    "marginal_gain ties the agent on the FineTune-v1 held-out leaderboard (return 0.085 ± 0.001 each) and is "
    "the best heuristic there; the agent stops real runs too early outside its training world (issue 20), "
    "so the default is the tuned marginal_gain."
)


def folder() -> Path:
    """The packaged governors' folder (``govgym/configs/governors``)."""
    return Path(str(files("govgym.configs") / "governors"))


def resolve(name: str) -> str:
    """The heuristic a shipped ``name`` is (``default`` -> ``DEFAULT``); ``ConfigError`` if none ships."""
    if name not in NAMES:
        raise ConfigError(
            f"shipped governor {name!r}: none ships by that name; the packaged ones are {', '.join(NAMES)}."
        )
    return DEFAULT if name == "default" else name


def shipped_path(name: str) -> Path:
    """The artifact folder of the shipped governor ``name`` (``default`` is its own folder, with its reason)."""
    resolve(name)
    return folder() / name


def load_shipped(name: str) -> Governor:
    """The shipped governor ``name``, loaded with every check of ``load_governor``."""
    path = shipped_path(name)
    if not (path / META_FILE).is_file():
        raise ConfigError(
            f"shipped governor {name!r}: {path / META_FILE} is missing from this installation; reinstall govgym "
            "(the wheel packages configs/governors/*/governor.json)."
        )
    return load_governor(path)


def load_any(spec: str | os.PathLike[str]) -> Any:
    """A shipped governor by name (``default``, ``marginal_gain`` ...), an artifact path, or a heuristic spec.

    Every check of an artifact (hashes, spec, names) happens in ``load_governor``; a heuristic spec
    (``patience:patience=3``, ``fixed_budget``) is built for the packaged v1 instance set's actions and K.
    """
    s = str(spec)
    if isinstance(spec, str) and s.strip() in NAMES and not Path(s).exists():
        return load_shipped(s.strip())
    if not isinstance(spec, str):
        return load_governor(spec)
    return governor_from_spec(s, key="GovernorCallback: governor")[0]


def write_shipped(root: str | Path) -> list[Path]:
    """Write every shipped governor under ``root`` (``configs/governors`` in the source tree).

    Each is ``export(name)`` with the packaged v1 instance set and its tuned knobs, and a provenance that
    names the package files (not this machine's paths) and, for all of them, the leaderboard figures.
    """
    out = []
    for name in NAMES:
        policy = resolve(name)
        prov: dict[str, Any] = {
            "instances": "govgym/configs/instances_v1.yaml",
            "knobs": "govgym/configs/heuristics_v1.yaml (govgym tune seeds=2, 22 v1 train instances x 2 seeds)",
            "leaderboard": LEADERBOARD,
            "shipped_as": name,
            "policy": policy,
        }
        if name == "default":
            prov["why_default"] = WHY_DEFAULT
        out.append(export(policy, Path(root) / name, provenance=prov))
    return out


if __name__ == "__main__":  # python -m govgym.deploy.shipped configs/governors
    for p in write_shipped(sys.argv[1] if len(sys.argv) > 1 else "configs/governors"):
        print(f"wrote {p}")

__all__ = [
    "load_any",
    "DEFAULT",
    "HEURISTICS",
    "LEADERBOARD",
    "NAMES",
    "folder",
    "load_shipped",
    "resolve",
    "write_shipped",
]
