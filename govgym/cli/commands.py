"""The table of subcommands: each one's name, help, config keys, flags and job function.

``govgym/cli/__init__.py`` builds the parser from ``COMMANDS`` and runs ``command.run(invocation)``;
adding a subcommand is one ``Command`` here and one job function (``govgym/cli/jobs.py``). A job function takes the parsed
``Invocation`` (flags, the subcommand's own validated config, the run config where it takes one) and
returns an exit status (None = 0). Heavy modules are imported inside the job functions, so that
``govgym <cmd> --help`` and a refused key stay fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govgym.agents.curvetrain import CurveFitConfig
from govgym.agents.evaluate import EvalConfig
from govgym.agents.levermap import MapConfig
from govgym.agents.offline import OfflineConfig
from govgym.agents.sim2real import Sim2RealConfig
from govgym.agents.train import TrainConfig
from govgym.cli import jobs
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
from govgym.deploy.outside import OutsideJob
from govgym.deploy.transfer import TransferJob
from govgym.efficiency.config import RunConfig
from govgym.envs.fastfit import FitConfig


@dataclass
class Invocation:
    """One parsed command line, as a job function receives it."""

    args: argparse.Namespace
    """The flags and positionals (``args.out``, ``args.resume``, ...)."""
    job: Any
    """The subcommand's own config (its first ``Command.keys`` class), validated; None for RunConfig only."""
    cfg: RunConfig | None
    """The run config (``--config`` YAML + key=value pairs) for subcommands with ``config=True``."""
    progress: bool
    """Progress bars on (no ``--no-progress``)."""

    @property
    def out(self) -> Path:
        """``--out`` as a Path (checked writable before the job started)."""
        return Path(self.args.out)


@dataclass(frozen=True)
class Flag:
    """An extra flag of one subcommand (argparse ``add_argument`` arguments)."""

    names: tuple[str, ...]
    help: str
    action: str | None = None
    default: Any = None
    output: str = ""
    """'file' or 'dir' when the flag names something to write: checked before the job starts."""


@dataclass(frozen=True)
class Command:
    """One subcommand: what it does, which config classes its key=value pairs fill, which flags it has."""

    name: str
    help: str
    keys: tuple[type, ...]
    """Config dataclasses, in order: the subcommand's own keys first, then a library config (RunConfig, ...)."""
    run: Callable[[Invocation], int | None]
    """The job function."""
    out: str | None = None
    """Default of --out (None: no --out)."""
    out_help: str = "folder for CSV/JSON/PNG results"
    out_kind: str = "dir"
    """What --out names: 'dir' (a folder of results) or 'file' (one file)."""
    out_flags: tuple[str, ...] = ("--out",)
    config: bool = False
    """Takes --config X.yaml (a RunConfig YAML) under the key=value pairs."""
    aliases: tuple[tuple[str, str], ...] = ()
    """Extra earlier flag spellings: (flag, key)."""
    positional: tuple[tuple[str, str], ...] = ()
    """(name, help) of the file the command acts on."""
    flags: tuple[Flag, ...] = ()
    progress: bool = False
    """Takes --no-progress."""


# ---------------------------------------------------------------------------- the table
COMMANDS = [
    Command(
        "prepare",
        "build or reuse the embedded base model and data",
        (RunConfig,),
        jobs.cmd_prepare,
        config=True,
    ),
    Command(
        "run",
        "one real fine-tuning run under a fixed budget",
        (RunJob, RunConfig),
        jobs.cmd_run,
        "runs/run",
        config=True,
    ),
    Command(
        "demo",
        "the main job: train a governor, evaluate it against the heuristics on held-out runs",
        (DemoJob,),
        jobs.cmd_demo,
        "runs/demo",
        "folder for train/ (agent) and evaluate/ (leaderboard, plots)",
        progress=True,
    ),
    Command(
        "strategies",
        "per-strategy ms/step, memory by category, estimate, FLOPs vs 6ND",
        (StrategiesJob, RunConfig),
        jobs.cmd_strategies,
        "results/strategies",
        config=True,
    ),
    Command(
        "prune",
        "noise removed by each scorer's drop-hardest prune vs random",
        (PruneJob, RunConfig),
        jobs.cmd_prune,
        "results/prune",
        config=True,
    ),
    Command(
        "switch",
        "full->LoRA->full and full->QLoRA mid-run: loss curves and plot",
        (SwitchJob, RunConfig),
        jobs.cmd_switch,
        "results/switch",
        config=True,
    ),
    Command(
        "collect",
        "run policies over an instance split; record traces (Parquet) and states (JSON)",
        (CollectJob,),
        jobs.cmd_collect,
        "runs/collect",
        "folder for traces/, states/, episodes.csv, traces.png",
        aliases=(("--policy", "policies"),),
        progress=True,
    ),
    Command(
        "replay",
        "re-run an episode state and validate it",
        (ReplayJob,),
        jobs.cmd_replay,
        positional=(("state", "STATE.json written by collect / env.state()"),),
    ),
    Command(
        "plot-traces",
        "plot recorded episodes",
        (PlotJob,),
        jobs.cmd_plot_traces,
        "traces.png",
        "the PNG to write",
        out_kind="file",
        positional=(("traces", "folder of .parquet episodes (e.g. runs/collect/traces)"),),
    ),
    Command(
        "train",
        "train an SB3 governor on the train split (checkpoints, TensorBoard, resume)",
        (TrainConfig,),
        jobs.cmd_train,
        "runs/train",
        "folder for agent.json, policy.safetensors, obs_norm.json (the agent) and checkpoints/, tb/, "
        "final.zip, vecnormalize.pkl (resume)",
        flags=(
            Flag(
                ("--resume",),
                "continue from the newest checkpoint in --out (trusted files only: resuming unpickles SB3's own files)",
                action="store_true",
            ),
        ),
        progress=True,
    ),
    Command(
        "tune",
        "tune the heuristics' knobs on the train split",
        (TuneJob,),
        jobs.cmd_tune,
        "runs/tune",
        "folder for heuristics.yaml and grid.csv/json",
        flags=(
            Flag(
                ("--write",),
                "also write the tuned knobs here (e.g. configs/heuristics.yaml)",
                default="",
                output="file",
            ),
        ),
        progress=True,
    ),
    Command(
        "evaluate",
        "policies x held-out instances x seeds: leaderboard and plots",
        (EvalConfig,),
        jobs.cmd_evaluate,
        "runs/evaluate",
        "folder for leaderboard.csv/json, episodes.csv/json, PNGs",
        flags=(
            Flag(
                ("--agent",),
                "a trained agent (DIR/final.zip or label=DIR/final.zip), added to policies; repeatable",
                action="append",
                default=[],
            ),
        ),
        progress=True,
    ),
    Command(
        "map",
        "the lever map: each lever's best explored schedule vs the best stop, held-out instances x seeds",
        (MapConfig,),
        jobs.cmd_map,
        "runs/map",
        "folder for map.csv/json, map_families.csv/json, map_summary.json, map.png",
        progress=True,
    ),
    Command(
        "fit-fast",
        "fit the fast backend (govgym/FineTuneFast-v1) from the saved real step trees of the train split",
        (FitConfig,),
        jobs.cmd_fit_fast,
        "runs/fast",
        "folder for fast_model.json (the model) and fit.json (its report)",
    ),
    Command(
        "fit-curve",
        "fit the learned curve predictor (governor learned_curve) on the corpus's fixed paths of the train split",
        (CurveFitConfig,),
        jobs.cmd_fit_curve,
        "runs/curve",
        "folder for curve_model.json (the model) and fit.json (its out-of-fold calibration)",
    ),
    Command(
        "offline",
        "learn a stop-only governor by offline RL (discrete CQL, torchrl) on a `dataset export` Minari dataset",
        (OfflineConfig,),
        jobs.cmd_offline,
        "runs/offline",
        "folder for the agent (agent.json, policy.safetensors, obs_norm.json) and train_log.csv",
        progress=True,
    ),
    Command(
        "sim2real",
        "fast backend vs real env on held-out instances: per-step error, returns, policy ranking, error vs traces",
        (Sim2RealConfig,),
        jobs.cmd_sim2real,
        "runs/sim2real",
        "folder for sim2real.json, sim2real_policies.csv/json, sim2real_traces.csv/json, sim2real.png",
        progress=True,
    ),
    Command(
        "export",
        "a trained agent or a heuristic as a governor artifact (numpy only: no SB3, gymnasium or pickle)",
        (ExportJob,),
        jobs.cmd_export,
        "governor",
        "artifact folder for governor.json and policy.safetensors",
        out_flags=("-o", "--out"),
        positional=(
            (
                "source",
                "a trained agent (DIR, DIR/final.zip or DIR/agent.json) or a heuristic spec "
                "(patience, marginal_gain:kappa=4)",
            ),
        ),
    ),
    Command(
        "deploy",
        "HF Trainer runs: a governor (artifact or heuristic) vs the fixed budget vs EarlyStoppingCallback",
        (DeployJob, RunConfig),
        jobs.cmd_deploy,
        "runs/deploy",
        "folder for deploy.csv/json, decisions.json, deploy.png",
        config=True,
        progress=True,
    ),
    Command(
        "transfer",
        "each policy deployed zero-shot through GovernedTrainer at larger model sizes vs the training size",
        (TransferJob,),
        jobs.cmd_transfer,
        "runs/transfer",
        "folder for transfer.csv/json, runs.json(l), transfer.png",
        progress=True,
    ),
    Command(
        "outside",
        "governors vs the fixed budget vs EarlyStoppingCallback on a BERT classifier no govgym run resembles",
        (OutsideJob,),
        jobs.cmd_outside,
        "runs/outside",
        "folder for outside.csv/json (per policy), outside_runs.csv/json, outside_paired.csv/json, runs.json, outside.png",
        progress=True,
    ),
]
BY_NAME = {c.name: c for c in COMMANDS}

__all__ = ["BY_NAME", "COMMANDS", "Command", "Flag", "Invocation"]
