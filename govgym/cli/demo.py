"""``govgym demo``: the main job end to end on the embedded default, in bounded time.

1. prepare: build (or reuse) every base model and dataset the instance set names;
2. fast backend: ``govgym/FineTuneFast-v1`` with the packaged model (``configs/fast_v1.json``, fitted by
   ``govgym fit-fast`` on real runs of the *train* split only);
3. train: a MaskablePPO governor learned by RL from scratch on the fast backend (thousands of env
   steps a second instead of one every 1-3 s), bounded in env steps and minutes;
4. evaluate: the agent against the tuned heuristics and the oracle on the *held-out* split, on real
   runs; print the leaderboard and write CSV/JSON/PNG.

To fit 15 minutes on 2 cores the demo evaluates one seed per held-out instance (``seeds=``, default 1);
``govgym evaluate --agent runs/demo/train/final.zip seeds=5`` gives the full table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from govgym.agents.evaluate import DEFAULT_POLICIES, EvalConfig, evaluate
from govgym.agents.train import TrainConfig, train
from govgym.efficiency.workload import load_workload
from govgym.envs.fastmodel import default_model_path, load_model
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
    fast_model: str = "",
    randomize: float = 0.0,
) -> dict[str, Any]:

    t0 = time.perf_counter()
    print("[1/4] prepare: base models and data of the instance set (built once, then cached)")
    infos = prepare_instances(instances or None)
    print(f"      {len(infos)} workloads ready ({time.perf_counter() - t0:.0f} s)")

    t1 = time.perf_counter()
    fm = load_model(fast_model or default_model_path())
    prov = fm.provenance
    print(
        f"[2/4] fast backend: govgym/FineTuneFast-v1, fitted on {prov.get('traces', '?')} real traces of "
        f"{len(prov.get('instances', []))} train instances (held-out instances never in its fit; "
        f"`govgym fit-fast` refits it from your own runs)"
    )

    t2 = time.perf_counter()
    limit = f" or {train_minutes:g} min, whichever comes first" if train_minutes else ""
    print(
        f"[3/4] train: MaskablePPO from scratch by RL on the fast backend's train split for {timesteps:,} env steps{limit}"
    )
    cfg = TrainConfig(
        algo="maskable_ppo",
        timesteps=timesteps,
        env="fast",
        fast_model=fast_model,
        randomize=randomize,
        n_envs=8,
        n_steps=256,
        batch_size=256,
        checkpoint_every=max(timesteps // 4, 1),
        eval_every=0,
        instances=instances,
        max_minutes=train_minutes,
    )
    model = train(cfg, out / "train", progress=progress)

    meta = json.loads((out / "train" / "agent.json").read_text())
    print(f"      wrote {model}: {meta['env_steps']:,} env steps in {time.perf_counter() - t2:.0f} s")

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
        f"demo done in {total / 60:.1f} min (prepare {t1 - t0:.0f} s, train {t3 - t2:.0f} s, "
        f"evaluate {time.perf_counter() - t3:.0f} s); results in {out}/"
    )
    return result


__all__ = ["demo", "prepare_instances"]
