"""Seconds per real env step of each world base (what sizes the corpus collection), side by side.

    python benchmarks/world_step_cost.py                         # every base of efficiency.basemodel.WORLD_BASES
    python benchmarks/world_step_cost.py --bases llama-0.3m llama-1m --threads 1 --steps 4

One instance per base, identical but for the base (doc2code, 400 examples, batch 8, one epoch, K from
configs/world_v2.yaml: 10 optimizer steps + one eval of 64 examples per env step), run in one process
with ``torch`` pinned to ``--threads`` (the collection's per-worker setting). Printed per base: the
reset (workload load + the strategy probes + E_0) and the mean seconds of a real env step, and its
ratio to llama-1m (the FineTune-v1 base). Bases not yet cached are built first (not timed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml


def main() -> None:
    from govgym.efficiency.basemodel import WORLD_BASES
    from govgym.envs.finetune_env import FineTuneEnv
    from govgym.envs.world import _base_run, load_spec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bases", nargs="*", default=list(WORLD_BASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="env steps timed per base")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / "world_v2.yaml")
    rows = []
    for base in args.bases:
        inst = {
            "name": f"cost-{base}",
            "budget_epochs": 1.0,
            "lam": 0.1,
            "run": {**_base_run(base), "data": {"task": "doc2code", "max_examples": 400, "noise_rate": 0.0}},
        }
        iset = {
            "run": spec.run,
            "env": {"version": 1, **{k: v for k, v in spec.env.__dict__.items() if k != "version"}},
        }
        iset["train"], iset["test"] = [inst], []
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "cost.yaml"
            path.write_text(yaml.safe_dump(iset), encoding="utf-8")
            env = FineTuneEnv(str(path), wall_time_info=False)
            env.reset(options={"instance": inst["name"], "episode_seed": 0})  # builds the base if needed
            t = time.perf_counter()
            env.reset(options={"instance": inst["name"], "episode_seed": 1})
            reset_s = time.perf_counter() - t
            times = []
            for _ in range(args.steps):
                t = time.perf_counter()
                *_, trunc, _info = env.step(0)[:5]
                times.append(time.perf_counter() - t)
                if trunc:
                    break
            n_params = sum(p.numel() for p in env.run.model.parameters())
        rows.append((base, n_params, reset_s, statistics.mean(times), len(times)))
    ref = next((r[3] for r in rows if r[0] == "llama-1m"), rows[0][3])
    print(
        f"threads={args.threads}; one env step = {spec.env.interval_steps} optimizer steps (batch 8 x 128 tokens) + one eval"
    )
    print(f"{'base':<12} {'params':>10} {'reset s':>8} {'s/step':>8} {'vs llama-1m':>11}")
    for base, n, r, s, k in rows:
        print(f"{base:<12} {n:>10,} {r:>8.2f} {s:>8.3f} {s / ref:>10.2f}x  ({k} steps)")


if __name__ == "__main__":
    main()
