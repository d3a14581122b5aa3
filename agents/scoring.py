"""Scoring evaluated episodes: every figure relative to the same (instance, seed)'s fixed-budget run.

- ``final_eval_rel`` = the policy's last eval loss / the fixed-budget run's final eval loss;
- ``flops_rel`` = FLOPs the policy used / FLOPs the fixed-budget run used;
- ``ftq_rel`` (FLOPs-to-equal-quality) = FLOPs at the policy's first evaluation within ``tolerance``
  (0.5% by default) of the fixed-budget run's final eval loss / the fixed-budget run's FLOPs; an
  episode that never gets there counts in ``reached`` only;
- ``violated`` (equal-quality objective, efficiency/objective.py): the final eval loss ends above
  (1 + ``tolerance``) x the fixed run's, or the episode ended in an error; ``eq_return`` = 1 −
  ``flops_rel`` − ``violated`` (the budget fraction saved, −1 for a missed target); both nan where
  the fixed run itself ended in an error (there is no full-budget result to match);
- ``oracle``: the best stop point in hindsight on the fixed-budget run (highest return), so regret is
  visible; ``regret_map``: the best explored lever schedule of a `govgym map` folder minus the return.

Means are over all (instance, seed) episodes; the ± is the spread (standard deviation) of the
per-seed means, i.e. how much the result moves from one seed to the next. Printing and plotting the
tables is ``agents/report.py``'s part.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from govgym.agents.bootstrap import clustered_bootstrap
from govgym.agents.rollout import Episode, oracle_episode
from govgym.efficiency.objective import violated
from govgym.typed import ConfigError

REFERENCE = "fixed_budget"
"""The policy every figure is relative to: the run everyone does today."""
DEFAULT_TOLERANCE = 0.005
"""FLOPs-to-equal-quality counts as reached at eval loss <= (1 + 0.005) x the fixed run's final eval."""


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
    tolerance: float = DEFAULT_TOLERANCE,
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
            # equal quality is defined where the full budget delivers a result: not when the fixed run
            # itself ended in an error (a cap it does not fit); those pairs get nan and are left out
            missed = (
                math.nan if ref.error else float(violated(e.final_eval, ref.final_eval, tolerance, e.error))
            )
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
                    "violated": missed,
                    "eq_return": 1.0 - e.flops_used / ref.flops_used - missed,
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
                    "shield_fired": e.shield_fired,
                    "error": e.error,
                }
            )
    return rows


def mean_spread(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """(mean over the rows with a value, standard deviation of the per-seed means; nan from one seed)."""
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
            "eq_return",
        ):
            if key not in rs[0]:
                continue
            m, s = mean_spread(rs, key)
            row[key], row[key + "_spread"] = m, s
        row["reached"] = f"{sum(r['reached'] for r in rs)}/{len(rs)}"
        judged = [float(r["violated"]) for r in rs if not math.isnan(float(r["violated"]))]
        row["violation_rate"] = float(np.mean(judged)) if judged else math.nan
        row["eq_judged"] = len(judged)
        row["oom"] = sum(r["oom"] for r in rs)
        row["crash"] = sum(r["crash"] for r in rs)
        row["switches_per_ep"] = float(np.mean([r["switches"] for r in rs]))
        row["reprunes_per_ep"] = float(np.mean([r["reprunes"] for r in rs]))
        row["shield_fired"] = sum(r.get("shield_fired", 0) for r in rs)  # vetoed stops, all episodes
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
                row[key], row[key + "_spread"] = mean_spread(rs, key)
        row["oom"] = sum(r["oom"] for r in rs)
        out.append(row)
    return out


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


def paired_bootstrap(
    rows: list[dict[str, Any]],
    a: str,
    b: str,
    key: str = "return",
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Mean of ``key``(a) − ``key``(b) over the (instance, seed) pairs both ran, with a paired bootstrap CI.

    Pairs are resampled by instance (``agents.bootstrap.clustered_bootstrap``): an instance's seeds move
    together, so the interval does not pretend they are independent draws of the world. Returns
    ``{"diff", "lo", "hi", "pairs", "instances"}`` (nan when no pair exists).
    """
    by = {(r["policy"], r["instance"], r["episode_seed"]): r for r in rows}
    diffs: dict[str, list[float]] = defaultdict(list)
    for (p, inst, s), r in by.items():
        other = by.get((b, inst, s))
        if p == a and other is not None:
            diffs[inst].append(float(r[key]) - float(other[key]))
    ci = clustered_bootstrap(diffs, resamples=n_boot, level=level, seed=seed)
    return {"diff": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "pairs": ci["n"], "instances": ci["clusters"]}


__all__ = [
    "DEFAULT_TOLERANCE",
    "REFERENCE",
    "episode_rows",
    "family_board",
    "ftq_speedup",
    "leaderboard",
    "load_map_best",
    "mean_spread",
    "paired_bootstrap",
]
