"""The results of ``govgym transfer``: the table's rows over the runs and the loss-vs-FLOPs plot.

Reported per size and policy (means over instances x seeds): final eval loss and its ratio to the
fixed run's; FLOPs used / fixed; FLOPs-to-equal-quality / fixed (FLOPs at the first evaluation within
``tolerance`` of the fixed run's final eval loss; runs that never get there are counted in
``reached``); OOMs under the scaled cap; savings at equal quality (``1 - FLOPs used / fixed`` for a run
whose final eval loss is within ``tolerance`` of the fixed run's, 0 for one that lost quality) and
``kept`` = savings at this size / savings at the training size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from govgym.deploy.transfer_scaling import TRAIN_SIZE


def reach_flops(decisions: list[dict[str, Any]], target: float) -> float:
    """FLOPs used at the first decision whose eval loss is <= ``target`` (nan: never; an OOM row does not count)."""
    return next(
        (float(d["flops_used"]) for d in decisions if d["eval_loss"] <= target and not d.get("error")),
        float("nan"),
    )


def summarize(runs: list[dict[str, Any]], tolerance: float, sizes: list[str]) -> list[dict[str, Any]]:
    """One row per (size, policy) over the runs (one per instance x seed x size x policy, fixed included)."""
    fixed = {(r["size"], r["instance"], r["seed"]): r for r in runs if r["policy"] == "fixed"}
    rows: list[dict[str, Any]] = []
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    savings_at: dict[tuple[str, str], float] = {}
    for size in sizes:
        for pol in policies:
            mine = [r for r in runs if r["size"] == size and r["policy"] == pol]
            if not mine:
                continue
            finals, used, reach, sav, ooms = [], [], [], [], 0
            for r in mine:
                ref = fixed.get((size, r["instance"], r["seed"]))
                if ref is None:
                    continue
                target = ref["final_eval"] * (1 + tolerance)
                finals.append(r["final_eval"] / ref["final_eval"])
                used.append(r["flops_used"] / ref["flops_used"])
                reach.append(reach_flops(r["decisions"], target) / ref["flops_used"])
                sav.append(1 - used[-1] if r["final_eval"] <= target else 0.0)
                ooms += int(bool(r["oom_steps"]))
            if not finals:
                continue
            got = [x for x in reach if math.isfinite(x)]
            savings = float(np.mean(sav))
            savings_at[(size, pol)] = savings
            rows.append(
                {
                    "size": size,
                    "params": mine[0]["params"],
                    "policy": pol,
                    "runs": len(finals),
                    "final_eval": float(np.mean([r["final_eval"] for r in mine])),
                    "final_vs_fixed": float(np.mean(finals)),
                    "flops_vs_fixed": float(np.mean(used)),
                    "eq_quality_vs_fixed": float(np.mean(got)) if got else float("nan"),
                    "reached": f"{len(got)}/{len(reach)}",
                    "savings": savings,
                    "kept": float("nan"),
                    "flops_saved_kept": float("nan"),
                    "ooms": ooms,
                    "flops_used": float(np.mean([r["flops_used"] for r in mine])),
                }
            )
    raw = {(r["size"], r["policy"]): 1 - r["flops_vs_fixed"] for r in rows}
    for row in rows:
        if row["policy"] == "fixed":
            continue
        base = savings_at.get((TRAIN_SIZE, row["policy"]), float("nan"))
        if base > 0:
            row["kept"] = row["savings"] / base
        base_raw = raw.get((TRAIN_SIZE, row["policy"]), float("nan"))
        if base_raw > 0:  # the FLOPs saved, whatever the quality: does the policy behave alike at both sizes?
            row["flops_saved_kept"] = (1 - row["flops_vs_fixed"]) / base_raw
    return rows


def _plot(runs: list[dict[str, Any]], sizes: list[str], path: Path) -> None:
    from govgym.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    colors = {p: f"C{i}" for i, p in enumerate(policies)}
    for ax, size in zip(axes[0], sizes):
        mine = [r for r in runs if r["size"] == size]
        for r in mine:
            d = r["decisions"]
            xs, ys = [x["flops_used"] for x in d], [x["eval_loss"] for x in d]
            first = r["seed"] == 0 and r["instance"] == mine[0]["instance"]
            ax.plot(
                xs,
                ys,
                color=colors[r["policy"]],
                alpha=0.6,
                lw=2.5 if r["policy"] == "fixed" else 1.2,
                label=r["policy"] if first else None,
            )
            if r["ended"] in ("stop", "oom"):  # x: a stop; v: an OOM (the over-cap evaluation, plotted)
                mark = "x" if r["ended"] == "stop" else "v"
                ax.plot([xs[-1]], [ys[-1]], marker=mark, ms=8, color=colors[r["policy"]])
        params = mine[0]["params"] / 1e6 if mine else 0
        ax.set_title(f"{size} ({params:.1f}M params)")
        ax.set_xlabel("FLOPs used")
        ax.set_ylabel("eval loss")
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


__all__ = ["reach_flops", "summarize"]
