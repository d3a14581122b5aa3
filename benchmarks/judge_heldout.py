"""Issue 20's judgement on FineTune-v2's held-out splits, from `govgym evaluate` and `govgym dataset headroom`.

    python benchmarks/judge_heldout.py SPLIT=EVAL_PRICE,EVAL_EQ,HEADROOM ... --out runs/judge_v2

e.g. ``a=runs/eval_v2_a,runs/eq_v2_a,runs/headroom_v2_a``. Per split, from the evaluations' episode rows
(every policy on the same (instance, seed) trees):

- price objective: mean return; the paired bootstrap 95% CI of each policy minus the best tuned heuristic
  (clustered by instance, as ``govgym evaluate`` computes it); regret against the best explored
  schedule (the best return of any episode of the unit: the headroom's ``explored``, the oracle stop, and
  every evaluated policy), and each policy's regret over the best heuristic's;
- equal-quality objective (the evaluation's tolerance): compute reduction (the fixed runs' FLOPs summed over
  the judged pairs / the policy's), mean FLOPs fraction, violation rate, and the bound a stop-only governor
  cannot pass: the fixed path's own FLOPs to reach the tolerance (the oracle stop at equal quality);
- both per family and per task (taken from the instance name: ``<split>-<n>-<family>-<task>-<base>``).

Writes ``judge.json`` and ``price.csv`` / ``equal_quality.csv`` beside the printed tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from govgym.agents.scoring import paired_bootstrap
from govgym.results import format_table

HEURISTICS = (
    "patience",
    "marginal_gain",
    "zeus",
    "memory_reactive",
    "early_stopping",
    "curve_extrapolation",
)


def _rows(folder: Path) -> tuple[list[dict], dict]:
    data = json.loads((folder / "episodes.json").read_text())
    rows = [
        {k: (math.nan if v is None else v) for k, v in r.items()} for r in data["rows"]
    ]  # nan is null in JSON
    return rows, data["meta"]


def _task(instance: str) -> str:
    parts = instance.split("-", 4)
    return parts[3] if len(parts) > 3 else "?"


def _units(rows: list[dict]) -> dict:
    by_unit: dict = defaultdict(dict)
    for r in rows:
        by_unit[(r["instance"], int(r["episode_seed"]))][r["policy"]] = r
    return by_unit


def price_table(rows: list[dict], explored: dict, policies: list[str]) -> tuple[list[dict], str]:
    by_unit = _units(rows)
    policies = [p for p in policies if any(p in u for u in by_unit.values())]
    best_of = {}
    for u, p in by_unit.items():
        vals = [r["return"] for r in p.values() if math.isfinite(r["return"])]
        if u in explored:
            vals.append(explored[u])
        best_of[u] = max(vals)
    heur = [h for h in HEURISTICS if any(h in p for p in by_unit.values())]
    mean = {p: np.mean([by_unit[u][p]["return"] for u in by_unit if p in by_unit[u]]) for p in policies}
    best_h = max(heur, key=lambda h: mean[h])
    reg_h = np.mean([best_of[u] - by_unit[u][best_h]["return"] for u in by_unit if best_h in by_unit[u]])
    table = []
    for p in policies:
        units = [u for u in by_unit if p in by_unit[u]]
        regret = float(np.mean([best_of[u] - by_unit[u][p]["return"] for u in units]))
        ci = paired_bootstrap(rows, p, best_h, "return") if p != best_h else {}
        table.append(
            {
                "policy": p,
                "episodes": len(units),
                "return": float(mean[p]),
                "vs_best_h": ci.get("diff", 0.0),
                "ci_lo": ci.get("lo", 0.0),
                "ci_hi": ci.get("hi", 0.0),
                "regret_explored": regret,
                "regret_vs_best_h": regret / reg_h if reg_h > 0 else math.nan,
            }
        )
    return table, best_h


def eq_table(rows: list[dict], policies: list[str]) -> list[dict]:
    by_unit = _units(rows)
    judged = [
        u for u, p in by_unit.items() if "fixed_budget" in p and math.isfinite(p["fixed_budget"]["violated"])
    ]
    ftq = [by_unit[u]["fixed_budget"]["ftq_rel"] for u in judged]
    table = [
        {
            "policy": "oracle stop (fixed path's FLOPs to reach the tolerance)",
            "judged": len(judged),
            "flops_frac": float(np.nanmean(ftq)),
            "reduction": 1.0 / float(np.nanmean(ftq)),
            "violation_rate": 0.0,
            "eq_return": float(np.nanmean([1 - f for f in ftq])),
        }
    ]
    for p in policies:
        us = [u for u in judged if p in by_unit[u]]
        if not us:
            continue
        used = sum(by_unit[u][p]["flops_used"] for u in us)
        ref = sum(by_unit[u]["fixed_budget"]["flops_used"] for u in us)
        table.append(
            {
                "policy": p,
                "judged": len(us),
                "flops_frac": float(np.mean([by_unit[u][p]["flops_rel"] for u in us])),
                "reduction": ref / used if used else math.inf,
                "violation_rate": float(np.mean([by_unit[u][p]["violated"] for u in us])),
                "eq_return": float(np.mean([by_unit[u][p]["eq_return"] for u in us])),
            }
        )
    return table


def _group(rows: list[dict], key) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return out


def main() -> None:
    import warnings

    warnings.simplefilter(
        "ignore", RuntimeWarning
    )  # nanmean of a group with no judged pair: nan, said in the table
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("splits", nargs="+", help="SPLIT=EVAL_PRICE,EVAL_EQ,HEADROOM")
    ap.add_argument("--out", default="runs/judge_v2")
    ap.add_argument(
        "--first",
        type=int,
        default=0,
        help="judge only instances whose index (<split>-<n>-...) is at least this: a confirmation set collected after the judgement",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    price_csv, eq_csv = [], []
    loaded = []
    for spec in args.splits:
        split, folders = spec.split("=", 1)
        f_price, f_eq, f_head = (Path(x) for x in folders.split(","))
        rows_p, _ = _rows(f_price)
        rows_e, meta_e = _rows(f_eq)
        keep = lambda r: int(r["instance"].split("-")[1]) >= args.first  # noqa: E731
        rows_p, rows_e = [r for r in rows_p if keep(r)], [r for r in rows_e if keep(r)]
        head = json.loads((f_head / "headroom.json").read_text())
        explored = {}
        for r in head["rows"]:
            inst, seed = r["unit"].rsplit("-", 1)
            explored[(inst, int(seed))] = r["explored"]
        loaded.append((split, rows_p, rows_e, meta_e, explored))
    if len(loaded) > 1:  # every split pooled: instances differ, pairs stay within an (instance, seed)
        pooled = {}
        for _, _, _, _, ex in loaded:
            pooled.update(ex)
        loaded.append(
            (
                "pooled",
                [r for x in loaded for r in x[1]],
                [r for x in loaded for r in x[2]],
                loaded[0][3],
                pooled,
            )
        )
    for split, rows_p, rows_e, meta_e, explored in loaded:
        policies = sorted({r["policy"] for r in rows_p} - {"oracle"})
        entry: dict = {}
        for scope, key in (
            ("all", lambda r: "all"),
            ("family", lambda r: r["family"]),
            ("task", lambda r: _task(r["instance"])),
        ):
            for name, grp in sorted(_group(rows_p, key).items()):
                table, best_h = price_table(grp, explored, policies)
                entry.setdefault("price", {})[f"{scope}:{name}"] = {"best_heuristic": best_h, "table": table}
                price_csv += [
                    {"split": split, "scope": scope, "group": name, "best_h": best_h, **t} for t in table
                ]
                if scope == "all":
                    print(
                        f"\n=== split {split}: price objective (return; CI vs the best tuned heuristic {best_h}) ==="
                    )
                    print(format_table(table))
            eq_pol = sorted({r["policy"] for r in rows_e} - {"oracle"})
            for name, grp in sorted(_group(rows_e, key).items()):
                table = eq_table(grp, eq_pol)
                entry.setdefault("equal_quality", {})[f"{scope}:{name}"] = table
                eq_csv += [{"split": split, "scope": scope, "group": name, **t} for t in table]
                if scope == "all":
                    print(
                        f"\n=== split {split}: equal quality (tolerance {meta_e.get('config', {}).get('tolerance')}) ==="
                    )
                    print(format_table(table))
        report[split] = entry
    (out / "judge.json").write_text(json.dumps(report, indent=1, default=float))
    for name, rows in (("price", price_csv), ("equal_quality", eq_csv)):
        with open(out / f"{name}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print(f"\nwrote {out}/judge.json, price.csv, equal_quality.csv")


if __name__ == "__main__":
    main()
