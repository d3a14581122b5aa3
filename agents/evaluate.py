"""The evaluation harness: every policy x held-out instances x seeds -> leaderboard, CSV/JSON, plots.

    govgym evaluate                                   # tuned heuristics + oracle on the test split, 5 seeds
    govgym evaluate --agent runs/train/final.zip      # ... and a trained agent

Each (instance, seed) is one task: one worker process runs every policy on it through an
``EpisodeTree`` (agents/rollout.py), so policies that share a path share its real steps exactly.
Every number is relative to that (instance, seed)'s fixed-budget run, the run everyone does today:

- ``final_eval_rel`` = the policy's last eval loss / the fixed-budget run's final eval loss;
- ``flops_rel`` = FLOPs the policy used / FLOPs the fixed-budget run used;
- ``ftq_rel`` (FLOPs-to-equal-quality) = FLOPs at the policy's first evaluation within
  ``EvalConfig.tolerance`` (0.5% by default) of the fixed-budget run's final eval loss / the
  fixed-budget run's FLOPs; an episode that never gets there counts in ``reached`` only;
- ``oracle``: the best stop point in hindsight on the fixed-budget run (highest return), so regret
  is visible.

Means are over all (instance, seed) episodes; the ± is the spread (standard deviation) of the
per-seed means, i.e. how much the result moves from one seed to the next.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from govgym.agents.policies import build_policy, default_knobs_path, parse_spec
from govgym.agents.rollout import Episode, EpisodeTree, oracle_episode, run_episode
from govgym.agents.scaleout import check_backend, task_results
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances
from govgym.envs.memo import load_tree, memo_folder, save_tree, worker_threads
from govgym.plots import pyplot
from govgym.results import format_table, write_json, write_rows
from govgym.typed import ConfigError, check_choice, check_range

DEFAULT_POLICIES = ["fixed_budget", "patience", "marginal_gain", "zeus", "memory_reactive", "random"]
REFERENCE = "fixed_budget"


def check_harness(prefix: str, cfg: Any) -> None:
    """The settings every harness over (instance, seed) tasks shares: split, seeds, workers, backend, tolerance, max_instances."""
    check_choice(
        f"{prefix}.split", cfg.split, ("train", "test", "test-a", "test-b", "test-c")
    )  # test-*: FineTune-v2's held-out splits
    check_range(f"{prefix}.seeds", cfg.seeds, 1)
    check_range(f"{prefix}.workers", cfg.workers, 1)
    check_backend(prefix, cfg.backend, cfg.ray_address)
    check_range(f"{prefix}.tolerance", cfg.tolerance, 0.0, 0.5)
    check_range(f"{prefix}.max_instances", cfg.max_instances, 0)


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
    tolerance: float = 0.005
    """FLOPs-to-equal-quality: reached when eval loss <= (1 + tolerance) x the fixed-budget final eval."""
    max_instances: int = 0
    """Evaluate only the first N instances of the split (0 = all); for quick looks, not for results."""
    memo: str = "runs/memo"
    """Folder of saved exact step trees shared with `govgym tune` ('' = none): steps any earlier
    invocation ran on the same instance set, code and thread count are not run again."""
    map: str = ""
    """A `govgym map` output folder (its map.json): adds each policy's regret vs the map's best explored
    lever schedule on the same (instance, seed) ('' = none; regret vs the oracle is always there)."""

    def __post_init__(self) -> None:
        check_harness("evaluate", self)
        if not self.policies:
            raise ConfigError(
                "evaluate.policies: empty; name at least one policy, e.g. fixed_budget,patience."
            )


# ---------------------------------------------------------------------------- running tasks
_ENVS: dict[tuple[str, str], Any] = {}
_AGENTS: dict[str, Any] = {}


def _env(instances: str, split: str) -> Any:

    key = (instances, split)
    if key not in _ENVS:
        _ENVS[key] = FineTuneEnv(instances or None, split=split, wall_time_info=False)
    return _ENVS[key]


def run_task(task: tuple[str, str, str, int, list[Any], str]) -> dict[str, Any]:
    """Run every policy spec on one (instance, seed); returns episode dicts and the tree's step counts."""

    instances, split, inst, seed, specs, memo = task
    t0 = time.perf_counter()
    env = _env(instances, split)
    tree = EpisodeTree(env, inst, seed)
    if memo:
        load_tree(tree, Path(memo))
    episodes = []
    for spec in specs:
        if spec.kind == "agent":  # loaded once per worker process, then reused by every task it runs
            policy = _AGENTS.get(spec.path)
            if policy is None:
                policy = _AGENTS[spec.path] = build_policy(spec, env.action_names)
        else:
            policy = build_policy(spec, env.action_names, seed)
        episodes.append(run_episode(tree, policy, spec.label).to_dict())
    if memo and tree.real_steps:
        save_tree(tree, Path(memo))
    return {
        "instance": inst,
        "episode_seed": seed,
        "episodes": episodes,
        "real_steps": tree.real_steps,
        "replayed_steps": tree.replayed_steps,
        "memo_hits": tree.memo_hits,
        "seconds": time.perf_counter() - t0,
    }


def run_tasks(
    instances: str,
    split: str,
    names: list[str],
    seeds: list[int],
    specs: list[Any],
    workers: int,
    desc: str = "evaluate",
    progress: bool = True,
    memo: str = "",
    task_fn: Any = None,
    backend: str = "local",
    ray_address: str = "",
) -> list[dict[str, Any]]:
    """All (instance, seed) tasks on ``workers`` cores: this process, a spawned pool, or Ray.

    ``memo``: a folder of saved step trees to reuse and extend ('' = none); see ``envs/memo.py``.
    ``task_fn``: what one task runs (default ``run_task``: every policy spec; ``agents.levermap``
    passes its branch search), a module-level function so that spawned workers and Ray can import it.
    ``backend``: 'local' (``workers`` == 1: this process; more: a spawned pool) or 'ray' (one Ray task
    per (instance, seed) on a local Ray with ``workers`` CPUs, or on the cluster at ``ray_address``);
    see ``agents/scaleout.py``. Each task writes only its own (instance, seed)'s tree; results are
    gathered here.
    """
    task_fn = task_fn or run_task
    check_backend("", backend, ray_address)
    dup = sorted({n for n in names if names.count(n) > 1} | {str(s) for s in seeds if seeds.count(s) > 1})
    if dup:  # one task per (instance, seed): two tasks must never write one tree file
        raise ConfigError(f"run_tasks: instances and seeds must be unique; repeated: {', '.join(dup)}.")

    threads = worker_threads(workers)
    if memo:
        memo = str(memo_folder(memo, instances, threads))
    if backend == "ray":  # Ray's worker processes need not share our working directory
        instances = str(Path(instances).resolve()) if instances else instances
        memo = str(Path(memo).resolve()) if memo else memo
    tasks = [(instances, split, n, s, specs, memo) for s in seeds for n in names]
    if workers > 1 or backend == "ray":
        # longest first (by FLOP budget): the last task is a short one, so no core idles long at the end
        iset = load_instances(instances or None)
        budget = {i.name: i.budget_tflops or i.budget_epochs or 0.0 for i in iset.train + iset.test}
        tasks.sort(key=lambda t: -budget.get(t[2], 0.0))
    bar = tqdm(total=len(tasks), desc=desc, unit="task", dynamic_ncols=True, disable=not progress)
    out: list[dict[str, Any]] = []
    with contextlib.closing(task_results(task_fn, tasks, workers, threads, backend, ray_address)) as results:
        for r in results:
            out.append(r)
            bar.update(1)
            bar.set_postfix(
                real_steps=sum(x["real_steps"] for x in out), memo_hits=sum(x["memo_hits"] for x in out)
            )
    bar.close()
    out.sort(key=lambda r: (r["episode_seed"], names.index(r["instance"])))
    return out


# ---------------------------------------------------------------------------- scoring
def load_map_best(folder: str | Path) -> dict[tuple[str, int], float]:
    """{(instance, seed): the best explored return} from a `govgym map` folder's map.json."""
    from govgym.results import read_json_rows

    try:
        rows = read_json_rows(
            Path(folder) / "map.json", "map", ("instance", "episode_seed", "lever", "return")
        )
    except ValueError as err:
        raise ConfigError(f"evaluate.map: {err}") from None
    return {(r["instance"], int(r["episode_seed"])): float(r["return"]) for r in rows if r["lever"] == "all"}


def episode_rows(
    results: list[dict[str, Any]],
    tolerance: float = EvalConfig.tolerance,
    families: dict[str, str] | None = None,
    map_best: dict[tuple[str, int], float] | None = None,
) -> list[dict[str, Any]]:
    """One row per (policy, instance, seed), every figure relative to that task's fixed-budget run.

    ``tolerance``: FLOPs-to-equal-quality counts as reached at eval loss <= (1 + tolerance) x the
    fixed-budget run's final eval loss (``EvalConfig.tolerance``).
    """

    rows = []
    for res in results:
        eps = [Episode(**e) for e in res["episodes"]]
        ref = next((e for e in eps if e.policy == REFERENCE), None)
        if ref is None:
            raise ConfigError(f"evaluate: every task needs the '{REFERENCE}' reference episode.")
        oracle = oracle_episode(ref)
        eps.append(oracle)
        target = ref.final_eval * (1 + tolerance)
        best_map = None if map_best is None else map_best.get((ref.instance, ref.episode_seed), math.nan)
        for e in eps:
            ftq = e.flops_to_reach(target)
            i_best = int(np.argmin(e.evals))
            rows.append(
                {
                    "policy": e.policy,
                    "instance": e.instance,
                    "family": (families or {}).get(e.instance, e.instance.split("-", 1)[0]),
                    "episode_seed": e.episode_seed,
                    "lam": e.lam,
                    "final_eval": e.final_eval,
                    "final_eval_rel": e.final_eval / ref.final_eval,
                    "flops_used": e.flops_used,
                    "flops_rel": e.flops_used / ref.flops_used,
                    "return": e.ret,
                    "ftq_rel": ftq / ref.flops_used if math.isfinite(ftq) else math.nan,
                    "reached": math.isfinite(ftq),
                    "best_eval": float(e.evals[i_best]),
                    "best_eval_rel": float(e.evals[i_best]) / ref.final_eval,
                    "flops_to_best_rel": float(e.flops[i_best]) / ref.flops_used,
                    "regret_oracle": oracle.ret - e.ret,
                    **({} if best_map is None else {"regret_map": best_map - e.ret}),
                    "oom": e.error.startswith("oom"),
                    "crash": bool(e.error) and not e.error.startswith("oom"),
                    "switches": e.count("switch"),
                    "reprunes": e.count("reprune"),
                    "intervals": len(e.actions),
                    "error": e.error,
                }
            )
    return rows


def _mean_spread(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    vals = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
    if not vals:
        return math.nan, math.nan
    by_seed: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if not (isinstance(r[key], float) and math.isnan(r[key])):
            by_seed[r["episode_seed"]].append(float(r[key]))
    seed_means = [float(np.mean(v)) for v in by_seed.values()]
    return float(np.mean(vals)), float(np.std(seed_means)) if len(
        seed_means
    ) > 1 else math.nan  # no spread from one seed


def leaderboard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per policy: mean ± seed spread of each figure; ranked by mean return (the env's objective)."""
    by_policy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_policy[r["policy"]].append(r)
    board = []
    for pol, rs in by_policy.items():
        row: dict[str, Any] = {"policy": pol, "episodes": len(rs)}
        for key in (
            "return",
            "final_eval_rel",
            "flops_rel",
            "ftq_rel",
            "best_eval_rel",
            "flops_to_best_rel",
            "regret_oracle",
            "regret_map",
        ):
            if key not in rs[0]:
                continue
            m, s = _mean_spread(rs, key)
            row[key], row[key + "_spread"] = m, s
        row["reached"] = f"{sum(r['reached'] for r in rs)}/{len(rs)}"
        row["oom"] = sum(r["oom"] for r in rs)
        row["crash"] = sum(r["crash"] for r in rs)
        row["switches_per_ep"] = float(np.mean([r["switches"] for r in rs]))
        row["reprunes_per_ep"] = float(np.mean([r["reprunes"] for r in rs]))
        board.append(row)
    board.sort(key=lambda r: -r["return"])
    return board


def family_board(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (family, policy): mean return, regret vs the oracle and vs the map's best, best eval reached."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["family"], r["policy"])].append(r)
    out = []
    for (fam, pol), rs in sorted(by.items()):
        row: dict[str, Any] = {"family": fam, "policy": pol, "episodes": len(rs)}
        for key in (
            "return",
            "regret_oracle",
            "regret_map",
            "best_eval_rel",
            "flops_to_best_rel",
            "flops_rel",
        ):
            if key in rs[0]:
                row[key], row[key + "_spread"] = _mean_spread(rs, key)
        row["oom"] = sum(r["oom"] for r in rs)
        out.append(row)
    return out


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


def ftq_speedup(rows: list[dict[str, Any]], a: str, b: str) -> tuple[float, int]:
    """Geometric-mean ratio FLOPs-to-equal-quality(b) / (a) over episodes both reached, and their count.

    > 1 means ``a`` reaches the fixed-budget quality with fewer FLOPs than ``b``.
    """
    key = {(r["policy"], r["instance"], r["episode_seed"]): r for r in rows}
    ratios = []
    for (p, inst, seed), r in key.items():
        other = key.get((b, inst, seed))
        if p == a and other is not None and r["reached"] and other["reached"]:
            ratios.append(math.log(other["ftq_rel"] / r["ftq_rel"]))
    return (float(math.exp(np.mean(ratios))) if ratios else math.nan), len(ratios)


def format_board(board: list[dict[str, Any]]) -> str:
    """The leaderboard as a terminal table: '—' where no episode has the figure, no ± from a single seed."""

    def pm(r: dict[str, Any], k: str, fmt: str = ".3f") -> str:
        if math.isnan(r[k]):
            return "—"
        spread = r[k + "_spread"]
        return f"{r[k]:{fmt}}" if math.isnan(spread) else f"{r[k]:{fmt}} ± {spread:{fmt}}"

    table = [
        {
            "policy": r["policy"],
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
        }
        for r in board
    ]
    return format_table(table)


# ---------------------------------------------------------------------------- plots
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- the job
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
    )
    seconds = time.perf_counter() - t0
    families = {i.name: i.family for i in iset.train + iset.test}
    map_best = load_map_best(cfg.map) if cfg.map else None
    rows = episode_rows(results, cfg.tolerance, families, map_best)
    board = leaderboard(rows)
    fboard = family_board(rows)
    heuristics = [s.label for s in specs if s.kind == "heuristic" and s.name not in ("random",)]
    h_rows = [b for b in board if b["policy"] in heuristics]
    best_h = max(h_rows, key=lambda b: b["return"])["policy"] if h_rows else REFERENCE
    comparisons = []
    for s in specs:
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
    steps = {k: sum(r[k] for r in results) for k in ("real_steps", "replayed_steps", "memo_hits")}
    meta = {
        "config": {**cfg.__dict__},
        "instances": iset.source,
        "instance_names": names,
        "seconds": round(seconds, 1),
        "steps": steps,
        "best_heuristic": best_h,
        "comparisons": comparisons,
        "specs": [
            {"label": s.label, "kind": s.kind, "name": s.name, "knobs": dict(s.knobs), "path": s.path}
            for s in specs
        ],
    }
    print(format_board(board))
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
    print(f"best tuned heuristic by return: {best_h}")
    for c in comparisons:
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
    "EvalConfig",
    "episode_rows",
    "evaluate",
    "family_board",
    "ftq_speedup",
    "leaderboard",
    "load_map_best",
    "run_tasks",
]
