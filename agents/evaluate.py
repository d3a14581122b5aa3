"""The evaluation job: every policy x held-out instances x seeds -> leaderboard, CSV/JSON, plots.

    govgym evaluate                                   # tuned heuristics + oracle on the test split, 5 seeds
    govgym evaluate --agent runs/train/final.zip      # ... and a trained agent

Three parts, one module each: ``agents/harness.py`` runs each (instance, seed) task (every policy
through one ``EpisodeTree``, so policies that share a path share its real steps exactly);
``agents/scoring.py`` turns episodes into rows relative to that task's fixed-budget run and into the
leaderboard (its docstring defines each figure); ``agents/report.py`` prints the tables and draws the
plots. This module holds the config and the job that strings them together. Names that moved are
re-exported here (``run_tasks``, ``episode_rows``, ``leaderboard``, ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from govgym.agents.harness import check_harness, run_meta, run_task, run_tasks, task_env
from govgym.agents.policies import build_policy, default_knobs_path, parse_spec
from govgym.agents.report import format_board, format_family_board, plot_curves, plot_quality_vs_flops
from govgym.agents.scoring import (
    DEFAULT_TOLERANCE,
    REFERENCE,
    episode_rows,
    family_board,
    ftq_speedup,
    leaderboard,
    load_map_best,
    paired_bootstrap,
)
from govgym.agents.shield import DEFAULT_K, LEARNED_RULES, SUFFIX
from govgym.efficiency.objective import Objective
from govgym.envs.instances import load_instances
from govgym.results import write_json, write_rows
from govgym.typed import ConfigError, check_range

DEFAULT_POLICIES = ["fixed_budget", "patience", "marginal_gain", "zeus", "memory_reactive", "random"]


@dataclass
class EvalConfig:
    """What to evaluate, where, and how many times."""

    policies: list[str] = field(default_factory=lambda: list(DEFAULT_POLICIES))
    """Policy specs: heuristic names (tuned knobs), 'name:knob=v,...', or agent zips (see agents/policies.py)."""
    split: str = "test"
    """Instance split to evaluate on; learned policies are judged on held-out instances only."""
    seeds: int = 5
    """Episode seeds per instance (0 .. seeds-1)."""
    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, FineTune-v1; configs/instances.yaml is v0's)."""
    knobs: str = ""
    """Tuned heuristic knobs YAML ('' = the packaged one of the instance set's version: configs/heuristics.yaml
    for v0, configs/heuristics_v1.yaml for v1, written by `govgym tune --write`)."""
    workers: int = 2
    """Worker processes (one core each); tasks are (instance, seed) pairs."""
    backend: str = "local"
    """Where the (instance, seed) tasks run: local (this process, or a pool of `workers` processes) | ray
    (one Ray task each: `pip install "govgym[ray]"`; see agents/scaleout.py)."""
    ray_address: str = ""
    """With backend=ray: '' = start a local Ray with `workers` CPUs; else the cluster to use (auto, ray://HEAD:10001)."""
    objective: str = "price"
    """What the governors are judged on (efficiency/objective.py): price (the env's return: gain − λ × compute)
    | equal_quality (the budget fraction saved, −1 when the final eval loss misses the fixed run's by more
    than `tolerance`; the policies see the tolerance as a 21st feature)."""
    tolerance: float = DEFAULT_TOLERANCE
    """FLOPs-to-equal-quality: reached when eval loss <= (1 + tolerance) x the fixed-budget final eval;
    also the equal-quality objective's tolerance."""
    max_instances: int = 0
    """Evaluate only the first N instances of the split (0 = all); for quick looks, not for results."""
    memo: str = "runs/memo"
    """Folder of saved exact step trees shared with `govgym tune` ('' = none): steps any earlier
    invocation ran on the same instance set, code and thread count are not run again."""
    map: str = ""
    """A `govgym map` output folder (its map.json): adds each policy's regret vs the map's best explored
    lever schedule on the same (instance, seed) ('' = none; regret vs the oracle is always there)."""
    shield: bool = True
    """Also evaluate each learned governor (agent) behind the shield (agents/shield.py), labelled
    '<label>+shield', beside it unshielded; false: unshielded only. Hand-written heuristics are never
    shielded; learned_curve (a fitted model) is, like an agent."""
    shield_k: float = DEFAULT_K
    """The shield's k: a stop is vetoed while the last interval gained more than k x lambda per budget fraction."""

    def __post_init__(self) -> None:
        check_harness("evaluate", self)
        Objective(self.objective, self.tolerance if self.objective == "equal_quality" else DEFAULT_TOLERANCE)
        check_range("evaluate.shield_k", self.shield_k, 0.0)
        if not self.policies:
            raise ConfigError(
                "evaluate.policies: empty; name at least one policy, e.g. fixed_budget,patience."
            )


def evaluate(cfg: EvalConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run the harness, print the leaderboard, write CSV/JSON/PNG into ``out``; returns the summary."""

    iset = load_instances(cfg.instances or None)
    names = [i.name for i in iset.split(cfg.split)]
    if cfg.max_instances:
        names = names[: cfg.max_instances]
    packaged = default_knobs_path(iset.env.version)  # tuned on this version's train split
    knobs = cfg.knobs or (str(packaged) if packaged.is_file() else None)
    specs = [parse_spec(p, knobs) for p in cfg.policies]
    if REFERENCE not in [s.label for s in specs]:
        specs.insert(0, parse_spec(REFERENCE))
    specs.sort(key=lambda s: s.label != REFERENCE)  # the reference first: its path is the memo's spine
    if cfg.shield:  # each learned governor with and without the shield, side by side
        learned = [s for s in specs if s.kind == "agent" or s.name in LEARNED_RULES]
        specs += [replace(s, label=s.label + SUFFIX, shield=cfg.shield_k) for s in learned]
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(
            f"evaluate: policy labels must be unique; repeated: {', '.join(dup)}. Name them, e.g. a=runs/a/final.zip."
        )
    t0 = time.perf_counter()
    results = run_tasks(
        cfg.instances,
        cfg.split,
        names,
        list(range(cfg.seeds)),
        specs,
        cfg.workers,
        progress=progress,
        memo=cfg.memo,
        backend=cfg.backend,
        ray_address=cfg.ray_address,
        tolerance=cfg.tolerance if cfg.objective == "equal_quality" else None,
    )
    seconds = time.perf_counter() - t0
    families = {i.name: i.family for i in iset.train + iset.test}
    map_best = load_map_best(cfg.map) if cfg.map else None
    rows = episode_rows(results, cfg.tolerance, families, map_best)
    board = leaderboard(rows)
    score = "eq_return" if cfg.objective == "equal_quality" else "return"
    board.sort(key=lambda r: -r[score])
    fboard = family_board(rows)
    heuristics = [s.label for s in specs if s.kind == "heuristic" and s.name not in ("random",)]
    h_rows = [b for b in board if b["policy"] in heuristics and b["policy"] != REFERENCE]
    best_h = max(h_rows, key=lambda b: b[score])["policy"] if h_rows else REFERENCE
    comparisons = []
    for s in specs:
        if s.label != best_h and s.label != REFERENCE:
            ci = paired_bootstrap(rows, s.label, best_h, score)
            comparisons.append({"policy": s.label, "vs": best_h, "figure": score, **ci})
        if s.kind == "agent":
            vs_h, n_h = ftq_speedup(rows, s.label, best_h)
            vs_f, n_f = ftq_speedup(rows, s.label, REFERENCE)
            comparisons.append(
                {
                    "agent": s.label,
                    "best_heuristic": best_h,
                    "ftq_speedup_vs_best_heuristic": vs_h,
                    "episodes_both_reached_h": n_h,
                    "ftq_speedup_vs_fixed_run_crossing": vs_f,
                    "episodes_both_reached_f": n_f,
                }
            )
    meta = {
        **run_meta(cfg, iset.source, names, seconds, results),
        "best_heuristic": best_h,
        "comparisons": comparisons,
        "specs": [
            {
                "label": s.label,
                "kind": s.kind,
                "name": s.name,
                "knobs": dict(s.knobs),
                "path": s.path,
                "shield": s.shield,
            }
            for s in specs
        ],
    }
    steps = meta["steps"]
    print(format_board(board, cfg.objective))
    print("\nper family:")
    print(format_family_board(fboard))
    spread = (
        "± = spread of per-seed means"
        if cfg.seeds > 1
        else "one seed: no spread (seeds=5 for the full table)"
    )
    print(
        f"\n{len(names)} {cfg.split} instances x {cfg.seeds} seeds; {spread}. "
        f"{steps['real_steps']} real env steps (+{steps['replayed_steps']} replayed), {steps['memo_hits']} shared from the memo; {seconds:.0f} s."
    )
    within = f"within {cfg.tolerance * 100:g}%"  # 0.005 -> "within 0.5%"
    print(f"FLOPs-to-equal-quality: FLOPs at the first eval {within} of the fixed run's final eval loss.")
    print(f"best tuned heuristic by {score}: {best_h}")
    for c in comparisons:
        if "diff" in c:
            if c["pairs"]:
                print(
                    f"{c['policy']} − {best_h} ({score}): {c['diff']:+.4f}, paired bootstrap 95% CI "
                    f"[{c['lo']:+.4f}, {c['hi']:+.4f}] over {c['pairs']} (instance, seed) pairs of {c['instances']} instances"
                )
            continue
        if c["episodes_both_reached_h"]:
            print(
                f"{c['agent']}: FLOPs-to-equal-quality {c['ftq_speedup_vs_best_heuristic']:.2f}x fewer than {best_h} "
                f"({c['episodes_both_reached_h']} episodes both reached the fixed run's final eval loss {within})"
            )
        else:
            print(
                f"{c['agent']}: FLOPs-to-equal-quality not comparable with {best_h}: no episode where both reached the "
                f"fixed run's final eval loss {within}"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out, "leaderboard", board, meta)
    write_rows(out, "leaderboard_families", fboard, meta)
    write_rows(out, "episodes", rows, meta)
    write_json(out / "trajectories.json", results, indent=None)  # strict JSON, as the other result files
    plot_quality_vs_flops(rows, out / "quality_vs_flops.png")
    plot_curves(results, out / "curves.png")
    print(
        f"wrote {out}/leaderboard.csv/json, leaderboard_families.csv/json, episodes.csv/json, trajectories.json, quality_vs_flops.png, curves.png"
    )
    return {"board": board, "rows": rows, "results": results, "meta": meta}


__all__ = [
    "DEFAULT_POLICIES",
    "REFERENCE",
    "EvalConfig",
    "build_policy",
    "check_harness",
    "episode_rows",
    "evaluate",
    "family_board",
    "format_board",
    "format_family_board",
    "ftq_speedup",
    "leaderboard",
    "load_map_best",
    "parse_spec",
    "plot_curves",
    "plot_quality_vs_flops",
    "run_task",
    "run_tasks",
    "task_env",
]
