"""The Minari dataset as ``govgym offline`` learns from it: episodes, continue/stop transitions, fixed paths.

``load_dataset`` opens the folder ``govgym dataset export`` wrote (``dataset.json`` + ``minari/``) with
``minari.load_dataset`` (arrow storage, offline) and checks every value it reads: the observation shape of
this govgym, finite observations and rewards, actions inside the action table the card (or the instance
set) names. ``fixed_paths`` and ``stop_returns`` make a stop-only policy's return exact on a unit's
fixed-budget run without stepping anything (continue follows the run, ``stop`` scores 0).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from govgym.efficiency.signals import LOW
from govgym.envs.actions import CONTINUE, STOP
from govgym.typed import ConfigError


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path.resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _action_names(cfg: Any, card: dict[str, Any], n: int) -> list[str]:
    names = card.get("action_names")
    if names is None:
        from govgym.efficiency.strategy import Strategy
        from govgym.envs.actions import action_table
        from govgym.envs.instances import load_instances

        src = cfg.instances or card.get("instances") or ""
        if src and not Path(src).is_file():  # the card's path, written on another machine: the packaged set
            src = ""
        iset = load_instances(src or _packaged_v2())
        names = action_table([Strategy.parse(s) for s in iset.env.switch_targets])[1]
    if not isinstance(names, list) or len(names) != n or CONTINUE not in names or STOP not in names:
        raise ConfigError(
            f"offline: the dataset's {n} actions do not match the action names {names!r:.160}; pass the "
            "instance set it was collected on (instances=...)."
        )
    return list(names)


def _packaged_v2() -> str:
    from importlib.resources import files

    return str(files("govgym.configs") / "instances_v2.yaml")


def require(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f'offline: {name} is not installed; run `pip install "govgym[offline]"`.') from None


def load_dataset(cfg: Any) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """The dataset's episodes (obs T+1 x F, actions, rewards, unit, policy), its action names, its card.

    ``cfg``: anything with ``dataset`` (the export folder) and ``instances`` ('' or an instance-set YAML).
    """
    root = Path(cfg.dataset)
    if cfg.instances and not Path(cfg.instances).is_file():
        raise ConfigError(
            f"offline.instances: {cfg.instances} is not a file; name the instance-set YAML, or leave it out."
        )
    card_path = root / "dataset.json"
    if not card_path.is_file():
        raise ConfigError(
            f"offline.dataset: {root} has no dataset.json; point it at a folder `govgym dataset export` wrote."
        )
    try:
        card = json.loads(card_path.read_text())
        dataset_id = card["dataset_id"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"offline.dataset: {card_path} is not a dataset card; export the dataset again."
        ) from None
    if not isinstance(dataset_id, str) or ".." in dataset_id or dataset_id.startswith("/"):
        raise ConfigError(f"offline.dataset: {card_path} names the dataset {dataset_id!r}, not a dataset id.")
    if not (root / "minari" / dataset_id).is_dir():
        raise ConfigError(
            f"offline.dataset: {root / 'minari' / dataset_id} is missing; export with minari=true."
        )
    minari = require("minari")
    with _minari_root(root / "minari"):
        try:
            ds = minari.load_dataset(dataset_id)
        except Exception as err:  # minari raises several types for a broken folder
            raise ConfigError(
                f"offline.dataset: minari cannot open {dataset_id} ({str(err)[:200]})."
            ) from None
        if tuple(ds.observation_space.shape) != LOW.shape:
            raise ConfigError(
                f"offline.dataset: observations of shape {ds.observation_space.shape}, this govgym's are "
                f"{LOW.shape}; export the dataset with this version."
            )
        names = _action_names(cfg, card, int(ds.action_space.n))
        metas = list(ds.storage.get_episode_metadata(range(ds.total_episodes)))
        eps = []
        for meta, ep in zip(metas, ds.iterate_episodes(), strict=True):
            obs = np.asarray(ep.observations, dtype=np.float64)
            acts = np.asarray(ep.actions, dtype=np.int64)
            rew = np.asarray(ep.rewards, dtype=np.float64)
            if not (np.isfinite(obs).all() and np.isfinite(rew).all()) or len(obs) != len(acts) + 1:
                raise ConfigError(
                    f"offline.dataset: episode {meta.get('id')} holds non-finite or misaligned values; export again."
                )
            if len(acts) and (acts.min() < 0 or acts.max() >= len(names)):
                raise ConfigError(
                    f"offline.dataset: episode {meta.get('id')} takes an action outside {names}."
                )
            eps.append(
                {
                    "obs": obs,
                    "actions": acts,
                    "rewards": rew,
                    "unit": str(meta.get("unit", meta.get("id"))),
                    "policy": str(meta.get("policy", "")),
                }
            )
    if not eps:
        raise ConfigError(f"offline.dataset: {dataset_id} holds no episodes.")
    return eps, names, card


def is_val(unit: str, fraction: float) -> bool:
    """Whether ``unit`` is held out for validation: a stable hash of its name, not a draw."""
    h = int(hashlib.sha256(unit.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def transitions(eps: list[dict[str, Any]], allowed: list[int]) -> dict[str, np.ndarray]:
    """The (obs, action, reward, next obs, done) of every step whose action is in ``allowed``."""
    rows: dict[str, list[Any]] = {"obs": [], "action": [], "reward": [], "next_obs": [], "done": []}
    for e in eps:
        t_last = len(e["actions"]) - 1
        for t, a in enumerate(e["actions"]):
            if int(a) not in allowed:
                continue
            rows["obs"].append(e["obs"][t])
            rows["action"].append(int(a))
            rows["reward"].append(e["rewards"][t])
            rows["next_obs"].append(e["obs"][t + 1])
            rows["done"].append(t == t_last)
    return {k: np.asarray(v) for k, v in rows.items()}


def fixed_paths(eps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each unit's fixed-budget episode (every action continue): where a stop-only policy is exact."""
    return [
        e
        for e in eps
        if e["policy"] == "fixed_budget" and len(e["actions"]) and (e["actions"] == e["actions"][0]).all()
    ]


def stop_returns(path: dict[str, Any], stops: np.ndarray) -> float:
    """The return of stopping at the first decision ``stops`` marks on a fixed path (continue to its end if none)."""
    at = np.flatnonzero(stops[: len(path["rewards"])])
    end = int(at[0]) if len(at) else len(path["rewards"])
    return float(path["rewards"][:end].sum())


__all__ = ["fixed_paths", "is_val", "load_dataset", "require", "stop_returns", "transitions"]
