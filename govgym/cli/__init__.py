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
  offline     a stop-only governor by offline RL (discrete CQL, torchrl) on a `dataset export` Minari dataset
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
from importlib.resources import files
from pathlib import Path
from typing import Any

from govgym.cli.commands import BY_NAME, COMMANDS, Command, Invocation
from govgym.efficiency.config import RunConfig
from govgym.errors import USER_ERRORS, ConfigError, did_you_mean
from govgym.results import check_output
from govgym.typed import config_keys, from_dict, keys_help, parse_overrides

LEGACY = "_legacy_"  # argparse dest prefix of the hidden flag spelling of a key


def default_config() -> Path:
    """The packaged run config YAML (``configs/default.yaml``): what ``--config`` defaults to."""
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
        for name, help_ in cmd.positional:
            p.add_argument(name, help=help_)
        if cmd.config:
            p.add_argument(
                "--config", default="", help="YAML run config (default: the packaged configs/default.yaml)"
            )
        if cmd.out is not None:
            p.add_argument(*cmd.out_flags, default=cmd.out, help=f"{cmd.out_help} (default: {cmd.out})")
        for flag in cmd.flags:
            kw: dict[str, Any] = {"help": flag.help}
            if flag.action:
                kw["action"] = flag.action
            if flag.action != "store_true":
                kw["default"] = flag.default
            p.add_argument(*flag.names, **kw)
        if cmd.progress:
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


def interleaved(
    ap: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, list[str], list[str]]:
    """Parse ``argv`` whose ``key=value`` pairs (the ``overrides`` positional) may come before, between and
    after flags: argparse leaves pairs after a flag unparsed, so they are collected here. Returns the
    namespace, every pair in order, and the stray words (neither a known flag nor key=value)."""
    args, extra = ap.parse_known_args(argv)
    given = [*args.overrides, *extra]
    return args, given, [a for a in given if a.startswith("-") or "=" not in a]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse the command line; returns the namespace and the key=value pairs as one nested dict.

    Flags and pairs may be interleaved (``run --out x optim.lr=1e-3 --interval 4 seed=1``): argparse
    leaves pairs after a flag unparsed, so they are collected here; anything else unknown is an error.
    """
    ap, subs = build_parser()
    args, given, stray = interleaved(ap, argv)
    if stray:
        subs[args.cmd].error(
            f"unrecognized arguments: {' '.join(stray)} (settings are key=value; see --help)"
        )
    legacy = [
        f"{k[len(LEGACY) :]}={v}" for k, v in vars(args).items() if k.startswith(LEGACY) and v is not None
    ]
    try:
        return args, parse_overrides([*legacy, *given])
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
    path = Path(args.config) if args.config else default_config()
    if not path.is_file():
        raise ConfigError(f"--config: {path} is not a file. Pass a YAML such as configs/default.yaml.")
    return RunConfig.from_yaml(path, pairs)


def check_outputs(cmd: Command, args: argparse.Namespace) -> None:
    """Every path the subcommand will write (``--out``, ``--write``), checked before any work starts."""
    if cmd.out is not None:
        check_output(args.out, cmd.out_flags[-1], cmd.out_kind)
    for flag in cmd.flags:
        value = getattr(args, flag.names[-1].lstrip("-").replace("-", "_"), None)
        if flag.output and value:
            check_output(value, flag.names[-1], flag.output)


def dispatch(args: argparse.Namespace, pairs: dict[str, Any]) -> int:
    """Run subcommand ``args.cmd`` with its key=value ``pairs``; returns the exit status.

    The keys are validated, then the output paths, then the job runs (``Command.run`` in the table of
    ``govgym/cli/commands.py``).
    """
    cmd = BY_NAME[args.cmd]
    own, lib = _split(cmd, pairs)
    job: Any = from_dict(cmd.keys[0], own) if cmd.keys[0] is not RunConfig else None
    cfg = _run_config(args, lib) if cmd.config else None
    check_outputs(cmd, args)
    status = cmd.run(Invocation(args, job, cfg, not getattr(args, "no_progress", False)))
    return 0 if status is None else status


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


__all__ = [
    "BY_NAME",
    "COMMANDS",
    "build_parser",
    "default_config",
    "dispatch",
    "interleaved",
    "main",
    "parse_args",
]
