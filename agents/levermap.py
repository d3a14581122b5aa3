"""The lever map: what stopping, repruning and switching are each worth, alone and together, per instance.

    govgym map                              # FineTune-v1 held-out split, 3 seeds, branch point 0.3 (CSV/JSON/PNG in runs/map)
    govgym map seeds=1 max_instances=2      # a quick look
    govgym map points=[0.3,0.6]             # a wider search (more branches, more real steps)

For every (instance, seed) of the split, a small stated search over *explored* branches of the real
env, through the exact step memo (``EpisodeTree``: branches share their prefixes, and steps another
invocation of ``map``/``evaluate``/``tune`` ran are not run again):

- **fixed**: continue until the budget is spent (what everyone runs today);
- **best stop**: the highest-return prefix of the fixed run (the leaderboard's oracle);
- **reprune**: at each branch point p (decision index ``round(f × L)`` for f in ``points``, L = the fixed
  run's number of intervals), one drop-hardest and one drop-easiest reprune, and at the first point two
  drop-hardest in a row (to reach 30-50% noise); then continue to the end;
- **switch**: at each branch point, each switch the action mask allows there; then continue;
- **reprune+switch**: the best reprune schedule and the best switch schedule in one run (the later of
  two actions due at the same point moves one interval on);
- **all**: the best of every branch above (and of best stop): what the levers are worth together.

Every branch is scored at its own best stop (the highest-return prefix), so each lever row answers
"lever, then the best stop". Rows are relative to the (instance, seed)'s fixed run and its best stop:
return, final eval loss and FLOPs, FLOPs-to-equal-quality (FLOPs at the first eval within
``tolerance`` of the fixed run's final eval / the fixed run's FLOPs), and ``eval_within_stop_flops``:
the lowest eval loss the branch reached within the best stop's FLOPs (below the best stop's eval:
better quality at no more compute).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym.agents.harness import check_harness, run_meta, run_tasks, task_env
from govgym.agents.rollout import Episode, EpisodeTree, oracle_episode, run_episode
from govgym.envs.instances import load_instances
from govgym.envs.memo import load_tree, save_tree
from govgym.plots import pyplot, save_figure
from govgym.results import write_json, write_rows
from govgym.typed import ConfigError, check_range

LEVERS = ("fixed", "best_stop", "reprune", "switch", "reprune+switch", "all")


@dataclass
class MapConfig:
    """What ``govgym map`` searches, on which instances and seeds."""

    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, govgym/FineTune-v1)."""
    split: str = "test"
    """Instance split to map (the held-out one by default)."""
    seeds: int = 3
    """Episode seeds per instance (0 .. seeds-1)."""
    points: list[float] = field(default_factory=lambda: [0.3])
    """Branch points as fractions of the fixed run's intervals (each a decision index round(f × L), >= 1).
    The default 0.3 falls after the first epoch of a 2.5-epoch budget and before a co-located job that
    arrives at 0.4-0.5 of it; more points search more (each adds ~4 branches per (instance, seed))."""
    workers: int = 2
    """Worker processes (one core each); tasks are (instance, seed) pairs."""
    backend: str = "local"
    """Where the (instance, seed) tasks run: local (this process, or a pool of `workers` processes) | ray
    (one Ray task each: `pip install "govgym[ray]"`; see agents/scaleout.py)."""
    ray_address: str = ""
    """With backend=ray: '' = start a local Ray with `workers` CPUs; else the cluster to use (auto, ray://HEAD:10001)."""
    tolerance: float = 0.005
    """FLOPs-to-equal-quality: reached at eval loss <= (1 + tolerance) x the fixed run's final eval."""
    max_instances: int = 0
    """Map only the first N instances of the split (0 = all); for quick looks, not for results."""
    memo: str = "runs/memo"
    """Folder of saved exact step trees shared with `govgym evaluate`/`tune` ('' = none)."""

    def __post_init__(self) -> None:
        check_harness("map", self)
        if not self.points:
            raise ConfigError("map.points: empty; give at least one branch point, e.g. [0.25, 0.5].")
        for i, f in enumerate(self.points):
            check_range(f"map.points[{i}]", f, 0.0, 1.0, lo_open=True)


class ScriptPolicy:
    """Plays ``script`` ({decision index: action}) and continues everywhere else (SB3's predict shapes)."""

    def __init__(self, script: dict[int, int]):
        self.script, self.t = dict(script), 0

    def predict(
        self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True, **_
    ):
        if episode_start is not None and bool(np.asarray(episode_start).reshape(-1)[0]):
            self.t = 0
        a = self.script.get(self.t, 0)
        self.t += 1
        return np.array([a]), state


def _mask_after(tree: EpisodeTree, prefix: tuple[int, ...]) -> np.ndarray:
    node = tree.root()
    for i, a in enumerate(prefix):
        node = tree.step(prefix[:i], a)
        if node.terminated or node.truncated:
            return np.zeros_like(node.mask)
    return node.mask


def _merge(first: dict[int, int], second: dict[int, int]) -> dict[int, int]:
    out = dict(first)
    for p, a in sorted(second.items()):
        while p in out:
            p += 1
        out[p] = a
    return out


def map_task(task: tuple[str, str, str, int, dict[str, Any], str]) -> dict[str, Any]:
    """The branch search of one (instance, seed); returns every explored episode by lever."""
    instances, split, inst, seed, opts, memo = task
    t0 = time.perf_counter()
    env = task_env(instances, split)
    tree = EpisodeTree(env, inst, seed)
    if memo:
        load_tree(tree, Path(memo))
    names = env.action_names

    def play(script: dict[int, int], label: str) -> Episode:
        ep = run_episode(tree, ScriptPolicy(script), label)
        ep.script = {int(k): names[v] for k, v in script.items()}  # type: ignore[attr-defined]
        return ep

    fixed = play({}, "fixed")
    n = len(fixed.actions)
    points = sorted({min(max(1, round(f * n)), max(n - 1, 1)) for f in opts["points"]})
    branches: dict[str, list[tuple[dict[int, int], Episode]]] = defaultdict(list)
    for p in points:
        if p >= n:
            continue
        mask = _mask_after(tree, (0,) * p)
        for a, name in enumerate(names):
            if not mask[a] or name in ("continue", "stop"):
                continue
            lever = "reprune" if name.startswith("reprune") else "switch"
            scripts = [{p: a}]
            if name == "reprune_hardest" and p == points[0] and p + 1 < n:
                scripts.append({p: a, p + 1: a})
            for sc in scripts:
                branches[lever].append((sc, play(sc, f"{lever}@{p}")))

    def best(cands: list[tuple[dict[int, int], Episode]]) -> tuple[dict[int, int], Episode, Episode] | None:
        """(script, whole branch, the branch at its best stop) of the highest best-stop return."""
        scored = [(sc, ep, oracle_episode(ep)) for sc, ep in cands]
        return max(scored, key=lambda x: x[2].ret) if scored else None

    best_r, best_s = best(branches["reprune"]), best(branches["switch"])
    if best_r and best_s:
        sc = _merge(best_r[0], best_s[0])
        branches["reprune+switch"].append((sc, play(sc, "reprune+switch")))
    stop = oracle_episode(fixed)
    chosen: dict[str, tuple[dict[int, int], Episode, Episode]] = {
        "fixed": ({}, fixed, fixed),
        "best_stop": ({}, fixed, stop),
    }
    for lever, b in (
        ("reprune", best_r),
        ("switch", best_s),
        ("reprune+switch", best(branches["reprune+switch"])),
    ):
        if b is not None:
            chosen[lever] = b
    every = [(k, v) for k, v in chosen.items() if k != "fixed"]
    k_all, v_all = max(every, key=lambda kv: kv[1][2].ret)
    chosen["all"] = v_all
    out = {}
    for lever, (sc, full, ep) in chosen.items():
        stopped = ep.to_dict()
        stopped["policy"] = lever
        stopped["script"] = {str(k): names[v] for k, v in sc.items()}
        stopped["branch"] = {
            "actions": full.actions,
            "evals": full.evals,
            "flops": full.flops,
            "error": full.error,
        }
        # did its best stop come after the lever's first action? (if not, the lever bought nothing)
        stopped["lever_used"] = bool(sc) and len(ep.actions) - 1 > min(sc)
        stopped["from"] = k_all if lever == "all" else lever
        out[lever] = stopped
    if memo and tree.new_nodes:
        save_tree(tree, Path(memo))
    return {
        "instance": inst,
        "episode_seed": seed,
        "intervals": n,
        "points": points,
        "branches": {k: len(v) for k, v in branches.items()},
        "levers": out,
        "real_steps": tree.real_steps,
        "replayed_steps": tree.replayed_steps,
        "memo_hits": tree.memo_hits,
        "seconds": time.perf_counter() - t0,
    }


def map_rows(
    results: list[dict[str, Any]], families: dict[str, str], tolerance: float
) -> list[dict[str, Any]]:
    """One row per (instance, seed, lever), relative to the fixed run and to the best stop."""
    rows = []
    for res in results:
        lv = {
            k: Episode(**{f: v for f, v in d.items() if f in Episode.__dataclass_fields__})
            for k, d in res["levers"].items()
        }
        fixed, stop = lv["fixed"], lv["best_stop"]
        target = fixed.final_eval * (1 + tolerance)
        for lever, ep in lv.items():
            d = res["levers"][lever]
            branch = d["branch"]
            within = [
                e for e, f in zip(branch["evals"], branch["flops"]) if f <= stop.flops_used * (1 + 1e-9)
            ]
            ftq = ep.flops_to_reach(target)
            rows.append(
                {
                    "instance": res["instance"],
                    "family": families.get(res["instance"], ""),
                    "episode_seed": res["episode_seed"],
                    "lever": lever,
                    "from": d["from"],
                    "script": " ".join(f"{k}:{v}" for k, v in d["script"].items()),
                    "lever_used": d["lever_used"],
                    "return": ep.ret,
                    "return_vs_stop": ep.ret - stop.ret,
                    "final_eval": ep.final_eval,
                    "final_eval_rel": ep.final_eval / fixed.final_eval,
                    "eval_vs_stop": ep.final_eval / stop.final_eval - 1,
                    "flops_used": ep.flops_used,
                    "flops_rel": ep.flops_used / fixed.flops_used,
                    "flops_vs_stop": ep.flops_used / max(stop.flops_used, 1.0),
                    "ftq_rel": ftq / fixed.flops_used if math.isfinite(ftq) else math.nan,
                    "eval_within_stop_flops": min(within) if within else math.nan,
                    "fixed_error": fixed.error,
                    "error": branch["error"],
                }
            )
    return rows


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else math.nan


def summarize(rows: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Per family and lever: means over instances and seeds; the issue's goals, counted per instance."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["family"], r["lever"])].append(r)
        by[("all families", r["lever"])].append(r)
    table = []
    for (fam, lever), rs in sorted(
        by.items(), key=lambda kv: (kv[0][0] == "all families", kv[0][0], LEVERS.index(kv[0][1]))
    ):
        seeds = defaultdict(list)
        for r in rs:
            seeds[r["episode_seed"]].append(r["return_vs_stop"])
        per_seed = [np.mean(v) for v in seeds.values()]
        table.append(
            {
                "family": fam,
                "lever": lever,
                "episodes": len(rs),
                "return": _mean([r["return"] for r in rs]),
                "return_vs_stop": _mean([r["return_vs_stop"] for r in rs]),
                "return_vs_stop_spread": float(np.std(per_seed)) if len(per_seed) > 1 else math.nan,
                "eval_vs_stop_pct": 100 * _mean([r["eval_vs_stop"] for r in rs]),
                "flops_vs_stop": _mean([r["flops_vs_stop"] for r in rs]),
                "final_eval_rel": _mean([r["final_eval_rel"] for r in rs]),
                "flops_rel": _mean([r["flops_rel"] for r in rs]),
                "ftq_rel": _mean([r["ftq_rel"] for r in rs]),
                "reached": sum(math.isfinite(r["ftq_rel"]) for r in rs),
            }
        )
    # goals, per instance (mean over its seeds)
    inst: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        inst[r["instance"]][r["lever"]].append(r)
    beats, better_cheaper, interaction = [], [], []
    for name, lv in inst.items():
        gain_all = _mean([r["return_vs_stop"] for r in lv["all"]])
        if gain_all > 1e-4:
            beats.append(name)
        stop_eval = {r["episode_seed"]: r["final_eval"] for r in lv["best_stop"]}
        if any(
            r["lever"] != "best_stop"
            and r["eval_within_stop_flops"] < stop_eval[r["episode_seed"]] * (1 - 1e-4)
            for lever in ("reprune", "switch", "reprune+switch")
            for r in lv.get(lever, [])
        ):
            better_cheaper.append(name)
        if lv.get("reprune+switch"):
            g = {
                k: _mean([r["return_vs_stop"] for r in lv[k]])
                for k in ("reprune", "switch", "reprune+switch")
            }
            interaction.append({"instance": name, **g, "sum_of_each": g["reprune"] + g["switch"]})
    overfit = []
    for name, lv in inst.items():
        if lv["fixed"] and lv["fixed"][0]["family"] == "overfit":
            for f, s in zip(lv["fixed"], lv["best_stop"]):
                # the fixed budget spends all of its FLOPs; the best stop reached equal quality when the
                # fixed run's final eval is not better than the stop's by more than the tolerance
                overfit.append(
                    {
                        "instance": name,
                        "episode_seed": f["episode_seed"],
                        "fixed_over_stop_flops": f["flops_used"] / max(s["flops_used"], 1.0),
                        "fixed_final_vs_stop_pct": 100 * (f["final_eval"] / s["final_eval"] - 1),
                        "stop_equal_quality": bool(f["final_eval"] >= s["final_eval"] * (1 - tolerance)),
                    }
                )
    n = len(inst)
    return {
        "table": table,
        "instances": n,
        "beats_best_stop": beats,
        "beats_fraction": len(beats) / n if n else math.nan,
        "better_eval_within_stop_flops": better_cheaper,
        "interaction": interaction,
        "overfit_fixed_over_stop": overfit,
        "overfit_ratio_mean": _mean([o["fixed_over_stop_flops"] for o in overfit]),
    }


def format_map(summary: dict[str, Any]) -> str:
    head = f"{'family':13s} {'lever':15s} {'n':>3s} {'return':>7s} {'vs stop':>16s} {'eval vs stop':>12s} {'FLOPs/stop':>10s} {'FLOPs/fixed':>11s} {'FTQ/fixed':>9s}"
    lines = [head, "-" * len(head)]
    for r in summary["table"]:
        spread = "" if math.isnan(r["return_vs_stop_spread"]) else f" ± {r['return_vs_stop_spread']:.4f}"
        lines.append(
            f"{r['family']:13s} {r['lever']:15s} {r['episodes']:3d} {r['return']:7.3f} "
            f"{r['return_vs_stop']:+8.4f}{spread:>8s} {r['eval_vs_stop_pct']:+11.2f}% {r['flops_vs_stop']:10.2f} "
            f"{r['flops_rel']:11.2f} {r['ftq_rel']:9.2f}"
        )
    return "\n".join(lines)


def plot_map(summary: dict[str, Any], path: Path) -> Path:
    """Per family: each lever's eval loss vs the best stop (%) against its FLOPs vs the best stop."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    marks = {"fixed": "s", "reprune": "v", "switch": "^", "reprune+switch": "D", "all": "*"}
    fams = sorted({r["family"] for r in summary["table"] if r["family"] != "all families"})
    colors = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(fams)}
    for r in summary["table"]:
        if r["family"] == "all families" or r["lever"] not in marks:
            continue
        ax.scatter(
            r["flops_vs_stop"],
            r["eval_vs_stop_pct"],
            marker=marks[r["lever"]],
            color=colors[r["family"]],
            s=70,
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(1, color="grey", lw=0.8)
    for f in fams:
        ax.scatter([], [], color=colors[f], label=f)
    for lever, m in marks.items():
        ax.scatter([], [], marker=m, color="k", label=lever)
    ax.set_xlabel("FLOPs / best stop's FLOPs")
    ax.set_ylabel("final eval loss vs best stop (%)  (below 0: better)")
    ax.set_title("The lever map: each lever's best explored schedule vs the best stop")
    ax.legend(fontsize=8, ncol=2)
    save_figure(fig, path, dpi=120)
    return path


def lever_map(cfg: MapConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run the search, print the map, write map.csv/json, map_summary.json and map.png into ``out``."""
    from govgym.envs.instances import default_instances_path

    instances = cfg.instances or str(default_instances_path(1))
    iset = load_instances(instances)
    names = [i.name for i in iset.split(cfg.split)]
    if cfg.max_instances:
        names = names[: cfg.max_instances]
    families = {i.name: i.family for i in iset.train + iset.test}
    t0 = time.perf_counter()
    results = run_tasks(
        instances,
        cfg.split,
        names,
        list(range(cfg.seeds)),
        {"points": list(cfg.points)},  # type: ignore[arg-type]
        cfg.workers,
        desc="map",
        progress=progress,
        memo=cfg.memo,
        task_fn=map_task,
        backend=cfg.backend,
        ray_address=cfg.ray_address,
    )
    seconds = time.perf_counter() - t0
    rows = map_rows(results, families, cfg.tolerance)
    summary = summarize(rows, cfg.tolerance)
    meta = {
        **run_meta(cfg, iset.source, names, seconds, results),
        "branches": sum(sum(r["branches"].values()) for r in results),
    }
    steps = meta["steps"]
    print(format_map(summary))
    n = summary["instances"]
    print(
        f"\n{n} {cfg.split} instances x {cfg.seeds} seeds; branch points {list(cfg.points)} of each fixed run; "
        f"{meta['branches']} branches; {steps['real_steps']} real env steps (+{steps['replayed_steps']} replayed), "
        f"{steps['memo_hits']} from the memo; {seconds:.0f} s."
    )
    tolerance = cfg.tolerance
    print(
        f"levers beat the best stop (mean return over seeds, > 1e-4) on {len(summary['beats_best_stop'])}/{n} "
        f"instances; lower eval loss within the best stop's FLOPs on {len(summary['better_eval_within_stop_flops'])}/{n}."
    )
    if summary["overfit_fixed_over_stop"]:
        eq = [o for o in summary["overfit_fixed_over_stop"] if o["stop_equal_quality"]]
        print(
            f"overfit family: the fixed budget spends {summary['overfit_ratio_mean']:.2f}x the best stop's FLOPs "
            f"(mean); its final eval loss is no better than the best stop's (within {100 * tolerance:g}%) on "
            f"{len(eq)}/{len(summary['overfit_fixed_over_stop'])} episodes (mean fixed vs stop "
            f"{_mean([o['fixed_final_vs_stop_pct'] for o in summary['overfit_fixed_over_stop']]):+.2f}%)."
        )
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out, "map", rows, meta)
    write_rows(out, "map_families", summary["table"], meta)
    write_json(out / "map_summary.json", {**summary, "meta": meta})
    write_json(out / "map_episodes.json", results, indent=None)
    plot_map(summary, out / "map.png")
    print(f"wrote {out}/map.csv/json, map_families.csv/json, map_summary.json, map_episodes.json, map.png")
    return {"rows": rows, "summary": summary, "results": results, "meta": meta}


__all__ = ["LEVERS", "MapConfig", "ScriptPolicy", "lever_map", "map_rows", "map_task", "summarize"]
