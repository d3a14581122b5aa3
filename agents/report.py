"""The evaluation's report: leaderboard tables for the terminal and the plots written beside them.

The rows come from ``agents/scoring.py`` (``leaderboard``, ``family_board``, ``episode_rows``); the
episodes' trajectories from ``agents/harness.py``'s task results.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from govgym.agents.shield import SUFFIX
from govgym.plots import pyplot, save_figure
from govgym.results import format_table


def format_family_board(fb: list[dict[str, Any]]) -> str:
    """Per family, the policies by return, with regrets."""

    def f(v: float, fmt: str = ".3f") -> str:
        return "—" if math.isnan(v) else f"{v:{fmt}}"

    table = [
        {
            "family": r["family"],
            "policy": r["policy"],
            "return": f(r["return"]),
            "regret vs oracle": f(r["regret_oracle"]),
            **({"regret vs map": f(r["regret_map"])} if "regret_map" in r else {}),
            "best eval / fixed": f(r["best_eval_rel"], ".4f"),
            "FLOPs to best / fixed": f(r["flops_to_best_rel"]),
            "OOM": r["oom"],
        }
        for r in sorted(fb, key=lambda r: (r["family"], -r["return"]))
    ]
    return format_table(table)


def format_board(board: list[dict[str, Any]], objective: str = "price") -> str:
    """The leaderboard as a terminal table: '—' where no episode has the figure, no ± from a single seed.

    Under the equal-quality objective the table leads with its return and the violation rate."""

    def pm(r: dict[str, Any], k: str, fmt: str = ".3f") -> str:
        if math.isnan(r[k]):
            return "—"
        spread = r[k + "_spread"]
        return f"{r[k]:{fmt}}" if math.isnan(spread) else f"{r[k]:{fmt}} ± {spread:{fmt}}"

    shielded = any(r["policy"].endswith(SUFFIX) for r in board)  # the column where a shield ran
    table = [
        {
            "policy": r["policy"],
            **(
                {
                    "eq return": pm(r, "eq_return"),
                    "violated": "—" if math.isnan(r["violation_rate"]) else f"{r['violation_rate']:.0%}",
                }
                if objective == "equal_quality"
                else {}
            ),
            "return": pm(r, "return"),
            "final eval / fixed": pm(r, "final_eval_rel", ".4f"),
            "FLOPs / fixed": pm(r, "flops_rel"),
            "FLOPs-to-equal-quality / fixed": pm(r, "ftq_rel"),
            "reached": r["reached"],
            "best eval / fixed": pm(r, "best_eval_rel", ".4f"),
            "FLOPs to best / fixed": pm(r, "flops_to_best_rel"),
            **({"regret vs map": pm(r, "regret_map")} if "regret_map" in r else {}),
            "OOM": r["oom"],
            "crash": r["crash"],
            "switches/ep": f"{r['switches_per_ep']:.2f}",
            "reprunes/ep": f"{r['reprunes_per_ep']:.2f}",
            **({"shield fired": r.get("shield_fired", 0)} if shielded else {}),
        }
        for r in board
    ]
    return format_table(table)


def plot_quality_vs_flops(rows: list[dict[str, Any]], path: Path) -> Path:
    """Each episode as a point (FLOPs used / fixed, final eval / fixed); policy means as large markers."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    pols = list(dict.fromkeys(r["policy"] for r in rows))
    for i, pol in enumerate(pols):
        rs = [r for r in rows if r["policy"] == pol]
        x, y = np.array([r["flops_rel"] for r in rs]), np.array([r["final_eval_rel"] for r in rs])
        ax.scatter(x, y, s=14, alpha=0.35, color=f"C{i}")
        ax.scatter(
            [x.mean()],
            [y.mean()],
            s=140,
            color=f"C{i}",
            edgecolor="k",
            marker="*" if pol == "oracle" else "o",
            label=pol,
            zorder=3,
        )
        oom = [r for r in rs if r["oom"]]
        if oom:
            ax.scatter(
                [r["flops_rel"] for r in oom],
                [r["final_eval_rel"] for r in oom],
                s=40,
                marker="x",
                color="red",
            )
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.axvline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("FLOPs used / fixed-budget run")
    ax.set_ylabel("final eval loss / fixed-budget run")
    ax.set_title("quality vs compute per episode (large: policy mean; red x: OOM)")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)
    return path


def plot_curves(results: list[dict[str, Any]], path: Path, n_instances: int = 3) -> Path:
    """Eval loss vs FLOPs on a few instances (first seed), one line per policy, its actions marked."""
    plt = pyplot()
    seed0 = min(r["episode_seed"] for r in results)
    tasks = [r for r in results if r["episode_seed"] == seed0][:n_instances]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    markers = {"reprune_hardest": "v", "reprune_easiest": "^", "stop": "X"}
    for ax, task in zip(axes[0], tasks):
        for i, e in enumerate(task["episodes"]):
            x, y = np.asarray(e["flops"]) / 1e12, np.asarray(e["evals"])
            # policies share the fixed-budget path until they act: earlier ones drawn wider, so all show
            ax.plot(x, y, "-", color=f"C{i}", lw=max(5.0 - 0.7 * i, 1.0), alpha=0.8, label=e["policy"])
            for t, name in enumerate(e["actions"]):
                if name == "continue":
                    continue
                ax.plot(x[t], y[t], markers.get(name, "s"), color=f"C{i}", ms=8, mec="k")
            if e["error"]:
                ax.annotate(e["error"].split(":")[0], (x[-1], y[-1]), color="red", fontsize=8)
        ax.set_title(f"{task['instance']} (seed {seed0})", fontsize=9)
        ax.set_xlabel("FLOPs used (TFLOP)")
    axes[0][0].set_ylabel("eval loss")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("governed runs: ▼ drop-hardest, ▲ drop-easiest, ■ switch, X stop")
    save_figure(fig, path, dpi=110)
    return path


__all__ = ["format_board", "format_family_board", "plot_curves", "plot_quality_vs_flops"]
