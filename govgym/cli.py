"""The one command line: ``govgym <subcommand> [--config X.yaml] [key=value ...]``.

Subcommands (``govgym <cmd> --help`` for each):
  prepare     build (or reuse) the embedded base model and data; print what was built
  run         one real fine-tuning run under a fixed budget, signals printed interval by interval
  demo        the main job: train a governor (MaskablePPO), evaluate it vs tuned heuristics on held-out runs
  strategies  per memory strategy: ms/step, measured memory by category, analytic estimate, FLOPs vs 6ND
  prune       fraction of injected noise each scorer's drop-hardest prune removes, vs random
  switch      runs switched full -> LoRA -> full and full -> QLoRA mid-run; loss curves and plot
  collect     run policies over an instance split of govgym/FineTune-v0, recording traces and states
  replay      re-run a saved episode state and validate every observation and reward
  plot-traces eval loss vs FLOPs of recorded episodes, actions marked
  train       train an SB3 governor (MaskablePPO / PPO / DQN) on the train split; --resume after a kill
  tune        grid-search each heuristic's knobs on the train split (mean return); writes heuristics.yaml
  evaluate    every policy x held-out instances x seeds: leaderboard (terminal, CSV/JSON) and plots
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from govgym.typed import ConfigError, parse_overrides


def _default_config() -> Path:
    from importlib.resources import files

    return Path(str(files("govgym.configs") / "default.yaml"))


def _load_cfg(args: argparse.Namespace):
    from govgym.efficiency.config import RunConfig

    path = Path(args.config) if args.config else _default_config()
    if not path.is_file():
        raise ConfigError(f"--config: {path} is not a file. Pass a YAML such as configs/default.yaml.")
    return RunConfig.from_yaml(path, parse_overrides(args.overrides))


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--config", default="", help="YAML run config (default: the packaged configs/default.yaml)")
    p.add_argument("--out", default=out, help=f"folder for CSV/JSON/PNG results (default: {out})")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. memory.strategy=lora+gc optim.lr=3e-4")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="govgym", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("prepare", help="build or reuse the embedded base model and data")
    _common(p, "")

    p = sub.add_parser("run", help="one real fine-tuning run under a fixed budget")
    _common(p, "runs/run")
    p.add_argument("--interval", type=int, default=20, help="optimizer steps per decision interval (K)")
    p.add_argument("--budget-flops", type=float, default=0.0, help="stop once this many FLOPs are spent (0 = optim.total_steps)")

    p = sub.add_parser("demo", help="the main job: train a governor, evaluate it against the heuristics on held-out runs")
    p.add_argument("--out", default="runs/demo", help="folder for train/ (agent) and evaluate/ (leaderboard, plots)")
    p.add_argument("--timesteps", type=int, default=4096, help="env steps of MaskablePPO training (at most)")
    p.add_argument("--train-minutes", type=float, default=1.5, help="... or stop training after this many minutes (0 = no limit)")
    p.add_argument("--seeds", type=int, default=1, help="episode seeds per held-out instance (the README's table: 5)")
    p.add_argument("--workers", type=int, default=2, help="processes (one core each) for training envs and evaluation")
    p.add_argument("--instances", default="", help="instance-set YAML (default: packaged configs/instances.yaml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("strategies", help="per-strategy ms/step, memory by category, estimate, FLOPs vs 6ND")
    _common(p, "results/strategies")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps per strategy (after 2 warm-up steps)")
    p.add_argument("--only", default="", help="comma-separated strategies (default: all bases, +gc, +adam8)")

    p = sub.add_parser("prune", help="noise removed by each scorer's drop-hardest prune vs random")
    _common(p, "results/prune")
    p.add_argument("--fraction", type=float, default=0.2, help="fraction of the training set to drop")
    p.add_argument("--warm-steps", type=int, default=40, help="fine-tuning steps before scoring")

    p = sub.add_parser("switch", help="full->LoRA->full and full->QLoRA mid-run: loss curves and plot")
    _common(p, "results/switch")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per segment")
    p = sub.add_parser("collect", help="run policies over an instance split; record traces (Parquet) and states (JSON)")
    p.add_argument("--instances", default="", help="instance-set YAML (default: packaged configs/instances.yaml)")
    p.add_argument("--split", default="train", help="train | test")
    p.add_argument("--policy", default="continue,random", help="comma-separated: fixed_budget (= continue), patience, marginal_gain, zeus, memory_reactive, random")
    p.add_argument("--episodes", type=int, default=2, help="episodes per policy (instances taken in order)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/collect", help="folder for traces/, states/, episodes.csv, traces.png")

    p = sub.add_parser("replay", help="re-run an episode state and validate it")
    p.add_argument("state", help="STATE.json written by collect / env.state()")
    p.add_argument("--instances", default="", help="instance-set YAML (default: the one named in the state)")

    p = sub.add_parser("train", help="train an SB3 governor on the train split (checkpoints, TensorBoard, resume)")
    p.add_argument("--out", default="runs/train", help="folder for checkpoints/, tb/, final.zip, vecnormalize.pkl")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="TrainConfig fields, e.g. algo=ppo timesteps=4000 n_envs=2")

    p = sub.add_parser("tune", help="tune the heuristics' knobs on the train split")
    p.add_argument("--instances", default="", help="instance-set YAML (default: packaged configs/instances.yaml)")
    p.add_argument("--seeds", type=int, default=2, help="episode seeds per train instance")
    p.add_argument("--workers", type=int, default=2, help="worker processes (one core each)")
    p.add_argument("--out", default="runs/tune", help="folder for heuristics.yaml and grid.csv/json")
    p.add_argument("--write", default="", help="also write the tuned knobs here (e.g. configs/heuristics.yaml)")
    p.add_argument("--memo", default="runs/memo", help="folder of saved exact step trees to reuse/extend ('' = none)")

    p = sub.add_parser("evaluate", help="policies x held-out instances x seeds: leaderboard and plots")
    p.add_argument("--agent", action="append", default=[], help="a trained agent (DIR/final.zip or label=DIR/final.zip); repeatable")
    p.add_argument("--out", default="runs/evaluate", help="folder for leaderboard.csv/json, episodes.csv/json, PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="EvalConfig fields, e.g. seeds=5 split=test workers=2 policies=[patience,zeus]")

    p = sub.add_parser("plot-traces", help="plot recorded episodes")
    p.add_argument("traces", help="folder of .parquet episodes")
    p.add_argument("--out", default="traces.png")
    return ap


def _env_cmd(args: argparse.Namespace) -> int:
    from govgym import envjobs

    if args.cmd == "collect":
        envjobs.collect(args.instances or None, args.split, [p for p in args.policy.split(",") if p], args.episodes, Path(args.out), args.seed)
    elif args.cmd == "replay":
        return 0 if envjobs.replay_state(Path(args.state), args.instances or None)["valid"] else 1
    elif args.cmd == "train":
        from govgym.agents.train import TrainConfig, train
        from govgym.typed import from_dict

        cfg = from_dict(TrainConfig, parse_overrides(args.overrides))
        print(f"wrote {train(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress)}")
    elif args.cmd == "tune":
        from govgym.agents.tune import tune

        tune(Path(args.out), args.instances, args.seeds, args.workers, args.write, memo=args.memo)
    elif args.cmd == "evaluate":
        from govgym.agents.evaluate import EvalConfig, evaluate
        from govgym.typed import from_dict

        cfg = from_dict(EvalConfig, parse_overrides(args.overrides))
        cfg.policies = [*cfg.policies, *args.agent]
        evaluate(cfg, Path(args.out), progress=not args.no_progress)
    elif args.cmd == "demo":
        from govgym.demo import demo
        from govgym.typed import check_range

        for name in ("timesteps", "seeds", "workers"):
            check_range(f"--{name}", getattr(args, name), 1)
        check_range("--train-minutes", args.train_minutes, 0.0)
        demo(Path(args.out), args.timesteps, args.seeds, args.workers, args.instances, not args.no_progress, args.train_minutes)
    elif args.cmd == "plot-traces":
        print(f"wrote {envjobs.plot_traces(Path(args.traces), Path(args.out))}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may come before, between and after options.

    argparse fills a ``nargs="*"`` positional once, so ``run a=1 --interval 5 b=2`` would leave ``b=2``
    unrecognized (and ``parse_intermixed_args`` does not support subcommands): overrides left over are
    appended in order; anything else left over is still an error.
    """
    ap = build_parser()
    args, extra = ap.parse_known_args(argv)
    bad = [x for x in extra if x.startswith("-") or "=" not in x]
    if bad or (extra and not hasattr(args, "overrides")):
        ap.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import warnings

    # Library deprecation chatter (peft probing transformers' renamed attributes) is not the user's concern.
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from govgym import reports
    from govgym.errors import USER_ERRORS

    try:
        if args.cmd in ("collect", "replay", "plot-traces", "train", "tune", "evaluate", "demo"):
            return _env_cmd(args)
        cfg = _load_cfg(args)
        if args.cmd == "prepare":
            reports.prepare(cfg)
        elif args.cmd == "run":
            from govgym.typed import check_range

            check_range("--interval", args.interval, 1)
            check_range("--budget-flops", args.budget_flops, 0.0)
            reports.fixed_budget_run(cfg, Path(args.out), args.interval, args.budget_flops)
        elif args.cmd == "strategies":
            only = [s for s in args.only.split(",") if s] or None
            reports.strategy_table(cfg, Path(args.out), args.steps, only)
        elif args.cmd == "prune":
            reports.prune_noise(cfg, Path(args.out), args.fraction, args.warm_steps)
        elif args.cmd == "switch":
            reports.switch_curves(cfg, Path(args.out), args.steps)
    except USER_ERRORS as err:
        print(f"govgym {args.cmd}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"govgym {args.cmd}: interrupted; files already written are complete.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
