"""Eval loss per FLOP of each memory strategy against full fine-tuning, from the start and after a switch.

    python benchmarks/strategy_gap.py                                  # the default grid, 2 seeds
    python benchmarks/strategy_gap.py --grid lora:8:16:4e-3 lora:32:32:4e-3 --seeds 0 1 2
    python benchmarks/strategy_gap.py --set data.task=code2doc data.response_only=true --out results/gap

Each row is a real ``FineTuneRun`` of the same workload and seed under one strategy (or full switched
to it at ``--switch-at`` of the steps), with the LR schedule planned over the whole run and advanced by
training FLOPs (as govgym/FineTune-v1 runs it), evaluated every ``--every`` steps. Reported per row:
best and final eval loss, the gap to full fine-tuning's best eval (%), the training FLOPs spent, and
the eval loss full fine-tuning had reached at the same FLOPs. This is how LoRA/QLoRA rank, α and LR
were calibrated for FineTune-v1 (practice reports QLoRA/LoRA within about one point of full
fine-tuning on instruction tuning; a rank-8 adapter on a 1M-parameter model is far weaker).
Grid entries are ``STRATEGY:RANK:ALPHA:LR`` (``full`` alone for full fine-tuning, ``full>lora:…`` for a
switch). Results: a table on stdout, ``strategy_gap.csv``/``.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.results import atomic_write

DEFAULT_GRID = [
    "full",
    "lora:8:16:4e-3",
    "lora:32:64:4e-3",
    "lora:64:128:3e-3",
    "qlora:64:128:3e-3",
    "full>lora:64:128:3e-3",
]


def parse_entry(entry: str) -> tuple[str | None, str, int, int, float]:
    """'full' | 'lora:R:A:LR' | 'full>lora:R:A:LR' -> (switch_from, strategy, rank, alpha, lr)."""
    src = None
    if ">" in entry:
        src, entry = entry.split(">", 1)
    parts = entry.split(":")
    if parts[0] == "full" and len(parts) == 1:
        return src, "full", 0, 0, 0.0
    if len(parts) != 4:
        raise SystemExit(f"grid entry {entry!r}: expected STRATEGY:RANK:ALPHA:LR, e.g. lora:32:64:4e-3")
    return src, parts[0], int(parts[1]), int(parts[2]), float(parts[3])


def run_one(cfg: RunConfig, entry: str, steps: int, every: int, switch_at: float) -> dict:
    src, strategy, rank, alpha, lr = parse_entry(entry)
    c = copy.deepcopy(cfg)
    if rank:
        c.memory.lora_rank, c.memory.lora_alpha, c.optim.lora_lr = rank, alpha, lr
    c.memory.strategy = src or strategy
    run = FineTuneRun(c, workload=load_workload(c, progress=False), progress=False)
    curve = [(0, run.evaluate())]
    switch_step = int(round(switch_at * steps)) if src else -1
    while run.step < steps:
        if run.step == switch_step:
            run.switch_strategy(strategy)
        n = min(every, steps - run.step, (switch_step - run.step) if run.step < switch_step else every)
        run.advance(n)
        curve.append((run.flops["train"], run.evaluate()))
    evals = [e for _, e in curve]
    return {
        "entry": entry,
        "seed": c.seed,
        "best_eval": float(min(evals)),
        "final_eval": float(evals[-1]),
        "train_flops": int(run.flops["train"]),
        "steps": run.step,
        "curve": curve,
    }


def at_flops(curve: list[tuple[int, float]], flops: float) -> float:
    """Full fine-tuning's eval loss at ``flops`` training FLOPs (linear interpolation of its curve)."""
    xs, ys = np.array([c[0] for c in curve], float), np.array([c[1] for c in curve], float)
    return float(np.interp(flops, xs, ys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="", help="run config YAML (default: the packaged default)")
    ap.add_argument("--set", nargs="*", default=[], help="run overrides key=value (YAML values)")
    ap.add_argument("--grid", nargs="*", default=DEFAULT_GRID)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--steps", type=int, default=250, help="optimizer steps of full fine-tuning's schedule")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--switch-at", type=float, default=0.4)
    ap.add_argument("--out", default="results/strategy_gap")
    args = ap.parse_args()
    overrides: dict = {}
    for kv in args.set:
        key, _, val = kv.partition("=")
        d = overrides
        *heads, last = key.split(".")
        for h in heads:
            d = d.setdefault(h, {})
        d[last] = yaml.safe_load(val)
    if args.config:
        cfg = RunConfig.from_yaml(args.config, overrides)
    else:
        from govgym.typed import from_dict

        cfg = from_dict(RunConfig, overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for seed in args.seeds:
        base = copy.deepcopy(cfg)
        base.seed = seed
        base.optim.total_steps = args.steps
        base.memory.strategy = "full"
        probe = FineTuneRun(base, workload=load_workload(base, progress=False), progress=False)
        probe.advance(1)
        base.optim.schedule_step_flops = float(probe.flops["train"])  # plan by full's step cost
        full_curve = None
        for entry in args.grid:
            r = run_one(base, entry, args.steps, args.every, args.switch_at)
            if entry == "full":
                full_curve = r["curve"]
            rows.append(r)
            ref = min(e for _, e in full_curve) if full_curve else math.nan
            r["gap_best_pct"] = 100 * (r["best_eval"] / ref - 1) if full_curve else math.nan
            r["full_eval_at_same_flops"] = at_flops(full_curve, r["train_flops"]) if full_curve else math.nan
            print(
                f"seed {seed} {entry:24s} best {r['best_eval']:.4f} final {r['final_eval']:.4f} "
                f"gap {r['gap_best_pct']:+.2f}% steps {r['steps']} TF {r['train_flops'] / 1e12:.3f}",
                flush=True,
            )
            atomic_write(out / "strategy_gap.json", json.dumps(rows, indent=1) + "\n")
    # summary: mean and spread over seeds per entry
    print(f"\n{'strategy':26s} {'best eval':>16s} {'gap to full':>14s} {'final eval':>12s} {'train TF':>9s}")
    lines = [
        "entry,seeds,best_eval_mean,best_eval_std,gap_best_pct_mean,gap_best_pct_std,final_eval_mean,train_tflops"
    ]
    for entry in args.grid:
        rs = [r for r in rows if r["entry"] == entry]
        b = np.array([r["best_eval"] for r in rs])
        g = np.array([r["gap_best_pct"] for r in rs])
        f = np.array([r["final_eval"] for r in rs])
        tf = np.mean([r["train_flops"] for r in rs]) / 1e12
        print(
            f"{entry:26s} {b.mean():8.4f} ± {b.std():.4f} {g.mean():+7.2f} ± {g.std():.2f}% {f.mean():12.4f} {tf:9.3f}"
        )
        lines.append(
            f"{entry},{len(rs)},{b.mean():.5f},{b.std():.5f},{g.mean():.3f},{g.std():.3f},{f.mean():.5f},{tf:.4f}"
        )
    atomic_write(out / "strategy_gap.csv", "\n".join(lines) + "\n")
    print(f"\nwrote {out / 'strategy_gap.csv'} and strategy_gap.json", file=sys.stderr)


if __name__ == "__main__":
    main()
