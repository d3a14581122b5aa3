"""The CLI's jobs: each runs real fine-tuning, prints a table, and writes CSV/JSON (+ PNG) to a folder.

Kept apart from efficiency/ (which never prints) so the library stays quiet and the commands stay
readable top to bottom: config, build, loop, write.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from govgym.efficiency.compute import six_nd
from govgym.efficiency.config import RunConfig
from govgym.efficiency.pruning import SCORERS
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.signals import FEATURE_NAMES, Reading, SignalTracker
from govgym.efficiency.strategy import Strategy
from govgym.efficiency.workload import load_workload
from govgym.errors import ConfigError
from govgym.plots import pyplot, save_figure
from govgym.results import format_table, write_rows
from govgym.typed import to_dict

DEFAULT_STRATEGIES = (
    "full",
    "full+gc",
    "full+adam8",
    "lora",
    "lora+gc",
    "qlora",
    "qlora+gc",
    "int8",
    "int8+adam8",
)


# ---------------------------------------------------------------------------- helpers
def _progress(total: int, desc: str):

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False)


def _new_run(cfg: RunConfig, workload: Any = None):

    return FineTuneRun(cfg, workload=workload)


# ---------------------------------------------------------------------------- prepare
def prepare(cfg: RunConfig) -> dict[str, Any]:

    wl = load_workload(cfg, progress=True)
    print(json.dumps(wl.info, indent=2, default=str))
    return wl.info


# ---------------------------------------------------------------------------- run / demo
def fixed_budget_run(
    cfg: RunConfig, out: Path, interval: int, budget_flops: float = 0.0
) -> list[dict[str, Any]]:
    """One real run under a fixed budget; signals printed interval by interval; curve plotted."""
    if interval < 1:
        raise ConfigError(f"interval: got {interval}; it must be >= 1 optimizer step.")
    run = _new_run(cfg)
    total = cfg.optim.total_steps
    e0 = run.evaluate()
    eval_flops = run.flops["eval"]
    tracker = SignalTracker()
    tracker.reset(e0, run.flops_total)
    budget = budget_flops
    rows: list[dict[str, Any]] = []
    show = [
        "step",
        "eval_loss",
        "train_loss",
        "budget_left",
        "gain_rate",
        "log_noise_scale",
        "mem_frac",
        "grad_norm",
        "sec",
    ]
    print(
        f"govgym run: {run.n_params['total']:,} params ({run.n_params['trainable']:,} trainable), strategy "
        f"{run.strategy}, {len(run.train_ids)} train / {len(run.eval_ids)} eval examples, initial eval loss {e0:.4f}"
    )
    bar = _progress(total, "fine-tuning")
    while run.step < total:
        k = min(interval, total - run.step)
        stats = run.advance(k)
        e = run.evaluate()
        if not budget:
            # Fixed budget = every step of the schedule plus one eval per interval (+ the initial one).
            per_step = stats.flops / k if run.step > k else (run.flops["train"]) / k
            budget = per_step * total + eval_flops * (math.ceil(total / interval) + 1)
        reading = Reading.from_run(run, e, stats, budget, lam=0.0)
        obs = tracker.observe(reading)
        row = {
            "step": run.step,
            "flops": run.flops_total,
            "eval_loss": e,
            "train_loss": stats.train_loss,
            "grad_norm": stats.grad_norm,
            "noise_scale": stats.grad_noise_scale,
            "lr": stats.lr,
            "sec": stats.seconds,
            **dict(zip(FEATURE_NAMES, map(float, obs))),
        }
        if not rows:
            bar.write(format_table([row], show).split("\n", 2)[0])
        rows.append(row)
        bar.write(format_table([row], show).split("\n")[2])
        bar.update(k)
        if not stats.finite:
            bar.write("stopping: the loss is no longer finite (diverged); lower optim.lr.")
            break
        if run.flops_total >= budget:
            break
    bar.close()
    meta = {
        "config": to_dict(cfg),
        "info": run.info,
        "initial_eval": e0,
        "budget_flops": budget,
        "flops": run.flops,
        "memory_mb": run.last_memory.as_mb(),
        "params": run.n_params,
    }
    print(  # the result first: a write that fails later loses nothing
        f"final eval loss {rows[-1]['eval_loss']:.4f} (from {e0:.4f}) after {run.step} steps, "
        f"{run.flops_total / 1e12:.3f} TFLOP"
    )
    write_rows(out, "intervals", rows, meta)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    fl = [0] + [r["flops"] for r in rows]
    ax.plot(np.array(fl) / 1e12, [e0] + [r["eval_loss"] for r in rows], "o-", label="eval loss")
    ax.plot(
        np.array(fl[1:]) / 1e12,
        [r["train_loss"] for r in rows],
        "s--",
        alpha=0.6,
        label="train loss (interval mean)",
    )
    ax.set_xlabel("FLOPs spent (TFLOP)")
    ax.set_ylabel("loss")
    ax.set_title(f"fixed-budget run, strategy {run.strategy}")
    ax.legend()
    save_figure(fig, out / "curve.png", dpi=110)
    print(f"wrote {out}/intervals.csv, intervals.json, curve.png")
    return rows


# ---------------------------------------------------------------------------- strategies
def strategy_table(
    cfg: RunConfig, out: Path, steps: int, only: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Per strategy on the same workload: ms/step, measured memory by category, estimate, FLOPs vs 6ND."""

    names = list(only or DEFAULT_STRATEGIES)
    for i, n in enumerate(names):
        try:
            Strategy.parse(n)
        except ConfigError as err:
            raise ConfigError(f"only[{i}]: {err}") from None
    rows = []
    mb = 2**20
    for name in names:
        cfg.memory.strategy = name
        run = _new_run(cfg, load_workload(cfg, progress=False))
        run.advance(2)  # warm-up; FLOPs and memory are measured on the first real step
        stats = run.advance(steps)
        key = run._mem_key(run.train_ids[: cfg.optim.batch_size])
        mem, est = run.memory[key], run.memory_estimate()
        tokens = cfg.optim.batch_size * run.train_ids.shape[1]
        fl = run.flop_cache.get(("train", key))
        ref = six_nd(run.n_params["total"], tokens)
        rows.append(
            {
                "strategy": name,
                "ms_per_step": 1e3 * stats.seconds / steps,
                "params_mb": mem.params / mb,
                "grads_mb": mem.grads / mb,
                "optim_mb": mem.optimizer / mb,
                "activ_mb": mem.activations / mb,
                "total_mb": mem.total / mb,
                "profiler_peak_mb": mem.profile_peak / mb,
                "est_total_mb": est.total / mb,
                "est_over_meas": est.total / mem.total,
                "gflops_step": fl / 1e9,
                "gflops_6nd": ref / 1e9,
                "flops_over_6nd": fl / ref,
                "trainable": run.n_params["trainable"],
            }
        )
        print(
            format_table(rows[-1:]).split("\n")[2] if len(rows) > 1 else format_table(rows[-1:]), flush=True
        )
    meta = {
        "config": to_dict(cfg),
        "steps": steps,
        "tokens_per_step": tokens,
        "n_params": run.n_params["total"],
    }
    write_rows(out, "strategies", rows, meta)
    print(f"wrote {out}/strategies.csv and strategies.json")
    return rows


# ---------------------------------------------------------------------------- pruning
def prune_noise(cfg: RunConfig, out: Path, fraction: float, warm_steps: int) -> list[dict[str, Any]]:
    """Fraction of injected noise removed by each scorer's prune (from the same snapshot) vs random."""

    if cfg.data.noise_rate <= 0:
        raise ConfigError(
            "prune needs injected noise to find: set data.noise_rate (e.g. data.noise_rate=0.2)."
        )
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction: got {fraction}; it must lie in (0, 1).")
    run = _new_run(cfg)
    if warm_steps:
        run.advance(warm_steps)
    snap = run.snapshot()
    kinds = {1: "corrupt", 2: "shuffle", 3: "duplicate"}
    rows = []
    plans = [(s, "hardest") for s in SCORERS] + [(s, "easiest") for s in SCORERS] + [("random", "random")]
    for scorer, mode in plans:
        run.restore(snap)
        kept_before = run.sampler.kept.copy()
        r = run.reprune(scorer, fraction, mode)
        dropped = np.setdiff1d(kept_before, run.sampler.kept)
        row = {
            "scorer": scorer,
            "mode": mode,
            "dropped": r["dropped"],
            "noise_removed": r["noise_removed"],
            "precision": r["noise_in_dropped"],
            "gflops": r["flops"] / 1e9,
            "sec": r["seconds"],
        }
        for code, kind in kinds.items():
            n_kind = int((run.noise == code).sum())
            row[f"{kind}_removed"] = (
                float((run.noise[dropped] == code).sum() / n_kind) if n_kind else float("nan")
            )
        rows.append(row)
    print(format_table(rows))
    meta = {
        "config": to_dict(cfg),
        "fraction": fraction,
        "warm_steps": warm_steps,
        "noise_examples": int((run.noise != 0).sum()),
        "train_examples": len(run.noise),
    }
    write_rows(out, "prune", rows, meta)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['scorer']}\n{r['mode']}" for r in rows]
    ax.bar(labels, [r["noise_removed"] for r in rows], color=["C0"] * 3 + ["C1"] * 3 + ["C7"])
    ax.axhline(fraction, color="k", ls=":", label=f"random expectation ({fraction:.0%})")
    ax.set_ylabel("fraction of injected noise removed")
    ax.set_title(f"drop {fraction:.0%} of the training set after {warm_steps} steps")
    ax.legend()
    save_figure(fig, out / "prune.png", dpi=110)
    print(f"wrote {out}/prune.csv, prune.json, prune.png")
    return rows


# ---------------------------------------------------------------------------- switching
def switch_curves(cfg: RunConfig, out: Path, steps: int) -> dict[str, Any]:
    """full -> lora -> full and full -> qlora mid-run, beside an unswitched run; loss per step and plot."""

    cfg.memory.strategy = "full"
    plans = {
        "full (no switch)": ["full"] * 3,
        "full->lora->full": ["full", "lora", "full"],
        "full->qlora": ["full", "qlora", "qlora"],
    }
    result: dict[str, Any] = {}
    bar = _progress(3 * steps * len(plans), "switch runs")
    for label, seq in plans.items():
        run = _new_run(cfg, load_workload(cfg, progress=False))
        losses, switches = [], []
        for strat in seq:
            if strat != run.strategy.name:
                before = run.evaluate()
                run.switch_strategy(strat)
                switches.append(
                    {"step": run.step, "to": strat, "eval_before": before, "eval_after": run.evaluate()}
                )
            losses += run.advance(steps).losses
            bar.update(steps)
        result[label] = {"losses": losses, "switches": switches, "final_eval": run.evaluate()}
    bar.close()
    rows = [
        {"run": k, **s, "jump": s["eval_after"] - s["eval_before"]}
        for k, v in result.items()
        for s in v["switches"]
    ]
    print(format_table(rows))
    write_rows(
        out,
        "switch",
        rows,
        {"config": to_dict(cfg), "steps": steps, "curves": {k: v["losses"] for k, v in result.items()}},
    )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 5
    for i, (label, v) in enumerate(result.items()):
        ls = np.asarray(v["losses"])
        sm = np.convolve(ls, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(1, len(ls) + 1), ls, color=f"C{i}", alpha=0.25, lw=0.8)
        ax.plot(np.arange(w, len(ls) + 1), sm, color=f"C{i}", label=label)
        for s in v["switches"]:
            ax.axvline(s["step"], color=f"C{i}", ls=":", alpha=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss (faint: per step; solid: 5-step mean)")
    ax.set_title("strategy switched mid-run, in place (dotted: switch points)")
    ax.legend()
    save_figure(fig, out / "switch.png", dpi=110)
    print(f"wrote {out}/switch.csv, switch.json, switch.png")
    return result
