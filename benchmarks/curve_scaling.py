"""Does the learned curve governor get better with more training data? (issue 20: what it would take)

    for n in 38 75 150; do for s in 0 1; do govgym fit-curve max_instances=$n seed=$s --out runs/curvescale/n${n}_s$s; done; done
    python benchmarks/curve_scaling.py runs/curvescale/n38_s0 ... configs/curve_v2.json \
        --sets a=configs/instances_v2.yaml:test-a:data/heldout_v2/a/memo ... --out runs/curvescale/report

For each fitted curve model (a folder with ``curve_model.json`` or the file): its price threshold ``tau``
(and ``min_used``) re-tuned on the train corpus's fixed paths over ``govgym tune``'s grid for
``learned_curve``, then the governor (shield on, as deployed) judged on every held-out fixed path: mean
return, regret against the oracle stop, and the paired bootstrap 95% CI (by instance) of its difference
to the tuned marginal-gain rule, per set and pooled. Exact (the same first stops ``govgym evaluate``
finds on these trees; ``benchmarks/predictability.py``), 0 real steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from predictability import first_stops, fixed_paths  # benchmarks/ (the script's folder) is on sys.path

from govgym.agents.curvepred import load_curve_model
from govgym.agents.harness import task_env
from govgym.agents.scoring import paired_bootstrap
from govgym.agents.tune import GRID
from govgym.results import format_table, write_json, write_rows


def model_file(arg: str) -> Path:
    p = Path(arg)
    return p / "curve_model.json" if p.is_dir() else p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="curve model files or fit-curve output folders")
    ap.add_argument(
        "--sets", nargs="+", required=True, help="NAME=INSTANCES:SPLIT:MEMO (held-out fixed paths)"
    )
    ap.add_argument("--train", default="configs/instances_v2.yaml:train:data/corpus_v2/memo")
    ap.add_argument("--knobs", default="configs/heuristics_v2.yaml")
    ap.add_argument("--out", default="runs/curvescale/report")
    args = ap.parse_args()
    t_inst, t_split, t_memo = args.train.split(":")
    names = task_env(t_inst, t_split).action_names
    train = fixed_paths(t_inst, t_split, t_memo)
    sets = {}
    for spec in args.sets:
        name, src = spec.split("=", 1)
        inst, split, memo = src.split(":")
        sets[name] = (fixed_paths(inst, split, memo), task_env(inst, split).action_names)
    rule = {
        n: first_stops(p, ["marginal_gain"], args.knobs, a)["marginal_gain"] for n, (p, a) in sets.items()
    }
    table = []
    for m in args.models:
        path = model_file(m)
        fit = load_curve_model(path).provenance

        def train_return(tau: float, min_used: float, path: Path = path) -> float:
            spec = f"learned_curve:model={path},alpha=0.05,tau={tau},min_used={min_used}"
            got = next(iter(first_stops(train, [spec], args.knobs, names).values()))
            return float(np.mean([r["return"] for r in got]))

        grid = [(t, u) for t in GRID["learned_curve"]["tau"] for u in GRID["learned_curve"]["min_used"]]
        tau, min_used = max(grid, key=lambda k: train_return(*k))  # the first best, in grid order
        spec = f"learned_curve:model={path},alpha=0.05,tau={tau},min_used={min_used}+shield"
        by_set = {}
        for name, (paths, acts) in sets.items():
            got = next(iter(first_stops(paths, [spec], args.knobs, acts).values()))
            by_set[name] = [
                *({**r, "policy": "learned_curve", "instance": f"{name}:{r['instance']}"} for r in got),
                *(
                    {**r, "policy": "marginal_gain", "instance": f"{name}:{r['instance']}"}
                    for r in rule[name]
                ),
            ]
        by_set["pooled"] = [r for rows in by_set.values() for r in rows]
        for name, rows in by_set.items():
            lc = [r for r in rows if r["policy"] == "learned_curve"]
            b = paired_bootstrap(rows, "learned_curve", "marginal_gain")
            table.append(
                {
                    "model": str(m),
                    "train_instances": fit.get("instances"),
                    "oof_r2_v": fit.get("oof_r2_v", float("nan")),
                    "tau": tau,
                    "min_used": min_used,
                    "set": name,
                    "paths": len(lc),
                    "return": float(np.mean([r["return"] for r in lc])),
                    "regret": float(np.mean([r["regret"] for r in lc])),
                    "minus_marginal_gain": b["diff"],
                    "ci_lo": b["lo"],
                    "ci_hi": b["hi"],
                }
            )
        print(format_table([r for r in table if r["model"] == str(m)]), flush=True)
    out = Path(args.out)
    write_rows(out, "curve_scaling", table)
    write_json(out / "curve_scaling.json", {"rows": table, "sets": args.sets, "train": args.train})
    print(format_table([r for r in table if r["set"] == "pooled"]))
    print(f"wrote {out}/curve_scaling.csv/json")


if __name__ == "__main__":
    main()
