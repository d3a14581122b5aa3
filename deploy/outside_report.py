"""The results of ``govgym outside``: per-run rows, per-policy summary, paired intervals, the plot.

Every ratio is to the fixed run on the same seed (same data, head initialisation and batch order).
A run is **within tolerance** when its final eval loss is <= the fixed run's final x (1 + tolerance);
its **FLOPs to quality** are the FLOPs used at its first evaluation that low (``reach_flops``, as
``govgym transfer``; nan = never). The paired rows give, per policy, the mean over seeds of
(policy - reference) for FLOPs / fixed and final eval / fixed, against the fixed run and against
EarlyStoppingCallback, with a paired bootstrap 95% interval (``agents/bootstrap.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from govgym.agents.bootstrap import paired_bootstrap
from govgym.deploy.transfer_report import reach_flops

PREFIX_ATOL = 1e-4
"""Eval losses of two runs of one seed agree to this before either stops (measured: bit-identical on CPU)."""


def run_rows(runs: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    """One row per run: its ratios to the fixed run of its seed, equal quality, FLOPs to quality."""
    fixed = {r["seed"]: r for r in runs if r["policy"] == "fixed"}
    rows = []
    for r in runs:
        ref = fixed[r["seed"]]
        target = ref["evals"][-1][1] * (1 + tolerance)
        final, acc = r["evals"][-1][1], r["evals"][-1][2]
        reach = reach_flops(r["decisions"], target)
        ref_losses = {s: e for s, e, _ in ref["evals"]}
        prefix_ok = all(abs(ref_losses[s] - e) <= PREFIX_ATOL for s, e, _ in r["evals"] if s in ref_losses)
        rows.append(
            {
                "policy": r["policy"],
                "seed": r["seed"],
                "final_eval": final,
                "final_vs_fixed": final / ref["evals"][-1][1],
                "within_tol": bool(final <= target),
                "flops_used": r["flops_used"],
                "flops_vs_fixed": r["flops_used"] / ref["flops_used"],
                "flops_to_quality": reach,
                "quality_flops_vs_fixed": reach / ref["flops_used"],
                "accuracy": acc,
                "best_eval": min(e for _, e, _ in r["evals"]),
                "stop_step": r["stop_step"],
                "ended": r["ended"],
                "prefix_ok": prefix_ok,
                "shield_fired": int(r.get("shield_fired", 0)) if r.get("shielded") else "-",
                "seconds": r["seconds"],
            }
        )
    return rows


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per policy: means over seeds; ``within_tol`` and ``reached`` as counts of runs."""
    out = []
    for pol in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == pol]
        reach = [r["quality_flops_vs_fixed"] for r in mine if math.isfinite(r["quality_flops_vs_fixed"])]
        out.append(
            {
                "policy": pol,
                "runs": len(mine),
                "flops_vs_fixed": float(np.mean([r["flops_vs_fixed"] for r in mine])),
                "final_vs_fixed": float(np.mean([r["final_vs_fixed"] for r in mine])),
                "worst_final_vs_fixed": float(max(r["final_vs_fixed"] for r in mine)),
                "within_tol": f"{sum(r['within_tol'] for r in mine)}/{len(mine)}",
                "quality_flops_vs_fixed": float(np.mean(reach)) if reach else math.nan,
                "reached": f"{len(reach)}/{len(mine)}",
                "final_eval": float(np.mean([r["final_eval"] for r in mine])),
                "accuracy": float(np.mean([r["accuracy"] for r in mine])),
                "stop_step": float(np.mean([r["stop_step"] for r in mine])),
                "prefix_ok": f"{sum(r['prefix_ok'] for r in mine)}/{len(mine)}",
                "shield_fired": (
                    sum(r["shield_fired"] for r in mine)
                    if all(r["shield_fired"] != "-" for r in mine)
                    else "-"
                ),
            }
        )
    return out


def paired_rows(
    rows: list[dict[str, Any]], resamples: int, esc: str = "early_stopping"
) -> list[dict[str, Any]]:
    """Each policy minus each reference (the fixed run, EarlyStoppingCallback), paired by seed, with 95% intervals."""
    by = {(r["policy"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for pol in dict.fromkeys(r["policy"] for r in rows):
        for ref in ("fixed", esc):
            if pol in ("fixed", ref):
                continue
            row: dict[str, Any] = {"policy": pol, "vs": ref}
            for metric in ("flops_vs_fixed", "final_vs_fixed"):
                ci = paired_bootstrap(
                    [by[(pol, s)][metric] for s in seeds],
                    [by[(ref, s)][metric] for s in seeds],
                    resamples=resamples,
                )
                name = "d_flops" if metric == "flops_vs_fixed" else "d_final"
                row.update({name: ci["mean"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]})
            row["seeds"] = len(seeds)
            out.append(row)
    return out


def tables(runs: list[dict[str, Any]], tolerance: float, resamples: int) -> dict[str, list[dict[str, Any]]]:
    """``{"runs", "summary", "paired"}``: the three tables of ``govgym outside``."""
    rows = run_rows(runs, tolerance)
    return {"runs": rows, "summary": summary_rows(rows), "paired": paired_rows(rows, resamples)}


def plot(runs: list[dict[str, Any]], seeds: int, path: Path) -> None:
    """Eval loss vs FLOPs of every run: one panel per seed (at most 6), one line per policy, stops marked x."""
    from govgym.plots import pyplot, save_figure

    plt = pyplot()
    shown = min(seeds, 6)
    fig, axes = plt.subplots(1, shown, figsize=(4.2 * shown, 3.8), squeeze=False, sharey=True)
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    styles = {p: ("-", 3.0) if p == "fixed" else ("--", 1.6) for p in policies}
    for ax, seed in zip(axes[0], range(shown)):
        for r in (x for x in runs if x["seed"] == seed):
            d = r["decisions"]
            xs, ys = [x["flops_used"] for x in d], [x["eval_loss"] for x in d]
            ls, lw = styles[r["policy"]]
            color = f"C{policies.index(r['policy'])}"
            ax.plot(xs, ys, ls=ls, lw=lw, color=color, alpha=0.8, label=r["policy"])
            if r["policy"] != "fixed" and r["stop_step"] < r["budget_steps"]:
                ax.plot([xs[-1]], [ys[-1]], marker="x", ms=9, color=color)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("FLOPs used")
    axes[0][0].set_ylabel("eval loss (cross-entropy)")
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path, dpi=110)


__all__ = ["paired_rows", "plot", "run_rows", "summary_rows", "tables"]
