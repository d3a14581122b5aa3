"""How much each noise kind hurts SFT, per task and loss: best eval loss of small noisy sets run for epochs.

    python benchmarks/noise_harm.py --out results/noise_harm            # the default (reduced) grid
    python benchmarks/noise_harm.py --out results/noise_harm --full     # + code2doc with all-token loss
    python benchmarks/noise_harm.py --out /tmp/nh --examples 200 --epochs 2 seed=1   # quick; overrides

For each task (doc2code, code2doc) x loss (all tokens, or the response only as TRL's SFTTrainer does
for prompt-completion data), fine-tune the embedded default model on ``--examples`` examples for
``--epochs`` epochs (batch 8, warmup + cosine planned over the whole run: ``optim.total_steps`` = the
steps of all epochs), clean and with ``--rate`` of each noise kind (shuffle, corrupt, duplicate; noise
*replaces* rows, so a noisy set has fewer clean examples). The eval split (always clean) is scored
every ``--every`` steps; the table reports the best eval loss, its step, and how much worse than clean
each noise kind's best is. Each task's learning speed is the clean run's eval loss after one epoch
relative to its start, and the step of its best eval. Eval losses of the two losses are not
comparable with each other (all tokens vs response tokens only); compare noise within a row.

Real ``FineTuneRun``s on this machine's CPU (or ``device=auto``); results are written after every run
to ``--out``/noise_harm.json and .csv, so a killed run keeps what it finished. The default grid (12
runs: response-only for both tasks + the all-token doc2code row) took 17 min on 2 shared CPU cores
(1 torch thread: with 2 threads on a busy box the same run was ~10x slower).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.typed import deep_merge, from_dict, parse_overrides

NOISES = ("clean", "shuffle", "corrupt", "duplicate")


def run_one(over: dict[str, Any], every: int, epochs: int) -> dict[str, Any]:
    """One run of ``over`` (RunConfig fields): eval at step 0 and every ``every`` steps; its curve."""
    cfg = from_dict(RunConfig, over)
    steps_per_epoch = cfg.data.max_examples // cfg.optim.batch_size
    total = cfg.optim.total_steps
    t0 = time.perf_counter()
    run = FineTuneRun(cfg, workload=load_workload(cfg, progress=False), progress=False)
    curve = [(0, run.evaluate())]
    while run.step < total:
        run.advance(min(every, total - run.step))
        curve.append((run.step, run.evaluate()))
    best_step, best = min(curve, key=lambda c: c[1])
    at_epoch = [loss for step, loss in curve if step >= steps_per_epoch][0]
    return {
        "start": curve[0][1],
        "best": best,
        "best_step": best_step,
        "best_epoch": best_step / steps_per_epoch,
        "after_epoch1": at_epoch,
        "epoch1_rel": at_epoch / curve[0][1],
        "final": curve[-1][1],
        "steps": total,
        "steps_per_epoch": steps_per_epoch,
        "seconds": time.perf_counter() - t0,
        "noise_counts": run.info.get("noise_counts"),
        "curve": curve,
    }


def grid(full: bool) -> list[tuple[str, bool]]:
    """(task, response_only) rows: response-only first (the SFT question), then all-token rows."""
    rows = [("doc2code", True), ("code2doc", True), ("doc2code", False)]
    return rows + [("code2doc", False)] if full else rows


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table: one row per (task, loss), best eval per noise kind (+% vs clean)."""
    lines = [
        "| task | loss on | clean best (step) | " + " | ".join(f"40% {n}" for n in NOISES[1:]) + " |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["task"], r["response_only"]) for r in results}, key=lambda k: (not k[1], k[0]))
    for task, ro in keys:
        by = {r["noise"]: r for r in results if (r["task"], r["response_only"]) == (task, ro)}
        clean = by.get("clean")
        cells = []
        for n in NOISES[1:]:
            if n not in by:
                cells.append("–")
                continue
            rel = f" ({100 * (by[n]['best'] / clean['best'] - 1):+.1f}%)" if clean else ""
            cells.append(f"{by[n]['best']:.3f}{rel}")
        head = f"{clean['best']:.3f} ({clean['best_step']})" if clean else "–"
        lines.append(
            f"| {task} | {'response' if ro else 'all tokens'} | {head} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| task | loss on | start | after 1 epoch (rel.) | best step (epoch) | final |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["noise"] == "clean":
            lines.append(
                f"| {r['task']} | {'response' if r['response_only'] else 'all tokens'} | {r['start']:.3f} | "
                f"{r['after_epoch1']:.3f} ({r['epoch1_rel']:.3f}) | {r['best_step']} ({r['best_epoch']:.2f}) | "
                f"{r['final']:.3f} |"
            )
    return "\n".join(lines)


def write(out: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """JSON (with curves) and CSV (one row per run), rewritten after every run."""
    (out / "noise_harm.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1) + "\n")
    cols = ["task", "response_only", "noise", "start", "after_epoch1", "epoch1_rel", "best", "best_step",
            "best_epoch", "final", "steps", "seconds"]  # fmt: skip
    with (out / "noise_harm.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in results:
            w.writerow([f"{r[c]:.4f}" if isinstance(r[c], float) else r[c] for c in cols])
    (out / "noise_harm.md").write_text(table(results) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for noise_harm.json / .csv / .md")
    ap.add_argument("--examples", type=int, default=600, help="training examples (data.max_examples)")
    ap.add_argument("--epochs", type=int, default=6, help="epochs; the cosine schedule spans all of them")
    ap.add_argument("--rate", type=float, default=0.4, help="noise rate of each noisy run (one kind each)")
    ap.add_argument("--every", type=int, default=25, help="evaluate every N optimizer steps")
    ap.add_argument("--full", action="store_true", help="also run code2doc with the all-token loss")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: least contention on a shared box)"
    )
    ap.add_argument("overrides", nargs="*", help="RunConfig key=value overrides, e.g. seed=1 device=auto")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = parse_overrides(args.overrides)
    batch = int(extra.get("optim", {}).get("batch_size", 8))
    steps = math.ceil(args.epochs * (args.examples // batch))
    meta = {"examples": args.examples, "epochs": args.epochs, "rate": args.rate, "every": args.every,
            "batch_size": batch, "total_steps": steps, "overrides": args.overrides}  # fmt: skip
    torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    rows = grid(args.full)
    order = [
        (t, ro, n) for ro in (True, False) for n in NOISES for t, r in rows if r == ro
    ]  # clean pairs first
    for task, ro, noise in order:
        data = {"task": task, "response_only": ro, "max_examples": args.examples}
        data |= {"noise_rate": 0.0} if noise == "clean" else {"noise_rate": args.rate, "noise_kinds": [noise]}
        over = deep_merge({"data": data, "optim": {"batch_size": batch, "total_steps": steps}}, extra)
        r = run_one(over, args.every, args.epochs)
        results.append({"task": task, "response_only": ro, "noise": noise, **r})
        print(
            f"{task:9s} {'response' if ro else 'all':8s} {noise:9s} start {r['start']:.3f} "
            f"epoch1 {r['after_epoch1']:.3f} best {r['best']:.3f} @ {r['best_step']:3d} "
            f"final {r['final']:.3f}  ({r['seconds']:.0f} s)",
            flush=True,
        )
        write(out, results, meta)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
