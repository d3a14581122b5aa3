"""CLI jobs of the generated world (issue 18): generate an instance set, collect its corpus, export it.

    govgym instances generate --config configs/world_v2.yaml --out configs/instances_v2.yaml [seed=1 ...]
    govgym collect-world out=/work/corpus_v2 workers=2 [--no-progress]
    govgym dataset export corpus=/work/corpus_v2 --out runs/dataset [minari=true parquet=true]

Each parses its own arguments (same style as every subcommand: ``key=value`` settings, flags only for
files and process behaviour) and reports a user error as one sentence with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from govgym.cli import interleaved
from govgym.errors import USER_ERRORS
from govgym.typed import from_dict, keys_help, parse_overrides

COMMANDS = ("instances", "collect-world", "dataset")
"""First words of the command lines handled here (``govgym <word> ...``)."""


def _parser() -> argparse.ArgumentParser:
    from govgym.agents.collection import CollectWorldConfig
    from govgym.agents.dataset import ExportConfig
    from govgym.agents.headroom import HeadroomConfig

    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="govgym", description=__doc__, formatter_class=fmt)
    sub = ap.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("instances", help="generated instance sets").add_subparsers(
        dest="action", required=True
    )
    gen = inst.add_parser(
        "generate",
        help="a declared distribution (YAML) -> a seeded, validated instance set",
        description="Draw the instance set of a world spec (configs/world_v2.yaml); unrunnable draws are redrawn.",
        epilog="key=value: any field of the world spec (e.g. seed=1 train.count=40)",
        formatter_class=fmt,
    )
    gen.add_argument(
        "--config", default="", help="world spec YAML (default: the packaged configs/world_v2.yaml)"
    )
    gen.add_argument("--out", default="configs/instances_v2.yaml", help="the instance-set YAML to write")
    gen.add_argument("overrides", nargs="*", metavar="key=value")
    col = sub.add_parser(
        "collect-world",
        help="the corpus of real runs over a generated set's train split (resumable)",
        epilog=f"config keys (key=value; defaults shown):\n{keys_help(CollectWorldConfig)}",
        formatter_class=fmt,
    )
    col.add_argument("--no-progress", action="store_true", help="no progress bar")
    col.add_argument("overrides", nargs="*", metavar="key=value")
    ds = sub.add_parser("dataset", help="the corpus as a dataset").add_subparsers(
        dest="action", required=True
    )
    exp = ds.add_parser(
        "export",
        help="Minari dataset + Parquet + dataset card from a collected corpus",
        epilog=f"config keys (key=value; defaults shown):\n{keys_help(ExportConfig)}",
        formatter_class=fmt,
    )
    exp.add_argument(
        "--out", default="runs/dataset", help="folder for the Parquet files, card and Minari data"
    )
    exp.add_argument("overrides", nargs="*", metavar="key=value")
    hr = ds.add_parser(
        "headroom",
        help="oracle (best stop) and best explored schedule vs the best heuristic, per family and task",
        epilog=f"config keys (key=value; defaults shown):\n{keys_help(HeadroomConfig)}",
        formatter_class=fmt,
    )
    hr.add_argument("--out", default="runs/headroom", help="folder for headroom.json and headroom_*.csv")
    hr.add_argument("overrides", nargs="*", metavar="key=value")
    return ap


def main(argv: list[str]) -> int:
    """Run one of this module's commands; a user error is one sentence on stderr, exit status 2."""
    ap = _parser()
    args, given, stray = interleaved(ap, argv)  # ``collect-world seeds=2 --no-progress out=x``, as everywhere
    if stray:
        ap.error(f"unrecognized arguments: {' '.join(stray)} (settings are key=value; see --help)")
    try:
        pairs = parse_overrides(given)
        if args.cmd == "instances":
            return _generate(args, pairs)
        if args.cmd == "collect-world":
            from govgym.agents.collection import CollectWorldConfig, collect_world

            s = collect_world(from_dict(CollectWorldConfig, pairs), progress=not args.no_progress)
            print(
                f"corpus: {s['units_done']} units done, {s['episodes']} episodes, {s['real_steps']} real env steps "
                f"({s['unit_seconds']:.0f} s of unit work); this run: {s['this_run']['units']} units in {s['seconds']:.0f} s"
            )
            return 0
        if args.action == "headroom":
            from govgym.agents.headroom import HeadroomConfig

            return _headroom(from_dict(HeadroomConfig, pairs), Path(args.out))
        from govgym.agents.dataset import ExportConfig, export_dataset

        s = export_dataset(from_dict(ExportConfig, pairs), Path(args.out))
        print(f"wrote {s['episodes']} episodes ({s['steps']} steps) to {args.out}: {', '.join(s['files'])}")
        return 0
    except USER_ERRORS as err:
        print(f"govgym {args.cmd}: error: {err}", file=sys.stderr)
        return 2


def _headroom(cfg: Any, out: Path) -> int:
    from govgym.agents.headroom import headroom
    from govgym.results import format_table, write_json, write_rows

    h = headroom(Path(cfg.corpus), cfg.tolerance)
    print(
        f"best heuristic (highest mean return over the corpus): {h['best_heuristic']}  {h['heuristic_means']}"
    )
    print(format_table(h["by_family"]))
    print(format_table(h["by_task"]))
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out, "headroom_family", h["by_family"])
    write_rows(out, "headroom_task", h["by_task"])
    write_json(out / "headroom.json", h)
    print(f"wrote {out}/headroom.json, headroom_family.csv/json, headroom_task.csv/json")
    return 0


def _generate(args: argparse.Namespace, pairs: dict[str, Any]) -> int:
    from importlib.resources import files

    from govgym.envs.world import generate, load_spec, measured_peaks, write_set

    spec_path = args.config or str(files("govgym.configs") / "world_v2.yaml")
    spec = load_spec(spec_path, pairs)
    data = generate(spec, measured_peaks(spec))
    out = write_set(data, Path(args.out), args.config or "configs/world_v2.yaml")
    n_test = {h: sum(1 for i in data["test"] if i["holdout"] == h) for h in ("a", "b", "c")}
    print(
        f"wrote {out}: {len(data['train'])} train, held out a {n_test['a']} / b {n_test['b']} / c {n_test['c']} "
        f"(seed {spec.seed}; {data['generated']['redrawn']} unrunnable draws redrawn)"
    )
    return 0


__all__ = ["COMMANDS", "main"]
