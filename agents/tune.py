"""Tune each heuristic's knobs on the *train* split, so evaluation compares against their best.

    govgym tune                                   # grid below, train split, 2 seeds -> runs/tune/heuristics.yaml
    govgym tune --write configs/heuristics.yaml   # ... and make it the packaged default

The objective is the env's own: mean episode return (normalized eval improvement − λ × budget fraction
used) over train instances × seeds. Every grid point of every heuristic runs on the same
(instance, seed) trees (agents/rollout.py), so a stop-only heuristic's whole grid costs no more real
steps than the one fixed-budget run it stops along.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from govgym.agents.harness import run_tasks
from govgym.agents.policies import PolicySpec
from govgym.agents.scoring import episode_rows
from govgym.envs.instances import load_instances
from govgym.results import atomic_write, format_table, write_rows

# knob -> values; every combination is one grid point (a small grid, as the issue allows)
# (ranges widened where the first tuning picked an edge: kappa 3, threshold 0.01, beta 1.1)
GRID: dict[str, dict[str, list[Any]]] = {
    # (v2: threshold 0.08 and kappa 8 were the edges the first tuning picked; widened to 0.2 and 24)
    "patience": {
        "patience": [1, 2, 3, 4],
        "threshold": [0.0, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2],
    },
    "marginal_gain": {
        "kappa": [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0],
        "patience": [1, 2],
        "use_ema": [True, False],
    },
    "zeus": {"beta": [1.0, 1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0]},
    # issue 20's baselines: transformers' EarlyStoppingCallback (patience's grid, its knob names) and the
    # curve-extrapolation rule (price objective; its equal-quality quality_margin is not on this grid,
    # since the tuner scores the price objective's return, on which it has no effect)
    "early_stopping": {
        "early_stopping_patience": [1, 2, 3, 4],
        "early_stopping_threshold": [0.0, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2],
    },
    "curve_extrapolation": {
        "kappa": [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
        "to_end": [False, True],
        "min_points": [3, 4, 6],
    },
    # the learned curve predictor's governor (configs/curve_v2.json): alpha acts under equal quality, tau
    # under price; min_used under both
    "learned_curve": {
        "alpha": [0.05, 0.1, 0.25, 0.5],
        "tau": [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05],
        "min_used": [0.0, 0.2],
    },
    # (v2: the first tuning on v2's train split picked threshold 0.08, the edge: widened as patience's)
    "memory_reactive": {
        "margin": [0.02, 0.05, 0.1, 0.2],
        "patience": [1, 2, 3],
        "threshold": [0.0, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2],
    },
}


def grid_specs(
    heuristics: list[str] | None = None, grid: dict[str, dict[str, list[Any]]] | None = None
) -> list[Any]:
    """Every grid point (of ``heuristics``; None = all) of ``grid`` (None = ``GRID``) as a PolicySpec labelled
    ``name:knob=v,...``, after the fixed-budget run they are judged against."""

    specs = [PolicySpec("fixed_budget", "heuristic", "fixed_budget")]
    for name, knobs in (GRID if grid is None else grid).items():
        if heuristics and name not in heuristics:
            continue
        keys = sorted(knobs)
        for values in itertools.product(*(knobs[k] for k in keys)):
            kv = tuple(zip(keys, values))
            specs.append(PolicySpec(f"{name}:" + ",".join(f"{k}={v}" for k, v in kv), "heuristic", name, kv))
    return specs


def grid_rows(specs: list[Any], rows: list[dict[str, Any]], score: str) -> list[dict[str, Any]]:
    """Each grid point's mean and spread of ``score`` over its episode rows.

    Equal quality is undefined where the fixed run itself errored (``eq_return`` nan): those episodes are
    left out, as ``govgym evaluate`` leaves them out, instead of making every point's mean nan.
    """
    by_label: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_label[r["policy"]].append(r[score])
    grid = []
    for s in specs:
        vals = [v for v in by_label[s.label] if np.isfinite(v)]
        grid.append(
            {
                "heuristic": s.name,
                "knobs": ",".join(f"{k}={v}" for k, v in s.knobs) or "-",
                "mean_return": float(np.mean(vals)) if vals else float("nan"),
                "std_return": float(np.std(vals)) if vals else float("nan"),
                "episodes": len(vals),
            }
        )
    return grid


def tune(
    out: Path,
    instances: str = "",
    seeds: int = 2,
    workers: int = 2,
    write: str = "",
    progress: bool = True,
    memo: str = "runs/memo",
    backend: str = "local",
    ray_address: str = "",
    objective: str = "price",
    tolerance: float = 0.005,
    heuristics: list[str] | None = None,
    knobs: str = "",
) -> dict[str, Any]:
    """Run the grid on the train split; write ``heuristics.yaml`` (best knobs) and ``grid.csv``.

    ``backend`` / ``ray_address``: where the (instance, seed) tasks run (``agents/scaleout.py``).
    ``objective``: ``price`` (mean return) or ``equal_quality`` (mean budget fraction saved − violations,
    at ``tolerance``; the heuristics see the tolerance as their 21st feature): efficiency/objective.py.
    ``heuristics``: the ones tuned (None = all of GRID); every other heuristic's knobs are carried over from
    ``knobs`` ('' = the packaged file of the set's version), so the written file stays complete.
    """
    from govgym.agents.specs import default_knobs_path, load_knobs
    from govgym.efficiency.objective import Objective

    eq = Objective(objective, tolerance).equal_quality

    iset = load_instances(instances or None)
    names = [i.name for i in iset.split("train")]
    tuned = [h for h in GRID if not heuristics or h in heuristics]
    specs = grid_specs(tuned)
    t0 = time.perf_counter()
    results = run_tasks(
        instances,
        "train",
        names,
        list(range(seeds)),
        specs,
        workers,
        desc="tune",
        progress=progress,
        memo=memo,
        backend=backend,
        ray_address=ray_address,
        tolerance=tolerance if eq else None,
    )
    grid = grid_rows(specs, episode_rows(results, tolerance), "eq_return" if eq else "return")
    best: dict[str, dict[str, Any]] = {}
    summary = []
    for name in tuned:
        cands = [(g, s) for g, s in zip(grid, specs) if s.name == name]
        g, s = max(cands, key=lambda gs: np.nan_to_num(gs[0]["mean_return"], nan=-np.inf))
        best[name] = {k: (v.item() if hasattr(v, "item") else v) for k, v in s.knobs}
        summary.append(
            {
                "heuristic": name,
                "best knobs": g["knobs"],
                "mean return": g["mean_return"],
                "grid points": len(cands),
                "worst grid point": min(c[0]["mean_return"] for c in cands),
            }
        )
    steps = {k: sum(r[k] for r in results) for k in ("real_steps", "replayed_steps", "memo_hits")}
    seconds = time.perf_counter() - t0
    print(format_table(summary))
    print(
        f"\n{len(names)} train instances x {seeds} seeds, {len(specs)} grid points; {steps['real_steps']} real env steps "
        f"(+{steps['replayed_steps']} replayed), {steps['memo_hits']} from the memo; {seconds:.0f} s."
    )
    out.mkdir(parents=True, exist_ok=True)
    write_rows(
        out,
        "grid",
        grid,
        {"instances": iset.source, "seeds": seeds, "steps": steps, "seconds": round(seconds, 1)},
    )
    header = (
        f"# Tuned heuristic knobs: the grid point with the highest mean {'equal-quality ' if eq else ''}return on the TRAIN split.\n"
        f"# Written by: govgym tune seeds={seeds}{' instances=' + instances if instances else ''}"
        f"{f' objective=equal_quality tolerance={tolerance}' if eq else ''}\n"
        f"# ({len(names)} train instances x {seeds} seeds; grid and every point's return in grid.csv beside the run.)\n"
        "# govgym evaluate reads this file (packaged copies: configs/heuristics.yaml for v0, configs/heuristics_v1.yaml\n"
        "# for v1) for each heuristic named plainly.\n"
    )
    kept = {}
    if len(tuned) < len(GRID):
        base = knobs or default_knobs_path(iset.env.version)
        kept = {h: k for h, k in load_knobs(base).items() if h not in best}
        header += f"# Not re-tuned here, carried over from {base}: {', '.join(sorted(kept)) or '-'}.\n"
    text = header + yaml.safe_dump({"heuristics": {**kept, **best}}, sort_keys=True)
    atomic_write(out / "heuristics.yaml", text)
    paths = [out / "heuristics.yaml"]
    if write:
        Path(write).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(write), text)
        paths.append(Path(write))
    print("wrote " + ", ".join(str(p) for p in paths) + f", {out}/grid.csv/json")
    return {"best": best, "grid": grid, "summary": summary}


__all__ = ["GRID", "grid_rows", "grid_specs", "tune"]
