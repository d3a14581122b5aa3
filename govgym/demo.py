"""``govgym demo``: the main job end to end on the embedded default, in bounded time.

1. prepare: build (or reuse) every base model and dataset the instance set names;
2. train: a MaskablePPO governor on the *train* split (the real env behind its exact step memo);
3. evaluate: the agent against the tuned heuristics and the oracle on the *held-out* split, on real
   runs; print the leaderboard and write CSV/JSON/PNG.

The demo evaluates on fewer seeds than a reported leaderboard (``--seeds``, default 2) to fit its time
budget; ``govgym evaluate --agent runs/demo/train/final.zip seeds=5`` gives the full table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def prepare_instances(instances: str | None) -> list[dict[str, Any]]:
    """Build or reuse each distinct base model / dataset of an instance set (with progress bars)."""
    import json

    from govgym.efficiency.workload import load_workload
    from govgym.envs.instances import load_instances
    from govgym.typed import to_dict

    iset = load_instances(instances)
    seen: dict[str, dict[str, Any]] = {}
    for inst in iset.train + iset.test:
        cfg = iset.run_config(inst)
        key = json.dumps({"model": to_dict(cfg.model), "data": to_dict(cfg.data)}, sort_keys=True, default=str)
        if key not in seen:
            seen[key] = load_workload(cfg, progress=True).info
    return list(seen.values())


def demo(out: Path, timesteps: int, seeds: int, workers: int, instances: str = "", progress: bool = True,
         train_minutes: float = 0.0) -> dict[str, Any]:  # fmt: skip
    from govgym.agents.evaluate import DEFAULT_POLICIES, EvalConfig, evaluate
    from govgym.agents.train import TrainConfig, train

    t0 = time.perf_counter()
    print("[1/3] prepare: base models and data of the instance set (built once, then cached)")
    infos = prepare_instances(instances or None)
    print(f"      {len(infos)} workloads ready ({time.perf_counter() - t0:.0f} s)")

    t1 = time.perf_counter()
    limit = f" or {train_minutes:g} min, whichever comes first" if train_minutes else ""
    print(f"[2/3] train: MaskablePPO on the train split for {timesteps} env steps{limit} (real runs, memoized per (instance, seed))")
    cfg = TrainConfig(algo="maskable_ppo", timesteps=timesteps, n_envs=workers, n_steps=64, checkpoint_every=256, eval_every=0,
                      instances=instances, max_minutes=train_minutes, memo=str(out / "memo"))  # fmt: skip
    model = train(cfg, out / "train", progress=progress)
    import json

    meta = json.loads((out / "train" / "agent.json").read_text())
    print(f"      wrote {model}: {meta['env_steps']} env steps in {time.perf_counter() - t1:.0f} s")

    t2 = time.perf_counter()
    print(f"[3/3] evaluate: tuned heuristics, the agent and the oracle on the held-out split x {seeds} seeds (real runs)")
    # memo="": every demo runs its held-out episodes for real (policies still share steps within a task)
    ecfg = EvalConfig(policies=[*DEFAULT_POLICIES, f"agent={model}"], split="test", seeds=seeds, workers=workers,
                      instances=instances, memo="")  # fmt: skip
    res = evaluate(ecfg, out / "evaluate", progress=progress)
    total = time.perf_counter() - t0
    print(f"demo done in {total / 60:.1f} min (prepare {t1 - t0:.0f} s, train {t2 - t1:.0f} s, evaluate {time.perf_counter() - t2:.0f} s); "
          f"results in {out}/")  # fmt: skip
    return res


__all__ = ["demo", "prepare_instances"]
