"""The corpus of real runs: every train instance's fixed run, lever branches and governed episodes.

    govgym collect-world out=/work/corpus_v2 workers=2          # the whole train split of FineTune-v2
    govgym collect-world out=/tmp/c max_instances=3 workers=1   # a quick look

For each (instance, episode seed) of the split, one *unit* of real work through the exact step memo
(``envs.memo.EpisodeTree``: episodes that share a prefix share its real steps):

1. ``fixed``: continue until the budget is spent (L intervals);
2. lever branches, each continued to its end: a reprune (drop-hardest or drop-easiest, drawn) at a random
   decision index, a switch (to a strategy the mask allows there, drawn) at another, and the other
   reprune variant at a third (``branches`` of them); their ``parent`` is ``fixed`` and ``branch_at``
   the decision index;
3. one episode of each heuristic (tuned knobs, ``configs/heuristics_v1.yaml``) and of a random valid
   policy (uniform over the mask, seeded per unit).

Resumable, nothing lost or duplicated: the unit's tree is saved (atomically: temp file + rename) after
every episode, and its episode list ``episodes/<instance>-<seed>.json`` is written (atomically) last:
that file is the unit's done marker. A collection killed at any point (even ``kill -9`` mid-write)
restarts on the units without a marker; a unit cut off midway reloads its saved tree, so the episodes
it had finished cost no real step again, and its list is written once. Every task pins torch to
``threads`` (default 1) whatever the worker count, so a resumed collection stays in one memo namespace
and its steps are bit-identical to an uninterrupted one's.

Files under ``out``: ``memo/<namespace>/*.tree`` (the real steps: what ``govgym fit-fast`` and
``govgym dataset export`` read), ``episodes/*.json`` (per unit: its episodes as action lists with
parent and policy), ``collection.json`` (settings, code version), progress on the terminal (tqdm, ETA).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym import __version__
from govgym.typed import ConfigError, check_choice, check_range

EPISODES_FORMAT = 1
HEURISTICS = ("marginal_gain", "patience", "zeus", "memory_reactive")
"""Heuristics run on every unit, with the knobs of ``configs/heuristics_v1.yaml`` (tuned on v1's train split)."""


@dataclass
class CollectWorldConfig:
    """What ``govgym collect-world`` collects and where."""

    instances: str = ""
    """Instance-set YAML ('' = the packaged configs/instances_v2.yaml, govgym/FineTune-v2)."""
    out: str = "runs/corpus_v2"
    """Folder of the corpus: memo/ (step trees), episodes/ (one file per finished unit), collection.json."""
    split: str = "train"
    """Instance split collected."""
    seeds: int = 1
    """Episode seeds per instance (0 .. seeds-1): one unit each."""
    branches: int = 3
    """Lever branches per unit: reprune, switch, the other reprune, then alternating (0 = none)."""
    heuristics: list[str] = field(default_factory=lambda: list(HEURISTICS))
    """Heuristics run per unit, with the knobs of ``knobs``."""
    random_episodes: int = 1
    """Episodes of the random valid policy per unit."""
    knobs: str = ""
    """Tuned heuristic knobs ('' = the packaged configs/heuristics_v1.yaml)."""
    workers: int = 1
    """Worker processes, one unit each at a time. 1 (default) leaves a core of a 2-core machine free."""
    threads: int = 1
    """Torch threads per unit (fixed, not derived from workers, so a resume with other workers stays exact)."""
    backend: str = "local"
    """local (this process, or a spawned pool of `workers`) | ray (see agents/scaleout.py)."""
    ray_address: str = ""
    """With backend=ray: '' = start a local Ray with `workers` CPUs; else the cluster's address."""
    max_instances: int = 0
    """Collect only the first N instances of the split (0 = all)."""
    seed: int = 0
    """Seed of the branch points and the random policy (combined with each unit's name and seed)."""
    defer_bases: list[str] = field(default_factory=list)
    """Bases whose units run last (e.g. ones still being pretrained elsewhere: a unit waits for its base)."""

    def __post_init__(self) -> None:
        from govgym.agents.heuristics import POLICIES
        from govgym.agents.scaleout import check_backend

        for i, h in enumerate(self.heuristics):
            check_choice(f"heuristics[{i}]", h, [p for p in POLICIES if p != "random"])
        for name in ("seeds", "workers", "threads"):
            check_range(name, getattr(self, name), 1)
        for name in ("branches", "random_episodes", "max_instances", "seed"):
            check_range(name, getattr(self, name), 0)
        if not str(self.out).strip():
            raise ConfigError("out: empty; name the corpus folder, e.g. out=/work/corpus_v2.")
        check_backend("", self.backend, self.ray_address)


def _rng(unit_seed: int, instance: str, episode_seed: int) -> np.random.Generator:
    h = hashlib.sha256(f"{unit_seed}:{instance}:{episode_seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "big"))


def _env_for(instances: str, split: str) -> Any:
    """One FineTuneEnv per process and (set, split): a unit builds its run on it."""
    from govgym.envs.finetune_env import FineTuneEnv

    key = (instances, split)
    cache = _env_for.__dict__.setdefault("cache", {})
    if key not in cache:
        cache.clear()
        cache[key] = FineTuneEnv(instances, split=split, wall_time_info=False)
    return cache[key]


def _episode_record(
    ep: Any, eid: str, parent: str, branch_at: int | None, names: list[str]
) -> dict[str, Any]:
    return {
        "id": eid,
        "policy": ep.policy,
        "parent": parent,
        "branch_at": branch_at,
        "actions": [names.index(a) for a in ep.actions],
        "action_names": list(ep.actions),
        "rewards": ep.rewards,
        "return": ep.ret,
        "evals": ep.evals,
        "flops": ep.flops,
        "error": ep.error,
    }


def collect_unit(task: tuple[str, str, str, int, str, dict[str, Any]]) -> dict[str, Any]:
    """One (instance, episode seed): its episodes, the tree saved after each; the list written last.

    An exception inside the unit (a bug, a base that cannot be built) is written to
    ``errors/<instance>-<seed>.txt`` and the unit is left undone (a resume retries it); the other units go on.
    """
    try:
        return _collect_unit(task)
    except Exception as err:  # one bad unit must not stop hours of collection
        import traceback

        instances, split, name, seed, out, opts = task
        _atomic_text(Path(out) / "errors" / f"{name}-{seed}.txt", traceback.format_exc())
        return {"instance": name, "episode_seed": seed, "error": f"{type(err).__name__}: {err}"}


def _collect_unit(task: tuple[str, str, str, int, str, dict[str, Any]]) -> dict[str, Any]:
    import torch

    from govgym.agents.levermap import ScriptPolicy
    from govgym.agents.policies import build_policy, parse_spec
    from govgym.agents.rollout import EpisodeTree, run_episode
    from govgym.envs.memo import load_tree, save_tree

    instances, split, name, seed, out, opts = task
    torch.set_num_threads(int(opts["threads"]))
    out_dir = Path(out)
    done = out_dir / "episodes" / f"{name}-{seed}.json"
    if done.is_file():
        return {"instance": name, "episode_seed": seed, "skipped": True}
    t0 = time.perf_counter()
    env = _env_for(instances, split)
    tree = EpisodeTree(env, name, seed, max_snapshots=24)
    memo = Path(opts["memo"])
    memo.mkdir(parents=True, exist_ok=True)
    resumed = load_tree(tree, memo)
    names = list(env.action_names)
    rng = _rng(int(opts["seed"]), name, seed)
    eps: list[dict[str, Any]] = []

    def run(policy: Any, label: str, parent: str, branch_at: int | None, eid: str) -> Any:
        before = tree.new_nodes
        ep = run_episode(tree, policy, label)
        if tree.new_nodes > before:
            save_tree(tree, memo)
        eps.append(_episode_record(ep, eid, parent, branch_at, names))
        return ep

    fixed = run(build_policy(parse_spec("fixed_budget"), names), "fixed_budget", "", None, "fixed")
    n = len(fixed.actions)
    kinds = ["reprune", "switch"]
    variant = rng.permutation(["reprune_hardest", "reprune_easiest"]).tolist()
    for b in range(int(opts["branches"])):
        kind = kinds[b % 2] if b < 2 else kinds[(b + 1) % 2]
        t = int(rng.integers(0, max(1, n - 1)))  # a decision index with at least one interval after it
        prefix = tuple(names.index(a) for a in fixed.actions[:t])
        mask = _mask_at(tree, prefix)
        if kind == "reprune":
            choice = [a for a in (variant[0], variant[1]) if mask[names.index(a)]]
            variant.reverse()
        else:
            choice = [a for a in names if a.startswith("switch:") and mask[names.index(a)]]
        if not choice:
            continue
        act = choice[0] if kind == "reprune" else choice[int(rng.integers(len(choice)))]
        run(ScriptPolicy({t: names.index(act)}), act, "fixed", t, f"branch{b}:{act}@{t}")
    for h in opts["heuristics"]:
        run(build_policy(parse_spec(h, opts["knobs"] or None), names), h, "", None, h)
    for r in range(int(opts["random_episodes"])):
        pol = build_policy(parse_spec("random"), names, seed=int(rng.integers(2**31 - 1)))
        run(pol, "random", "", None, f"random{r}")
    record = {
        "format": EPISODES_FORMAT,
        "govgym_version": __version__,
        "instance": name,
        "episode_seed": seed,
        "episodes": eps,
        "real_steps": tree.real_steps,
        "replayed_steps": tree.replayed_steps,
        "memo_hits": tree.memo_hits,
        "nodes": len(tree.nodes),
        "resumed": resumed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _atomic_json(done, record)
    return {k: v for k, v in record.items() if k != "episodes"}


def _mask_at(tree: Any, prefix: tuple[int, ...]) -> np.ndarray:
    node = tree.root()
    for i, a in enumerate(prefix):
        node = tree.step(prefix[:i], a)
    return node.mask


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def memo_dir(cfg: CollectWorldConfig, instances: str) -> Path:
    """Where the collection's step trees live: ``out/memo/<namespace of the set, threads>``."""
    from govgym.envs.memo import memo_folder

    return memo_folder(Path(cfg.out) / "memo", instances, cfg.threads)


def collect_world(cfg: CollectWorldConfig, progress: bool = True) -> dict[str, Any]:
    """Collect every unit of ``cfg`` not yet done (see the module docstring); returns a summary."""
    from tqdm.auto import tqdm

    from govgym.agents.scaleout import task_results
    from govgym.envs.instances import default_instances_path, load_instances

    instances = str(Path(cfg.instances or default_instances_path(2)).resolve())
    iset = load_instances(instances)
    pool = iset.split(cfg.split)
    if cfg.max_instances:
        pool = pool[: cfg.max_instances]
    out = Path(cfg.out).resolve()
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    _clean_tmp(out)
    memo = memo_dir(cfg, instances).resolve()
    opts = {
        "threads": cfg.threads,
        "memo": str(memo),
        "branches": cfg.branches,
        "heuristics": list(cfg.heuristics),
        "random_episodes": cfg.random_episodes,
        "knobs": cfg.knobs,
        "seed": cfg.seed,
    }
    _atomic_json(
        out / "collection.json",
        {
            "govgym_version": __version__,
            "instances": instances,
            "memo": str(memo),
            "config": asdict(cfg),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    units = [(i.name, s) for s in range(cfg.seeds) for i in pool]
    todo = [(n, s) for n, s in units if not (out / "episodes" / f"{n}-{s}.json").is_file()]
    # longest first (fixed-run intervals): the last unit is a short one, so no worker idles long at the end
    length = {
        i.name: i.draw.get("intervals", 0) * (1 + len(i.draw.get("cap_schedule", []) or [])) for i in pool
    }
    base = {i.name: i.draw.get("base", "") for i in pool}
    todo.sort(key=lambda u: (base[u[0]] in cfg.defer_bases, -length.get(u[0], 0)))
    tasks = [(instances, cfg.split, n, s, str(out), opts) for n, s in todo]
    totals = {"units": 0, "errors": 0, "real_steps": 0}
    bar = tqdm(
        total=len(units),
        initial=len(units) - len(todo),
        desc="collect-world",
        unit="unit",
        disable=not progress,
    )
    t0 = time.perf_counter()
    with contextlib.closing(
        task_results(collect_unit, tasks, cfg.workers, cfg.threads, cfg.backend, cfg.ray_address)
    ) as results:
        for r in results:
            bar.update(1)
            if r.get("error"):
                totals["errors"] += 1
                tqdm.write(
                    f"collect-world: {r['instance']}-{r['episode_seed']} failed ({r['error'][:200]}); see errors/"
                )
            elif not r.get("skipped"):
                totals["units"] += 1
                totals["real_steps"] += r["real_steps"]
                bar.set_postfix(
                    real_steps=totals["real_steps"],
                    s_per_step=f"{(time.perf_counter() - t0) / max(1, totals['real_steps']):.2f}",
                )
    bar.close()
    return {**corpus_summary(out), "this_run": totals, "seconds": round(time.perf_counter() - t0, 1)}


def _clean_tmp(out: Path) -> None:
    """Temp files of a write cut off by a kill (``.<name>.tmp-<pid>``) are garbage: never read, removed."""
    for p in (out / "episodes").glob(".*.tmp-*"):
        p.unlink(missing_ok=True)


def corpus_summary(out: Path) -> dict[str, Any]:
    """Units, episodes, real steps and seconds of what ``out`` holds so far (read from the done markers)."""
    units = episodes = real = 0
    secs = 0.0
    for p in sorted((Path(out) / "episodes").glob("*.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        units += 1
        episodes += len(rec["episodes"])
        real += rec["real_steps"]
        secs += rec["seconds"]
    return {"units_done": units, "episodes": episodes, "real_steps": real, "unit_seconds": round(secs, 1)}


__all__ = ["CollectWorldConfig", "collect_unit", "collect_world", "corpus_summary", "memo_dir"]
