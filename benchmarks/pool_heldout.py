"""Every held-out set pooled: each policy minus a reference rule, paired bootstrap 95% CI by instance.

    python benchmarks/pool_heldout.py runs/mseeds/all_a runs/mseeds/all_b runs/mseeds/all_c runs/mseeds/b2 \
        --reference marginal_gain

Reads the ``episodes.csv`` of ``govgym evaluate`` outputs (price objective), keys each instance by its
folder (the b2 set reuses the ``hob-`` names of split (b) with other draws), and prints the mean return
difference of every policy to ``--reference`` over the (instance, seed) pairs both ran, resampling instances
(``agents.scoring.paired_bootstrap``) at ``--level``. Writes ``--out`` (CSV + JSON) when given.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from govgym.agents.scoring import paired_bootstrap
from govgym.results import format_table, write_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("evals", nargs="+", help="govgym evaluate output folders (each with episodes.csv)")
    ap.add_argument("--reference", default="marginal_gain")
    ap.add_argument(
        "--level",
        type=float,
        default=0.95,
        help="interval coverage (e.g. 0.99 = 1 - 0.05/5: Bonferroni over 5 secondary comparisons)",
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    rows = []
    for d in args.evals:
        for r in csv.DictReader(open(Path(d) / "episodes.csv", encoding="utf-8")):
            r["instance"] = f"{Path(d).name}:{r['instance']}"
            r["episode_seed"] = int(r["episode_seed"])
            rows.append(r)
    table = []
    for p in sorted({r["policy"] for r in rows} - {args.reference, "fixed_budget"}):
        b = paired_bootstrap(rows, p, args.reference, level=args.level)
        table.append(
            {
                "policy": p,
                f"minus_{args.reference}": b["diff"],
                "ci_lo": b["lo"],
                "ci_hi": b["hi"],
                "pairs": b["pairs"],
                "instances": b["instances"],
            }
        )
    table.sort(key=lambda r: -r[f"minus_{args.reference}"])
    print(format_table(table))
    if args.out:
        write_rows(Path(args.out), "pooled", table)
        print(f"wrote {args.out}/pooled.csv/json")


if __name__ == "__main__":
    main()
