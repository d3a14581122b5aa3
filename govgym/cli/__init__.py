"""The one command line: ``govgym <subcommand> [--config X.yaml] [key=value ...] [--out DIR]``.

Subcommands (``govgym <cmd> --help`` lists each one's config keys with their docs):
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
  map         what each lever (stop, reprune, switch) is worth alone and together, per instance and family
  export      a trained agent or a heuristic as a governor artifact that runs with numpy only
  deploy      fine-tune through the HF Trainer with a governor vs fixed budget vs EarlyStoppingCallback
  transfer    policies deployed zero-shot at 10-20x the training model size: savings kept, OOMs under scaled caps
  instances generate / collect-world / dataset export   the generated world, its corpus, its dataset (cli/worldjobs.py)

One option style for every subcommand:
  key=value   every setting: a config key, listed with its doc by `govgym <cmd> --help`
              (e.g. `govgym run interval=10 optim.lr=3e-4`, `govgym evaluate seeds=5 split=test`)
  --flag      only where files go and how the process behaves: --config, --out, --write, --agent,
              --resume, --no-progress, -v
  positional  the file a command acts on: `replay STATE.json`, `plot-traces FOLDER`, `export SOURCE`
Flags and key=value pairs may come in any order. Earlier spellings of a key as a flag (`--seeds 2`,
`--interval 10`) still work and mean the same key=value.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from govgym.agents.evaluate import EvalConfig
from govgym.agents.levermap import MapConfig
from govgym.agents.sim2real import Sim2RealConfig
from govgym.agents.train import TrainConfig
from govgym.cli.options import (
    CollectJob,
    DemoJob,
    DeployJob,
    ExportJob,
    PlotJob,
    PruneJob,
    ReplayJob,
    RunJob,
    StrategiesJob,
    SwitchJob,
    TuneJob,
)
from govgym.deploy.transfer import TransferJob
from govgym.efficiency.config import RunConfig
from govgym.envs.fastfit import FitConfig
from govgym.errors import USER_ERRORS, ConfigError, did_you_mean
from govgym.typed import config_keys, from_dict, keys_help, parse_overrides


@dataclass(frozen=True)
class Command:
    """One subcommand: what it does, which config classes its key=value pairs fill, which flags it has."""

    name: str
    help: str
    keys: tuple[type, ...]
    """Config dataclasses, in order: the subcommand's own keys first, then a library config (RunConfig, ...)."""
    out: str | None = None
    """Default of --out (None: no --out)."""
    out_help: str = "folder for CSV/JSON/PNG results"
    config: bool = False
    """Takes --config X.yaml (a RunConfig YAML) under the key=value pairs."""
    aliases: tuple[tuple[str, str], ...] = ()
    """Extra earlier flag spellings: (flag, key)."""


COMMANDS = [
    Command("prepare", "build or reuse the embedded base model and data", (RunConfig,), config=True),
    Command(
        "run", "one real fine-tuning run under a fixed budget", (RunJob, RunConfig), "runs/run", config=True
    ),
    Command(
        "demo",
        "the main job: train a governor, evaluate it against the heuristics on held-out runs",
        (DemoJob,),
        "runs/demo",
        "folder for train/ (agent) and evaluate/ (leaderboard, plots)",
    ),
    Command(
        "strategies",
        "per-strategy ms/step, memory by category, estimate, FLOPs vs 6ND",
        (StrategiesJob, RunConfig),
        "results/strategies",
        config=True,
    ),
    Command(
        "prune",
        "noise removed by each scorer's drop-hardest prune vs random",
        (PruneJob, RunConfig),
        "results/prune",
        config=True,
    ),
    Command(
        "switch",
        "full->LoRA->full and full->QLoRA mid-run: loss curves and plot",
        (SwitchJob, RunConfig),
        "results/switch",
        config=True,
    ),
    Command(
        "collect",
        "run policies over an instance split; record traces (Parquet) and states (JSON)",
        (CollectJob,),
        "runs/collect",
        "folder for traces/, states/, episodes.csv, traces.png",
        aliases=(("--policy", "policies"),),
    ),
    Command("replay", "re-run an episode state and validate it", (ReplayJob,)),
    Command("plot-traces", "plot recorded episodes", (PlotJob,), "traces.png", "the PNG to write"),
    Command(
        "train",
        "train an SB3 governor on the train split (checkpoints, TensorBoard, resume)",
        (TrainConfig,),
        "runs/train",
        "folder for agent.json, policy.safetensors, obs_norm.json (the agent) and checkpoints/, tb/, "
        "final.zip, vecnormalize.pkl (resume)",
    ),
    Command(
        "tune",
        "tune the heuristics' knobs on the train split",
        (TuneJob,),
        "runs/tune",
        "folder for heuristics.yaml and grid.csv/json",
    ),
    Command(
        "evaluate",
        "policies x held-out instances x seeds: leaderboard and plots",
        (EvalConfig,),
        "runs/evaluate",
        "folder for leaderboard.csv/json, episodes.csv/json, PNGs",
    ),
    Command(
        "map",
        "the lever map: each lever's best explored schedule vs the best stop, held-out instances x seeds",
        (MapConfig,),
        "runs/map",
        "folder for map.csv/json, map_families.csv/json, map_summary.json, map.png",
    ),
    Command(
        "fit-fast",
        "fit the fast backend (govgym/FineTuneFast-v1) from the saved real step trees of the train split",
        (FitConfig,),
        "runs/fast",
        "folder for fast_model.json (the model) and fit.json (its report)",
    ),
    Command(
        "sim2real",
        "fast backend vs real env on held-out instances: per-step error, returns, policy ranking, error vs traces",
        (Sim2RealConfig,),
        "runs/sim2real",
        "folder for sim2real.json, sim2real_policies.csv/json, sim2real_traces.csv/json, sim2real.png",
    ),
    Command(
        "export",
        "a trained agent or a heuristic as a governor artifact (numpy only: no SB3, gymnasium or pickle)",
        (ExportJob,),
        "governor",
        "artifact folder for governor.json and policy.safetensors",
    ),
    Command(
        "deploy",
        "HF Trainer runs: a governor (artifact or heuristic) vs the fixed budget vs EarlyStoppingCallback",
        (DeployJob, RunConfig),
        "runs/deploy",
        "folder for deploy.csv/json, decisions.json, deploy.png",
        config=True,
    ),
    Command(
        "transfer",
        "each policy deployed zero-shot through GovernedTrainer at larger model sizes vs the training size",
        (TransferJob,),
        "runs/transfer",
        "folder for transfer.csv/json, runs.json(l), transfer.png",
    ),
]
BY_NAME = {c.name: c for c in COMMANDS}
LEGACY = "_legacy_"  # argparse dest prefix of the hidden flag spelling of a key


def _default_config() -> Path:

    return Path(str(files("govgym.configs") / "default.yaml"))


def _top_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _epilog(cmd: Command) -> str:
    parts = [f"config keys (key=value; defaults shown):\n{keys_help(*cmd.keys)}"]
    if cmd.config:
        parts.append(
            "The run config defaults shown are the built-in ones; --config (default: the packaged\n"
            "configs/default.yaml) sets its own values, and key=value pairs apply on top of it."
        )
    return "\n\n".join(parts)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top parser and one subparser per subcommand (for its own usage line in errors)."""
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="govgym", description=__doc__, formatter_class=fmt)
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="<subcommand>")
    subs: dict[str, argparse.ArgumentParser] = {}
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.name, help=cmd.help, description=cmd.help, epilog=_epilog(cmd), formatter_class=fmt
        )
        subs[cmd.name] = p
        if cmd.name == "replay":
            p.add_argument("state", help="STATE.json written by collect / env.state()")
        elif cmd.name == "plot-traces":
            p.add_argument("traces", help="folder of .parquet episodes (e.g. runs/collect/traces)")
        elif cmd.name == "export":
            p.add_argument(
                "source",
                help="a trained agent (DIR, DIR/final.zip or DIR/agent.json) or a heuristic spec "
                "(patience, marginal_gain:kappa=4)",
            )
        if cmd.config:
            p.add_argument(
                "--config", default="", help="YAML run config (default: the packaged configs/default.yaml)"
            )
        if cmd.out is not None:
            flags = ("-o", "--out") if cmd.name == "export" else ("--out",)
            p.add_argument(*flags, default=cmd.out, help=f"{cmd.out_help} (default: {cmd.out})")
        if cmd.name == "train":
            p.add_argument(
                "--resume",
                action="store_true",
                help="continue from the newest checkpoint in --out (trusted files only: resuming unpickles SB3's own files)",
            )
        if cmd.name == "tune":
            p.add_argument(
                "--write", default="", help="also write the tuned knobs here (e.g. configs/heuristics.yaml)"
            )
        if cmd.name == "evaluate":
            p.add_argument(
                "--agent",
                action="append",
                default=[],
                help="a trained agent (DIR/final.zip or label=DIR/final.zip), added to policies; repeatable",
            )
        if cmd.name in (
            "demo",
            "train",
            "evaluate",
            "map",
            "collect",
            "tune",
            "deploy",
            "transfer",
            "sim2real",
        ):
            p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config keys (listed below)")
        # earlier spellings of the subcommand's own keys as flags (--seeds 2 = seeds=2): accepted, not listed
        for key in _top_keys(cmd.keys[0]) if cmd.keys[0] is not RunConfig else []:
            p.add_argument(
                f"--{key.replace('_', '-')}", dest=LEGACY + key, default=None, help=argparse.SUPPRESS
            )
        for flag, key in cmd.aliases:
            p.add_argument(flag, dest=LEGACY + key, default=None, help=argparse.SUPPRESS)
    return ap, subs


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse the command line; returns the namespace and the key=value pairs as one nested dict.

    Flags and pairs may be interleaved (``run --out x optim.lr=1e-3 --interval 4 seed=1``): argparse
    leaves pairs after a flag unparsed, so they are collected here; anything else unknown is an error.
    """
    ap, subs = build_parser()
    args, extra = ap.parse_known_args(argv)
    stray = [a for a in [*args.overrides, *extra] if a.startswith("-") or "=" not in a]
    if stray:
        subs[args.cmd].error(
            f"unrecognized arguments: {' '.join(stray)} (settings are key=value; see --help)"
        )
    legacy = [
        f"{k[len(LEGACY) :]}={v}" for k, v in vars(args).items() if k.startswith(LEGACY) and v is not None
    ]
    try:
        return args, parse_overrides([*legacy, *args.overrides, *extra])
    except ConfigError as err:
        subs[args.cmd].error(str(err))


def _split(cmd: Command, pairs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the subcommand's own keys, the library config's keys); an unknown key names the closest known one."""
    own = _top_keys(cmd.keys[0]) if cmd.keys[0] is not RunConfig else []
    lib = _top_keys(cmd.keys[-1]) if cmd.keys[-1] is RunConfig else []
    for key in pairs:
        if key not in own and key not in lib:
            known = own + lib + [k for c in cmd.keys for k, _, _ in config_keys(c)]
            raise ConfigError(
                f"{key}: unknown config key for `govgym {cmd.name}`.{did_you_mean(key, known)} "
                f"`govgym {cmd.name} --help` lists the keys it takes."
            )
    return {k: v for k, v in pairs.items() if k in own}, {k: v for k, v in pairs.items() if k in lib}


def _run_config(args: argparse.Namespace, pairs: dict[str, Any]) -> RunConfig:
    path = Path(args.config) if args.config else _default_config()
    if not path.is_file():
        raise ConfigError(f"--config: {path} is not a file. Pass a YAML such as configs/default.yaml.")
    return RunConfig.from_yaml(path, pairs)


def dispatch(args: argparse.Namespace, pairs: dict[str, Any]) -> int:
    """Run subcommand ``args.cmd`` with its key=value ``pairs``; returns the exit status."""
    cmd = BY_NAME[args.cmd]
    own, lib = _split(cmd, pairs)
    job: Any = from_dict(cmd.keys[0], own) if cmd.keys[0] is not RunConfig else None
    progress = not getattr(args, "no_progress", False)
    if cmd.config:
        from govgym.cli import reports

        cfg = _run_config(args, lib)
        if cmd.name == "prepare":
            reports.prepare(cfg)
        elif cmd.name == "run":
            reports.fixed_budget_run(cfg, Path(args.out), job.interval, job.budget_flops)
        elif cmd.name == "strategies":
            reports.strategy_table(cfg, Path(args.out), job.steps, job.only or None)
        elif cmd.name == "prune":
            reports.prune_noise(cfg, Path(args.out), job.fraction, job.warm_steps)
        elif cmd.name == "switch":
            reports.switch_curves(cfg, Path(args.out), job.steps)
        elif cmd.name == "deploy":
            from govgym.cli.deployjobs import deploy_compare

            deploy_compare(cfg, Path(args.out), job, progress=progress)
    elif cmd.name == "collect":
        from govgym.cli import envjobs

        envjobs.collect(
            job.instances or None,
            job.split,
            job.policies,
            job.episodes,
            Path(args.out),
            job.seed,
            progress=progress,
            workers=job.workers,
            backend=job.backend,
            ray_address=job.ray_address,
        )
    elif cmd.name == "replay":
        from govgym.cli import envjobs

        return 0 if envjobs.replay_state(Path(args.state), job.instances or None)["valid"] else 1
    elif cmd.name == "plot-traces":
        from govgym.cli import envjobs

        print(f"wrote {envjobs.plot_traces(Path(args.traces), Path(args.out), job.max_episodes)}")
    elif cmd.name == "train":
        from govgym.agents.train import train

        print(f"wrote {train(job, Path(args.out), resume=args.resume, progress=progress)}")
    elif cmd.name == "tune":
        from govgym.agents.tune import tune

        tune(
            Path(args.out),
            job.instances,
            job.seeds,
            job.workers,
            args.write,
            progress=progress,
            memo=job.memo,
            backend=job.backend,
            ray_address=job.ray_address,
        )
    elif cmd.name == "evaluate":
        from govgym.agents.evaluate import evaluate

        job.policies = [*job.policies, *args.agent]
        evaluate(job, Path(args.out), progress=progress)
    elif cmd.name == "map":
        from govgym.agents.levermap import lever_map

        lever_map(job, Path(args.out), progress=progress)
    elif cmd.name == "fit-fast":
        from govgym.cli.fastjobs import fit_fast_job

        fit_fast_job(job, Path(args.out))
    elif cmd.name == "sim2real":
        from govgym.cli.fastjobs import sim2real_job

        sim2real_job(job, Path(args.out), progress=progress)
    elif cmd.name == "export":
        from govgym.cli.deployjobs import export_governor

        export_governor(args.source, Path(args.out), job.instances)
    elif cmd.name == "transfer":
        from govgym.deploy.transfer import transfer

        transfer(job, Path(args.out), progress=progress)
    elif cmd.name == "demo":
        from govgym.cli.demo import demo

        demo(
            Path(args.out),
            job.timesteps,
            job.seeds,
            job.workers,
            job.instances,
            progress,
            job.train_minutes,
            job.fast_model,
            job.randomize,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``govgym``: parse, run the subcommand; a user error is one sentence on stderr and exit status 2."""
    from govgym.cli import worldjobs

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in worldjobs.COMMANDS:  # the world's jobs parse their own lines
        return worldjobs.main(argv)
    args, pairs = parse_args(argv)
    # Library deprecation chatter (peft probing transformers' renamed attributes) is not the user's concern.
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return dispatch(args, pairs)
    except USER_ERRORS as err:
        print(f"govgym {args.cmd}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"govgym {args.cmd}: interrupted; files already written are complete.", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "dispatch", "main", "parse_args"]
