"""The task runner every harness over (instance, seed) tasks shares: evaluate, tune and the lever map.

    results = run_tasks(instances, "test", names, [0, 1], specs, workers=2)   # every policy on each task
    results = run_tasks(..., task_fn=my_task)                                  # any module-level task

Each (instance, seed) is one task: one worker process runs every policy spec on it through an
``EpisodeTree`` (agents/rollout.py), so policies that share a path share its real steps exactly, and
saves the tree to the memo (envs/memo.py) for the next invocation. Tasks run in this process, a
spawned pool or on Ray (agents/scaleout.py). Scoring the episodes is ``agents/scoring.py``'s part.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from govgym.agents.policies import build_policy
from govgym.agents.rollout import EpisodeTree, run_episode
from govgym.agents.scaleout import check_backend, task_results
from govgym.agents.shield import Shielded
from govgym.efficiency.signals import FEATURE_NAMES
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances
from govgym.envs.memo import load_tree, memo_folder, save_tree, stray_memo_warning, worker_threads
from govgym.typed import ConfigError, check_choice, check_range


def check_harness(prefix: str, cfg: Any) -> None:
    """The settings every harness over (instance, seed) tasks shares: split, seeds, workers, backend, tolerance, max_instances."""
    check_choice(
        f"{prefix}.split", cfg.split, ("train", "test", "test-a", "test-b", "test-c")
    )  # test-*: FineTune-v2's held-out splits
    check_range(f"{prefix}.seeds", cfg.seeds, 1)
    check_range(f"{prefix}.workers", cfg.workers, 1)
    check_backend(prefix, cfg.backend, cfg.ray_address)
    check_range(f"{prefix}.tolerance", cfg.tolerance, 0.0, 0.5)
    check_range(f"{prefix}.max_instances", cfg.max_instances, 0)


_ENVS: dict[tuple[str, str], Any] = {}
_AGENTS: dict[str, Any] = {}


def task_env(instances: str, split: str) -> Any:
    """This worker process's ``FineTuneEnv`` for (instance set, split): built once, reused by every task."""
    key = (instances, split)
    if key not in _ENVS:
        _ENVS[key] = FineTuneEnv(instances or None, split=split, wall_time_info=False)
    return _ENVS[key]


class PriceView:
    """An agent trained on the price objective's observation, judged under equal quality: it is given the
    features it was trained on (the first ``n``; not the tolerance appended after them), while a shield
    around it still reads the tolerance."""

    def __init__(self, policy: Any, n: int):
        self.policy, self.n = policy, int(n)
        self.action_names = getattr(policy, "action_names", None)

    def predict(
        self,
        obs: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: Any = None,
    ):
        o = np.asarray(obs, dtype=np.float32)
        kw = {
            "state": state,
            "episode_start": episode_start,
            "deterministic": deterministic,
            "action_masks": action_masks,
        }
        return self.policy.predict(o[..., : self.n], **kw)


def run_task(task: tuple[Any, ...]) -> dict[str, Any]:
    """Run every policy spec on one (instance, seed); returns episode dicts and the tree's step counts.

    ``task`` = (instances, split, instance, seed, specs, memo[, tolerance]): a 7th entry (the
    equal-quality objective's tolerance) is appended to every observation the policies see.
    """

    instances, split, inst, seed, specs, memo = task[:6]
    tolerance = task[6] if len(task) > 6 else None
    t0 = time.perf_counter()
    env = task_env(instances, split)
    tree = EpisodeTree(env, inst, seed)
    if memo:
        load_tree(tree, Path(memo))
    episodes = []
    for spec in specs:
        if spec.kind == "agent":  # loaded once per worker process, then reused by every task it runs
            policy = _AGENTS.get(spec.path)
            if policy is None:
                policy = _AGENTS[spec.path] = build_policy(spec, env.action_names)
            n = len(getattr(policy, "mean", ()))
            if tolerance is not None and n == len(FEATURE_NAMES):  # trained without the tolerance feature
                policy = PriceView(policy, n)
        else:
            policy = build_policy(spec, env.action_names, seed)
        if spec.shield is not None:  # a fresh shield per task: its counts are this episode's
            policy = Shielded(policy, k=spec.shield, action_names=env.action_names)
        episodes.append(run_episode(tree, policy, spec.label, tolerance).to_dict())
    if memo and tree.real_steps:
        # only when a step ran for real: a stop derived from its parent costs nothing to derive again,
        # so an evaluation that ran none leaves the memo (e.g. committed held-out runs) as it was
        save_tree(tree, Path(memo))
    return {
        "instance": inst,
        "episode_seed": seed,
        "episodes": episodes,
        "real_steps": tree.real_steps,
        "replayed_steps": tree.replayed_steps,
        "memo_hits": tree.memo_hits,
        "seconds": time.perf_counter() - t0,
    }


def run_tasks(
    instances: str,
    split: str,
    names: list[str],
    seeds: list[int],
    specs: list[Any],
    workers: int,
    desc: str = "evaluate",
    progress: bool = True,
    memo: str = "",
    task_fn: Any = None,
    backend: str = "local",
    ray_address: str = "",
    tolerance: float | None = None,
) -> list[dict[str, Any]]:
    """All (instance, seed) tasks on ``workers`` cores: this process, a spawned pool, or Ray.

    ``memo``: a folder of saved step trees to reuse and extend ('' = none); see ``envs/memo.py``.
    ``task_fn``: what one task runs (default ``run_task``: every policy spec; ``agents.levermap``
    passes its branch search), a module-level function so that spawned workers and Ray can import it.
    ``backend``: 'local' (``workers`` == 1: this process; more: a spawned pool) or 'ray' (one Ray task
    per (instance, seed) on a local Ray with ``workers`` CPUs, or on the cluster at ``ray_address``);
    see ``agents/scaleout.py``. Each task writes only its own (instance, seed)'s tree; results are
    gathered here. ``tolerance``: the equal-quality objective's, shown to the policies (None = price).
    """
    task_fn = task_fn or run_task
    check_backend("", backend, ray_address)
    dup = sorted({n for n in names if names.count(n) > 1} | {str(s) for s in seeds if seeds.count(s) > 1})
    if dup:  # one task per (instance, seed): two tasks must never write one tree file
        raise ConfigError(f"run_tasks: instances and seeds must be unique; repeated: {', '.join(dup)}.")

    threads = worker_threads(workers)
    if memo:
        memo = str(memo_folder(memo, instances, threads))
        stray_memo_warning(Path(memo), workers, [(n, s) for s in seeds for n in names])
    if backend == "ray":  # Ray's worker processes need not share our working directory
        instances = str(Path(instances).resolve()) if instances else instances
        memo = str(Path(memo).resolve()) if memo else memo
    extra = () if tolerance is None else (float(tolerance),)
    tasks = [(instances, split, n, s, specs, memo, *extra) for s in seeds for n in names]
    if workers > 1 or backend == "ray":
        # longest first (by FLOP budget): the last task is a short one, so no core idles long at the end
        iset = load_instances(instances or None)
        budget = {i.name: i.budget_tflops or i.budget_epochs or 0.0 for i in iset.train + iset.test}
        tasks.sort(key=lambda t: -budget.get(t[2], 0.0))
    bar = tqdm(total=len(tasks), desc=desc, unit="task", dynamic_ncols=True, disable=not progress)
    out: list[dict[str, Any]] = []
    with contextlib.closing(task_results(task_fn, tasks, workers, threads, backend, ray_address)) as results:
        for r in results:
            out.append(r)
            bar.update(1)
            bar.set_postfix(
                real_steps=sum(x["real_steps"] for x in out), memo_hits=sum(x["memo_hits"] for x in out)
            )
    bar.close()
    out.sort(key=lambda r: (r["episode_seed"], names.index(r["instance"])))
    return out


__all__ = ["check_harness", "run_task", "run_tasks", "task_env"]


def run_meta(
    cfg: Any, source: str, names: list[str], seconds: float, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """The description every harness job writes beside its rows: config, instances, time, env steps by kind."""
    return {
        "config": {**cfg.__dict__},
        "instances": source,
        "instance_names": names,
        "seconds": round(seconds, 1),
        "steps": {k: sum(r[k] for r in results) for k in ("real_steps", "replayed_steps", "memo_hits")},
    }
