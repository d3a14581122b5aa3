"""Instances: what one episode fine-tunes, under which budget, cap, price and schedule.

An instance set is a YAML file with a shared ``run:`` base config, env settings and explicit ``train``
and ``test`` lists. Each instance fixes base model and data (as RunConfig overrides), budget in
FLOPs, memory cap and its availability schedule, start strategy, λ and seed::

    run: {...}                      # RunConfig fields shared by every instance
    env: {interval_steps: 20, ...}  # EnvConfig
    train:                          # name, lam and budget_tflops or budget_epochs are required
      - name: noisy-full-80mb
        budget_tflops: 2.0
        cap_mb: 80
        cap_schedule: [{at: 0.3, cap_mb: 48}]   # a co-located job arrives at 30% of the budget
        start_strategy: full
        lam: 0.3
        seed: 1
        run: {data: {noise_rate: 0.2}}       # per-instance RunConfig overrides
    test: [...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from govgym.efficiency import caps
from govgym.efficiency.config import RunConfig
from govgym.efficiency.pruning import REPRUNE_SCORERS
from govgym.efficiency.strategy import Strategy
from govgym.errors import did_you_mean
from govgym.typed import (
    ConfigError,
    check_choice,
    check_name,
    check_range,
    deep_merge,
    from_dict,
    load_yaml,
    to_dict,
)

SPLITS = ("train", "test")
HOLDOUTS = ("a", "b", "c")
"""Held-out splits of a generated set: ``split='test-a'`` is the test instances with ``holdout: a``."""


@dataclass
class CapChange:
    """The memory available from a budget fraction on (a co-located job arriving or leaving)."""

    at: float = 0.5
    """Budget fraction spent at which the cap changes."""
    cap_mb: float = 0.0
    """The new cap in MiB (0 = no cap)."""

    def __post_init__(self) -> None:
        check_range("cap_schedule.at", self.at, 0.0, 1.0)
        check_range("cap_schedule.cap_mb", self.cap_mb, 0.0)


@dataclass
class Instance:
    """One episode's problem: workload, budget, memory, price, seed."""

    name: str
    """Unique name; ``reset(options={'instance': name})`` picks it. Letters, digits, '.', '_', '-' only
    (it becomes part of file names: traces, states, memo trees)."""
    lam: float
    """Compute price λ: reward = normalized eval improvement − λ × budget fraction used. Required."""
    budget_tflops: float | None = None
    """Compute budget in TFLOPs (every FLOP counts: training, evals, scoring, measurement). Set this or
    ``budget_epochs``."""
    budget_epochs: float | None = None
    """Compute budget as people set it: epochs of the instance's training set (as the Trainer's
    ``num_train_epochs``), converted at reset to FLOPs from the measured FLOPs per optimizer step of the
    start strategy plus one eval per decision interval (a fixed run spends exactly the budget). Set this
    or ``budget_tflops``."""
    cap_mb: float = 0.0
    """Memory cap in MiB at the start (0 = none). Virtual on CPU, real on CUDA. A cap below the
    measured peak of every strategy the episode can reach is refused at reset."""
    cap_schedule: list[CapChange] = field(default_factory=list)
    """Changes of the cap during the episode, by budget fraction."""
    start_strategy: str = "full"
    """Memory strategy at reset."""
    seed: int = 0
    """Instance seed (combined with the episode seed for the run)."""
    run: dict[str, Any] = field(default_factory=dict)
    """RunConfig overrides for this instance (model, data, optim ...)."""
    family: str = ""
    """The regime a reader can name (e.g. overfit, noisy, cap, clean, mix): results are also reported
    per family. '' = the part of the name before its first '-'."""
    holdout: str = ""
    """Held-out split of a generated set (FineTune-v2): '' (train, or not generated), 'a' (new draws of
    train tasks and bases), 'b' (tasks never in training), 'c' (bases never in training). Picked with
    ``split='test-a'`` etc."""
    draw: dict[str, Any] = field(default_factory=dict)
    """What ``govgym instances generate`` drew for this instance (task, base, lr multiple, ...): a record,
    not read by the env."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("instance.name: every instance needs a unique name.")
        check_name("instance.name", self.name)
        if not self.family:
            self.family = self.name.split("-", 1)[0]
        check_choice(f"{self.name}.holdout", self.holdout, ("", *HOLDOUTS))
        if (self.budget_tflops is None) == (self.budget_epochs is None):
            raise ConfigError(
                f"{self.name}.budget_tflops: instance {self.name!r} needs exactly one budget: budget_tflops "
                f"(FLOPs) or budget_epochs (epochs of its training set); got "
                f"{'both' if self.budget_tflops is not None else 'neither'}."
            )
        if self.budget_tflops is not None:
            check_range(f"{self.name}.budget_tflops", self.budget_tflops, 1e-6)
        else:
            check_range(f"{self.name}.budget_epochs", self.budget_epochs, 0.01, 100.0)
        check_range(f"{self.name}.cap_mb", self.cap_mb, 0.0)
        check_range(f"{self.name}.lam", self.lam, 0.0, 10.0)
        check_range(f"{self.name}.seed", self.seed, 0, 2**40)  # x1000 + episode seed stays below 2**63
        try:
            Strategy.parse(self.start_strategy)
        except ValueError as err:
            raise ConfigError(f"{self.name}.start_strategy: {err}") from None

    def cap_at(self, fraction: float) -> float:
        """The cap in force once ``fraction`` of the budget is spent."""
        return caps.cap_at(self.cap_mb, [(ch.at, ch.cap_mb) for ch in self.cap_schedule], fraction)


@dataclass
class EnvConfig:
    """How the environment steps and what its actions do."""

    interval_steps: int = 20
    """K: optimizer steps per env step (decision interval)."""
    switch_targets: list[str] = field(
        default_factory=lambda: ["full", "lora", "qlora", "lora+gc", "qlora+gc"]
    )
    """One switch action per target strategy."""
    reprune_fraction: float = 0.1
    """Fraction of the kept examples each reprune action drops."""
    reprune_scorer: str = "loss"
    """Scorer behind the reprune actions: loss | el2n | gradnorm (exact passes, FLOPs counted) |
    recorded (the losses the training steps recorded, 0 FLOPs, stale by at most one epoch)."""
    reprune_sample: int = 0
    """Exact scorers: score this many random kept examples per reprune and drop from those (raised to
    at least the number dropped); 0 = score the whole kept set. Must be 0 with ``recorded``."""
    min_kept_fraction: float = 0.5
    """Repruning below this fraction of the data is masked."""
    oom_penalty: float = 1.0
    """Reward added (negated) when the measured peak exceeds the cap."""
    crash_penalty: float = 1.0
    """Reward added (negated) when the run diverges or crashes."""
    version: int = 0
    """Dynamics version of the env made from this set when no id names one: 0 = govgym/FineTune-v0
    (the run's own ``optim.total_steps`` schedule); 1 = govgym/FineTune-v1 (the LR schedule is planned
    over the whole budget, as the Trainer plans ``num_train_epochs``, and advanced by FLOPs spent, so
    stopping early stops mid-schedule and a cheaper strategy after a switch moves along it slower)."""

    def __post_init__(self) -> None:
        check_range("env.interval_steps", self.interval_steps, 1, 10**6)  # K steps; 1e18 is no interval
        check_range("env.reprune_fraction", self.reprune_fraction, 0.01, 0.9)
        check_range("env.min_kept_fraction", self.min_kept_fraction, 0.0, 1.0)
        check_range("env.oom_penalty", self.oom_penalty, 0.0)
        check_range("env.crash_penalty", self.crash_penalty, 0.0)
        check_choice("env.version", self.version, (0, 1))
        if not self.switch_targets:
            raise ConfigError("env.switch_targets: empty; name at least one strategy, e.g. [full, lora].")
        for i, s in enumerate(self.switch_targets):
            try:
                Strategy.parse(s)
            except ValueError as err:
                raise ConfigError(f"env.switch_targets[{i}]: {err}") from None

        check_choice("env.reprune_scorer", self.reprune_scorer, REPRUNE_SCORERS)
        if isinstance(self.reprune_sample, bool) or not isinstance(self.reprune_sample, int):
            raise ConfigError(
                f"env.reprune_sample: got {self.reprune_sample!r} ({type(self.reprune_sample).__name__}); it must be "
                "a whole number of examples >= 0 (0 = score the whole kept set), e.g. 400."
            )
        check_range("env.reprune_sample", self.reprune_sample, 0)
        if self.reprune_sample and self.reprune_scorer == "recorded":
            raise ConfigError(
                f"env.reprune_sample: got {self.reprune_sample} with env.reprune_scorer=recorded, which ranks the "
                "whole kept set at 0 FLOPs; set reprune_sample: 0, or pick an exact scorer (loss, el2n, gradnorm)."
            )


@dataclass
class InstanceSet:
    """A base run config, env settings, and the train/test instances."""

    run: dict[str, Any] = field(default_factory=dict)
    env: EnvConfig = field(default_factory=EnvConfig)
    train: list[Instance] = field(default_factory=list)
    test: list[Instance] = field(default_factory=list)
    source: str = ""
    """Where the set was loaded from (filled in by ``load_instances``)."""

    def __post_init__(self) -> None:
        names = [i.name for i in self.train + self.test]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"instances: names must be unique across train and test; repeated: {', '.join(dup)}."
            )
        for inst in self.train + self.test:
            self.run_config(inst)  # fail at load time, not forty minutes into training

    def split(self, name: str) -> list[Instance]:
        """The instances of split ``name``: train, test, or test-a / test-b / test-c (by ``holdout``)."""
        if name not in SPLITS:
            check_choice("split", name, (*SPLITS, *(f"test-{h}" for h in HOLDOUTS)))
        if name.startswith("test-"):
            items = [i for i in self.test if i.holdout == name[5:]]
        else:
            items = self.train if name == "train" else self.test
        if not items:
            raise ConfigError(f"instances: the '{name}' split of {self.source or 'this set'} is empty.")
        return items

    def get(self, name: str) -> Instance:
        for inst in self.train + self.test:
            if inst.name == name:
                return inst
        hint = did_you_mean(str(name), [i.name for i in self.train + self.test])
        raise ConfigError(f"instance {name!r} is not in {self.source or 'this set'}.{hint}")

    def run_config(self, inst: Instance, episode_seed: int = 0) -> RunConfig:
        """The validated RunConfig of ``inst`` (its overrides on the shared base)."""
        data = deep_merge(self.run, inst.run)
        data = deep_merge(
            data,
            {
                "memory": {"strategy": inst.start_strategy, "cap_mb": inst.cap_mb},
                "seed": inst.seed * 1000 + episode_seed,
            },
        )
        try:
            return from_dict(RunConfig, data)
        except ConfigError as err:
            raise ConfigError(f"instance {inst.name!r}: {err}") from None


DEFAULT_VERSION = 1
"""The env version whose packaged instance set is the default of load_instances, evaluate, train, map, demo."""


def default_instances_path(version: int = DEFAULT_VERSION) -> Path:
    """The packaged instance set of govgym/FineTune-v{version} (default: v1; v2: the generated world)."""
    name = {0: "instances.yaml", 2: "instances_v2.yaml"}.get(version, "instances_v1.yaml")
    return Path(str(files("govgym.configs") / name))


def load_instances(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> InstanceSet:
    """Load and validate an instance set (default: the packaged ``configs/instances_v1.yaml``, FineTune-v1)."""
    p = Path(path) if path else default_instances_path()
    if not p.is_file():
        raise ConfigError(
            f"instances: {p} is not a file. Pass an instance-set YAML such as configs/instances.yaml."
        )
    data = deep_merge(load_yaml(p), overrides or {})
    data.pop("source", None)
    s = from_dict(InstanceSet, data)
    s.source = str(p)
    return s


__all__ = ["CapChange", "EnvConfig", "Instance", "InstanceSet", "load_instances", "to_dict"]
