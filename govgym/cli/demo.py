"""``govgym demo``: the main job end to end on the embedded default, in bounded time.

1. prepare: build (or reuse) every base model and dataset the instance set names;
2. demonstrations: the fixed-budget run and the tuned memory-reactive governor on each *train*
   instance, saved as exact step trees;
3. train: a MaskablePPO governor, behaviour-cloned from the hindsight-best actions of those trees,
   then PPO on the train split (the real env behind its exact step memo), bounded in minutes;
4. evaluate: the agent against the tuned heuristics and the oracle on the *held-out* split, on real
   runs; print the leaderboard and write CSV/JSON/PNG.

To fit 15 minutes on 2 cores the demo trains for minutes (real env steps off the demonstrated paths
cost 1-3 s each, so PPO gets one or two rollouts of updates on top of the cloned policy) and evaluates
one seed per held-out instance (``seeds=``, default 1); ``govgym evaluate --agent runs/demo/train/final.zip seeds=5`` gives the full table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from govgym.agents.evaluate import DEFAULT_POLICIES, EvalConfig, evaluate, run_tasks
from govgym.agents.policies import parse_spec
from govgym.agents.train import TrainConfig, train
from govgym.efficiency.workload import load_workload
from govgym.envs.instances import load_instances
from govgym.typed import to_dict


def prepare_instances(instances: str | None) -> list[dict[str, Any]]:
    """Build or reuse each distinct base model / dataset of an instance set (with progress bars)."""

    iset = load_instances(instances)
    seen: dict[str, dict[str, Any]] = {}
    for inst in iset.train + iset.test:
        cfg = iset.run_config(inst)
        key = json.dumps(
            {"model": to_dict(cfg.model), "data": to_dict(cfg.data)}, sort_keys=True, default=str
        )
        if key not in seen:
            seen[key] = load_workload(cfg, progress=True).info
    return list(seen.values())


def demo(
    out: Path,
    timesteps: int,
    seeds: int,
    workers: int,
    instances: str = "",
    progress: bool = True,
    train_minutes: float = 0.0,
) -> dict[str, Any]:

    t0 = time.perf_counter()
    print("[1/4] prepare: base models and data of the instance set (built once, then cached)")
    infos = prepare_instances(instances or None)
    print(f"      {len(infos)} workloads ready ({time.perf_counter() - t0:.0f} s)")

    t1 = time.perf_counter()
    memo = str(out / "memo")
    names = [i.name for i in load_instances(instances or None).train]
    print(
        f"[2/4] demonstrations: the fixed-budget run and the tuned memory-reactive governor on the {len(names)} train "
        "instances (real runs, saved as step trees)"
    )
    specs = [parse_spec("fixed_budget"), parse_spec("memory_reactive")]
    res = run_tasks(
        instances, "train", names, [0], specs, workers, desc="demonstrations", progress=progress, memo=memo
    )
    print(f"      {sum(r['real_steps'] for r in res)} real env steps ({time.perf_counter() - t1:.0f} s)")

    t2 = time.perf_counter()
    limit = f" or {train_minutes:g} min, whichever comes first" if train_minutes else ""
    print(
        f"[3/4] train: MaskablePPO, cloned from the hindsight-best actions of those trees, then RL on the train split "
        f"for {timesteps} env steps{limit} (real runs, memoized per (instance, seed))"
    )
    # two envs per core: memo hits make env steps uneven, and SubprocVecEnv steps in lockstep, so a
    # second env per core keeps the core busy while its partner waits (measured: one of two envs idle ~half the time)
    cfg = TrainConfig(
        algo="maskable_ppo",
        timesteps=timesteps,
        n_envs=2 * workers,
        n_steps=8,
        checkpoint_every=256,
        eval_every=0,
        instances=instances,
        max_minutes=train_minutes,
        memo=memo,
        seeds_per_instance=2 * workers,
    )
    model = train(cfg, out / "train", progress=progress)

    meta = json.loads((out / "train" / "agent.json").read_text())
    print(f"      wrote {model}: {meta['env_steps']} env steps in {time.perf_counter() - t2:.0f} s")

    t3 = time.perf_counter()
    print(
        f"[4/4] evaluate: tuned heuristics, the agent and the oracle on the held-out split x {seeds} seeds (real runs)"
    )
    # memo="": every demo runs its held-out episodes for real (policies still share steps within a task)
    ecfg = EvalConfig(
        policies=[*DEFAULT_POLICIES, f"agent={model}"],
        split="test",
        seeds=seeds,
        workers=workers,
        instances=instances,
        memo="",
    )
    result = evaluate(ecfg, out / "evaluate", progress=progress)
    total = time.perf_counter() - t0
    print(
        f"demo done in {total / 60:.1f} min (prepare {t1 - t0:.0f} s, demonstrations {t2 - t1:.0f} s, train {t3 - t2:.0f} s, "
        f"evaluate {time.perf_counter() - t3:.0f} s); results in {out}/"
    )
    return result


__all__ = ["demo", "prepare_instances"]
