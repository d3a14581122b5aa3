"""The settings of each subcommand that are not a library config, as typed dataclasses.

One rule across the CLI: every setting is a config key given as ``key=value`` (validated here, in
``__post_init__``, with errors that name the key) and listed with its docstring by ``govgym <cmd>
--help``. A subcommand over one run (``run``, ``strategies``, ``prune``, ``switch``) takes these keys
beside the ``RunConfig`` keys (``optim.lr=...``); ``train`` and ``evaluate`` take ``TrainConfig`` /
``EvalConfig`` keys. Flags are only for where things go and how the process behaves (``--config``,
``--out``, ``--write``, ``--agent``, ``--resume``, ``--no-progress``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from govgym.agents.heuristics import POLICIES
from govgym.agents.scaleout import check_backend
from govgym.efficiency.strategy import Strategy
from govgym.errors import ConfigError
from govgym.typed import check_choice, check_range

SPLITS = ("train", "test")


@dataclass
class RunJob:
    """``govgym run``: one fine-tuning run under a fixed budget."""

    interval: int = 20
    """Optimizer steps per decision interval (K): the run is evaluated and its signals printed every K steps."""
    budget_flops: float = 0.0
    """Stop once this many FLOPs are spent (0 = run every step of optim.total_steps)."""

    def __post_init__(self) -> None:
        check_range("interval", self.interval, 1)
        check_range("budget_flops", self.budget_flops, 0.0)


@dataclass
class StrategiesJob:
    """``govgym strategies``: one row per memory strategy."""

    steps: int = 12
    """Timed optimizer steps per strategy (after 2 warm-up steps)."""
    only: list[str] = field(default_factory=list)
    """Strategies to measure, e.g. [full,lora+gc] ([] = every base, with +gc and +adam8 variants)."""

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1)
        for i, name in enumerate(self.only):
            try:
                Strategy.parse(name)
            except ConfigError as err:
                raise ConfigError(f"only[{i}]: {err}") from None


@dataclass
class PruneJob:
    """``govgym prune``: injected noise removed by each scorer's prune."""

    fraction: float = 0.2
    """Fraction of the training set each prune drops (strictly between 0 and 1)."""
    warm_steps: int = 40
    """Fine-tuning steps before the examples are scored."""

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:  # also refuses NaN
            raise ConfigError(
                f"fraction: got {self.fraction!r}; it must lie strictly between 0 and 1, e.g. fraction=0.2."
            )
        check_range("warm_steps", self.warm_steps, 0)


@dataclass
class SwitchJob:
    """``govgym switch``: strategies switched mid-run."""

    steps: int = 60
    """Optimizer steps per segment (three segments per run)."""

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1)


@dataclass
class CollectJob:
    """``govgym collect``: policies over an instance split, recorded."""

    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, FineTune-v1; configs/instances.yaml is v0's)."""
    split: str = "train"
    """Instance split to run: train | test."""
    policies: list[str] = field(default_factory=lambda: ["continue", "random"])
    """Heuristics to run: fixed_budget (= continue), patience, marginal_gain, zeus, memory_reactive, random."""
    episodes: int = 2
    """Episodes per policy (instances of the split taken in order)."""
    seed: int = 0
    """Seed of the episodes (episode seeds are seed * 10000 + episode; the random policy draws from the same seed)."""
    workers: int = 1
    """Episodes run at once, one core each (1 = one after another in this process)."""
    backend: str = "local"
    """Where the tasks run: local (this process, or a pool of `workers` processes) | ray (one Ray task each:
    `pip install "govgym[ray]"`)."""
    ray_address: str = ""
    """With backend=ray: '' = start a local Ray with `workers` CPUs; else the cluster to use (auto, ray://HEAD:10001)."""

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        if not self.policies:
            raise ConfigError("policies: empty; name at least one, e.g. policies=[continue,random].")
        for i, name in enumerate(self.policies):
            check_choice(f"policies[{i}]", name, POLICIES)
        check_range("episodes", self.episodes, 1)
        check_range("seed", self.seed, 0)
        check_range("workers", self.workers, 1)
        check_backend("", self.backend, self.ray_address)


@dataclass
class ReplayJob:
    """``govgym replay``: re-run a saved episode and validate it."""

    instances: str = ""
    """Instance-set YAML ('' = the one named in the state)."""


@dataclass
class PlotJob:
    """``govgym plot-traces``: eval loss vs FLOPs of recorded episodes."""

    max_episodes: int = 6
    """Episodes drawn (round-robin over the policies recorded)."""

    def __post_init__(self) -> None:
        check_range("max_episodes", self.max_episodes, 1)


@dataclass
class TuneJob:
    """``govgym tune``: grid-search each heuristic's knobs on the train split."""

    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, FineTune-v1; configs/instances.yaml is v0's)."""
    seeds: int = 2
    """Episode seeds per train instance."""
    workers: int = 2
    """Worker processes (one core each)."""
    memo: str = "runs/memo"
    """Folder of saved exact step trees to reuse and extend ('' = none)."""
    backend: str = "local"
    """Where the tasks run: local (this process, or a pool of `workers` processes) | ray (one Ray task each:
    `pip install "govgym[ray]"`)."""
    ray_address: str = ""
    """With backend=ray: '' = start a local Ray with `workers` CPUs; else the cluster to use (auto, ray://HEAD:10001)."""
    objective: str = "price"
    """What the knobs are tuned for: price (mean return) | equal_quality (budget fraction saved − violations)."""
    tolerance: float = 0.005
    """The equal-quality objective's tolerance (relative excess of the final eval loss over the full budget's)."""
    heuristics: list[str] = field(default_factory=list)
    """Heuristics to tune ([] = every one on the grid); the others keep their knobs from ``knobs``. Stop-only
    rules (patience, marginal_gain, zeus, early_stopping, curve_extrapolation, learned_curve) cost no real
    steps over saved trees; memory_reactive switches strategies, and every new switch point is a real run."""
    knobs: str = ""
    """Knobs YAML the heuristics not tuned here are carried over from ('' = the packaged one of the set's version)."""

    def __post_init__(self) -> None:
        from govgym.agents.tune import GRID
        from govgym.efficiency.objective import Objective

        for i, h in enumerate(self.heuristics):
            check_choice(f"heuristics[{i}]", h, list(GRID))
        check_range("seeds", self.seeds, 1)
        check_range("workers", self.workers, 1)
        check_backend("", self.backend, self.ray_address)
        Objective(self.objective, self.tolerance)


@dataclass
class DemoJob:
    """``govgym demo``: prepare, train the shipped default's recipe on the fast backend, export, evaluate on held-out runs."""

    timesteps: int = 200_000
    """Env steps of MaskablePPO training on the fast backend (the shipped default's 200,000; ~1k steps/s on 2 cores)."""
    train_minutes: float = 8.0
    """... or stop training after this many minutes, whichever comes first (0 = no time limit)."""
    fast_model: str = ""
    """Fast model file the agent trains on ('' = the packaged configs/fast_v2.json, v2's 5-member ensemble)."""
    randomize: float = 0.0
    """Probability that a training episode is a random instance around the families (domain randomization)."""
    levers: bool = False
    """Let the agent pull every lever (reprune, switch); false = stop-only, as the shipped default."""
    seeds: int = 1
    """Episode seeds per held-out instance (docs/results_v2.md: 5 on every instance)."""
    workers: int = 2
    """Processes (one core each) for the training envs and the evaluation."""
    instances: str = ""
    """Instance-set YAML ('' = the packaged configs/instances_v2.yaml, the generated v2 world)."""
    split: str = "test-b"
    """Held-out split to judge on (v2: test-a new draws, test-b unseen tasks, test-c unseen bases; v1: test)."""
    max_instances: int = 8
    """Judge the first N instances of the split (0 = all 24 of a v2 split: ~3x the time)."""
    knobs: str = ""
    """Tuned heuristic knobs YAML ('' = the packaged configs/heuristics_v2.yaml, tuned on the v2 train split)."""

    def __post_init__(self) -> None:
        check_range("timesteps", self.timesteps, 1)
        check_range("train_minutes", self.train_minutes, 0.0)
        check_range("seeds", self.seeds, 1)
        check_range("workers", self.workers, 1)
        check_range("max_instances", self.max_instances, 0)


@dataclass
class ExportJob:
    """``govgym export``: a trained agent or a heuristic as a numpy-only governor artifact."""

    instances: str = ""
    """Instance-set YAML whose env.interval_steps is the decision interval K ('' = the agent's training set; packaged configs/instances_v1.yaml for a heuristic)."""
    knobs: str = ""
    """A heuristic's tuned knobs YAML (`govgym tune`, e.g. configs/heuristics_v2.yaml; '' = the packaged ones of the instance set's version)."""


@dataclass
class DeployJob:
    """``govgym deploy``: fine-tune through the HF Trainer with a governor, vs the fixed budget and EarlyStoppingCallback."""

    governor: str = "marginal_gain"
    """An artifact folder written by `govgym export`, or a heuristic spec (patience, marginal_gain:kappa=4)."""
    budget_epochs: float = 3.0
    """The budget, in epochs of the train data (converted to FLOPs by the callback); the fixed run spends all of it."""
    interval: int = 0
    """K: optimizer steps between decisions and evaluations, the same in all three runs (0 = the governor's own K)."""
    lam: float = 0.3
    """Compute price the governor sees."""
    patience: int = 3
    """EarlyStoppingCallback's early_stopping_patience (evaluations without improvement)."""
    tolerance: float = 0.005
    """Equal quality: an eval loss within this fraction above the fixed run's final eval loss."""

    def __post_init__(self) -> None:
        if not isinstance(self.governor, str) or not self.governor.strip():
            raise ConfigError(
                f"governor: expected an artifact folder or a heuristic spec (e.g. patience); got {self.governor!r}."
            )
        # <= 1e6 epochs: the callback turns the budget into an integer step count and FLOPs; 1e300 would
        # overflow there (a float passes a plain range check and then fails as int(1e300 * steps/epoch))
        check_range("budget_epochs", self.budget_epochs, 1e-9, 1e6)
        check_range("interval", self.interval, 0)
        check_range("lam", self.lam, 0.0, 10.0)
        check_range("patience", self.patience, 1)
        check_range("tolerance", self.tolerance, 0.0, 1.0)


__all__ = [
    "CollectJob",
    "DeployJob",
    "DemoJob",
    "ExportJob",
    "PlotJob",
    "PruneJob",
    "ReplayJob",
    "RunJob",
    "StrategiesJob",
    "SwitchJob",
    "TuneJob",
]
