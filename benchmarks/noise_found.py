"""Noise found per FLOP: the recorded training losses vs exact rescoring (whole set and random samples).

    python benchmarks/noise_found.py --out runs/noise_found                 # default workload, seed 0
    python benchmarks/noise_found.py --seeds 0 1 --out runs/noise_found     # two data orders
    python benchmarks/noise_found.py data.max_examples=400 --steps 50       # any RunConfig override

The default workload (configs/default.yaml: 2,000 examples, 20% injected noise) is fine-tuned for one
epoch (2,000 / 8 = 250 steps), then snapshotted. From that same snapshot each plan drops the 20% hardest
of the kept set: ``recorded`` (the losses the 250 training steps recorded from their own logits: no
pass over the data), the exact ``loss``, ``el2n`` and ``gradnorm`` scorers over the whole set, ``loss``
over a random sample of 400, 800 and 1,200 kept examples (the drop, 400 rows, comes from the sample:
at 400 the sample is dropped whole, which is random by construction), and
``random``. Columns: precision (noise share of the dropped rows), recall (share of the noise removed),
the scoring's FLOPs, those FLOPs as a fraction of the epoch's training FLOPs, and noise rows found per
TFLOP of scoring (blank/inf for 0 FLOPs). One process, one workload, the same snapshot for every plan.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from govgym.cli import default_config
from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.results import format_table, write_rows
from govgym.typed import parse_overrides

KINDS = {1: "corrupt", 2: "shuffle", 3: "duplicate"}


def plans(samples: list[int]) -> list[tuple[str, str, str, int]]:
    """(label, scorer, mode, sample) of every reprune compared."""
    out = [("recorded", "recorded", "hardest", 0)]
    out += [(f"{s} (whole set)", s, "hardest", 0) for s in ("loss", "el2n", "gradnorm")]
    out += [(f"loss (sample {m})", "loss", "hardest", m) for m in samples]
    return out + [("random", "loss", "random", 0)]


def one_seed(
    cfg: RunConfig, wl: Any, seed: int, steps: int, fraction: float, samples: list[int]
) -> list[dict]:
    cfg = copy.deepcopy(cfg)
    cfg.seed = seed  # the data order and the seeded draws; the workload (base model, data) is shared
    workload = SimpleNamespace(**{**vars(wl), "model": copy.deepcopy(wl.model)})
    run = FineTuneRun(cfg, workload=workload, progress=False)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        k = min(25, steps - done)
        s = run.advance(k)
        done += k
        print(
            f"  seed {seed}: step {run.step}/{steps}  train loss {s.train_loss:.3f}  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    epoch_flops = run.flops["train"] + run.flops["measure"]
    seen = float((run.last_seen.cpu().numpy() >= 0).mean())
    snap = run.snapshot()
    rows = []
    for label, scorer, mode, m in plans(samples):
        run.restore(snap)
        kept_before = run.sampler.kept.copy()
        r = run.reprune(scorer, fraction, mode, sample=m)
        dropped = np.setdiff1d(kept_before, run.sampler.kept)
        found = int((run.noise[dropped] != 0).sum())
        row = {
            "seed": seed,
            "scorer": label,
            "dropped": r["dropped"],
            "precision": r["noise_in_dropped"],
            "recall": r["noise_removed"],
            "noise_found": found,
            "score_tflops": r["flops"] / 1e12,
            "of_epoch_flops": r["flops"] / epoch_flops,
            "found_per_tflop": found / (r["flops"] / 1e12) if r["flops"] else None,
            "stale_steps": r["stale_steps"],
            "seconds": r["seconds"],
        }
        for code, kind in KINDS.items():
            n_kind = int((run.noise == code).sum())
            row[f"{kind}_recall"] = (
                float((run.noise[dropped] == code).sum() / n_kind) if n_kind else float("nan")
            )
        rows.append(row)
        print(
            f"  seed {seed}: {label:20s} precision {row['precision']:.3f} recall {row['recall']:.3f} "
            f"{row['score_tflops']:.3f} TFLOP",
            flush=True,
        )
    for row in rows:
        row["epoch_tflops"] = epoch_flops / 1e12
        row["seen_fraction"] = seen
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="", help="run config YAML (default: the packaged default workload)")
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="run seeds (data order); one epoch each"
    )
    ap.add_argument("--steps", type=int, default=0, help="training steps before the reprune (0 = one epoch)")
    ap.add_argument("--fraction", type=float, default=0.2, help="share of the kept set dropped")
    ap.add_argument(
        "--samples",
        type=int,
        nargs="*",
        default=[400, 800, 1200],
        help="sample sizes of the sampled loss scorer",
    )
    ap.add_argument("--out", default="runs/noise_found", help="folder for noise_found.csv / .json")
    ap.add_argument("overrides", nargs="*", help="RunConfig overrides, e.g. data.max_examples=400")
    args = ap.parse_args()

    cfg = RunConfig.from_yaml(args.config or default_config(), parse_overrides(args.overrides))
    wl = load_workload(cfg, progress=True)
    n = len(wl.train)
    steps = args.steps or n // cfg.optim.batch_size  # one epoch: 2,000 / 8 = 250 steps
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        rows += one_seed(cfg, wl, seed, steps, args.fraction, args.samples)

    # the mean over seeds per scorer, then the per-seed rows
    labels = [p[0] for p in plans(args.samples)]
    cols = ["precision", "recall", "noise_found", "score_tflops", "of_epoch_flops", "stale_steps"]
    mean_rows = []
    for label in labels:
        rs = [r for r in rows if r["scorer"] == label]
        m = {"scorer": label, **{c: float(np.mean([r[c] for r in rs])) for c in cols}}
        m["found_per_tflop"] = m["noise_found"] / m["score_tflops"] if m["score_tflops"] else float("inf")
        mean_rows.append(m)
    print(
        f"\n{n} examples, {sum(1 for x in wl.train['noise'] if x)} noisy; "
        f"{steps} steps ({steps * cfg.optim.batch_size / n:.2f} epochs); drop {args.fraction:.0%} hardest; "
        f"seeds {args.seeds}; epoch training FLOPs {rows[0]['epoch_tflops']:.3f} TFLOP"
    )
    print(format_table(mean_rows))
    rec = next(r for r in mean_rows if r["scorer"] == "recorded")
    full = next(r for r in mean_rows if r["scorer"] == "loss (whole set)")
    print(
        f"reprune FLOPs: recorded {rec['score_tflops'] * 1e12:.0f} vs full loss rescoring "
        f"{full['score_tflops']:.3f} TFLOP ({full['of_epoch_flops']:.1%} of an epoch's training); "
        f"recall recorded {rec['recall']:.3f} vs full {full['recall']:.3f}"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "steps": steps,
        "fraction": args.fraction,
        "seeds": args.seeds,
        "train_examples": n,
        "mean": [
            {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in mean_rows
        ],
    }
    write_rows(out, "noise_found", rows, meta)
    print(f"wrote {out}/noise_found.csv, noise_found.json")


if __name__ == "__main__":
    main()
