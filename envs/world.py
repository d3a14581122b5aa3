"""The generated world: a declared distribution (YAML) -> a seeded, validated instance set.

    govgym instances generate --config configs/world_v2.yaml --out configs/instances_v2.yaml

A :class:`WorldSpec` names the tasks and bases of training and of each held-out split and the ranges
every knob is drawn from. :func:`generate` draws, with one ``numpy`` generator seeded by ``seed``, the
instances of four splits:

* ``train``: train tasks x train bases;
* ``test`` with ``holdout: a``: new draws of the same tasks and bases;
* ``holdout: b``: tasks never in training (leave-task-out), train bases;
* ``holdout: c``: bases never in training (a size and an architecture no train base has), train tasks.

Each instance records its ``draw`` (the values drawn, before they became RunConfig overrides) and a
``family`` labelled from it. A draw that cannot run is redrawn (at most ``max_redraws`` times, then the
whole generation is refused with an error): a budget under one decision interval, or a cap (at the
start or after a change) below the measured peak of every strategy the episode can reach. So a set
written by :func:`write_set` never holds an instance that fails at reset. Same spec and seed, same file
(byte for byte), whatever the machine's peaks, as long as the measured peaks put each cap on the same
side of its strategies (the caps are drawn as multiples of the measured peaks, and written rounded).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from govgym.efficiency.bases import LORA_TARGETS, WORLD_BASES
from govgym.efficiency.config import NOISE_KINDS
from govgym.efficiency.tasks import ALL_TASKS, PLAIN_TASKS
from govgym.envs.instances import EnvConfig, InstanceSet
from govgym.typed import ConfigError, check_choice, check_range, from_dict, load_yaml, to_dict

HOLDOUTS = ("a", "b", "c")
TASK_SHORT = {
    "doc2code": "d2c",
    "code2doc": "c2d",
    "body2name": "b2n",
    "sig2doc": "s2d",
    "nextline": "nxt",
    "docprose": "prose",
    "comments": "cmt",
}


@dataclass
class Range:
    """A number drawn uniformly (``log: true``: log-uniformly) from ``[lo, hi]``."""

    lo: float = 0.0
    """Lower end."""
    hi: float = 1.0
    """Upper end (>= lo)."""
    log: bool = False
    """Draw log-uniformly (both ends > 0)."""

    def __post_init__(self) -> None:
        check_range("range.lo", self.lo)
        check_range("range.hi", self.hi, self.lo)
        if self.log and self.lo <= 0:
            raise ConfigError(f"range.lo: {self.lo} with log: true; a log-uniform range needs lo > 0.")

    def draw(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return float(rng.uniform(self.lo, self.hi))


@dataclass
class SplitSpec:
    """Which tasks and bases a split draws from, and how many instances."""

    count: int = 0
    """Instances in the split."""
    tasks: list[str] = field(default_factory=list)
    """Tasks drawn uniformly (efficiency.tasks.ALL_TASKS)."""
    bases: list[str] = field(default_factory=list)
    """Bases drawn uniformly (efficiency.basemodel.WORLD_BASES)."""

    def __post_init__(self) -> None:
        check_range("split.count", self.count, 0)
        for i, t in enumerate(self.tasks):
            check_choice(f"split.tasks[{i}]", t, ALL_TASKS)
        for i, b in enumerate(self.bases):
            check_choice(f"split.bases[{i}]", b, WORLD_BASES)
        if self.count and not (self.tasks and self.bases):
            raise ConfigError("split: a split with count > 0 needs at least one task and one base.")


@dataclass
class WorldSpec:
    """The declared distribution of the generated world (``configs/world_v2.yaml``)."""

    seed: int = 0
    """Seed of every draw: same spec + seed -> same instance set."""
    run: dict[str, Any] = field(default_factory=dict)
    """RunConfig fields shared by every instance (seq_len, eval_examples, ...)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Env settings of the set (interval_steps, switch targets, reprune ...)."""
    train: SplitSpec = field(default_factory=SplitSpec)
    """The train split."""
    a: SplitSpec = field(default_factory=SplitSpec)
    """Held out (a): new draws of the train tasks and bases."""
    b: SplitSpec = field(default_factory=SplitSpec)
    """Held out (b): tasks never in training."""
    c: SplitSpec = field(default_factory=SplitSpec)
    """Held out (c): bases (a size and an architecture) never in training."""
    tuned_lr: dict[str, float] = field(default_factory=dict)
    """Full fine-tuning learning rate per base (the 1x of lr_mult); the LoRA lr is lora_lr_ratio x it."""
    lora_lr_ratio: float = 6.0
    """LoRA lr / full lr (FineTune-v1: 0.006 / 0.001)."""
    lr_mult: Range = field(default_factory=lambda: Range(0.3, 3.0, True))
    """Multiple of the tuned lr."""
    batch_sizes: list[int] = field(default_factory=lambda: [4, 8, 16])
    """Batch sizes drawn uniformly."""
    start_strategies: dict[str, float] = field(default_factory=lambda: {"full": 1.0})
    """Start strategy -> probability."""
    budget_epochs: Range = field(default_factory=lambda: Range(0.5, 8.0, True))
    """Budget in epochs of the instance's data."""
    intervals: Range = field(default_factory=lambda: Range(6, 20, True))
    """Decision intervals of the fixed run: with the epochs and batch size it sets the data size."""
    max_examples: Range = field(default_factory=lambda: Range(64, 1600))
    """Bounds of the data size (a data size outside is clipped to it; the intervals then follow)."""
    noise: dict[str, float] = field(default_factory=lambda: {"none": 1.0})
    """Noise kind -> probability: none, corrupt, shuffle, duplicate, mixed (all three)."""
    noise_rate: Range = field(default_factory=lambda: Range(0.1, 0.5))
    """Noise rate when a kind is drawn."""
    lam: Range = field(default_factory=lambda: Range(0.02, 0.5, True))
    """Compute price λ."""
    caps: dict[str, float] = field(default_factory=lambda: {"none": 1.0})
    """Cap schedule -> probability: none, arrive (a co-located job takes memory: full no longer fits),
    leave (start lean under a tight cap that is lifted), tight (a constant cap only lean strategies fit)."""
    cap_at: Range = field(default_factory=lambda: Range(0.2, 0.7))
    """Budget fraction at which a cap changes."""
    max_redraws: int = 50
    """Draws of one instance that cannot run before generation is refused."""

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0, 2**32 - 1)
        for name, probs, allowed in (
            ("noise", self.noise, ("none", *NOISE_KINDS, "mixed")),
            ("caps", self.caps, ("none", "arrive", "leave", "tight")),
            ("start_strategies", self.start_strategies, self.env.switch_targets),
        ):
            if not probs or sum(probs.values()) <= 0:
                raise ConfigError(f"{name}: give at least one choice with a positive probability.")
            for k, p in probs.items():
                check_choice(f"{name} key", k, allowed)
                check_range(f"{name}.{k}", p, 0.0)
        for i, b in enumerate(self.batch_sizes):
            check_range(f"batch_sizes[{i}]", b, 1, 4096)
        if not self.batch_sizes:
            raise ConfigError("batch_sizes: empty; give at least one batch size, e.g. [8].")
        used = {b for s in (self.train, self.a, self.b, self.c) for b in s.bases}
        missing = sorted(used - set(self.tuned_lr))
        if missing:
            raise ConfigError(f"tuned_lr: no learning rate for base(s) {', '.join(missing)}; add them.")
        for k, v in self.tuned_lr.items():
            check_range(f"tuned_lr.{k}", v, 0.0, 1.0, lo_open=True)
        check_range("lora_lr_ratio", self.lora_lr_ratio, 0.0, lo_open=True)
        check_range("max_redraws", self.max_redraws, 1)
        if set(self.b.tasks) & set(self.train.tasks):
            raise ConfigError(
                f"b.tasks: {sorted(set(self.b.tasks) & set(self.train.tasks))} are also train tasks; split (b) "
                "holds tasks never in training."
            )
        if set(self.c.bases) & set(self.train.bases):
            raise ConfigError(
                f"c.bases: {sorted(set(self.c.bases) & set(self.train.bases))} are also train bases; split (c) "
                "holds bases never in training."
            )


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> WorldSpec:
    """A validated WorldSpec from YAML (+ ``key=value`` overrides already parsed into a dict)."""
    from govgym.typed import deep_merge

    return from_dict(WorldSpec, deep_merge(load_yaml(path), overrides or {}))


def _pick(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def family_of(draw: dict[str, Any]) -> str:
    """The family a reader can name, from what was drawn (v1's names): overfit, noisy, cap, clean, mix.

    overfit: >= 3 epochs of clean data; noisy: a noise rate > 0; cap: a cap schedule; two of these at
    once: mix; none: clean.
    """
    traits = [
        draw["budget_epochs"] >= 3 and draw["noise"] == "none",
        draw["noise"] != "none",
        draw["cap"] != "none",
    ]
    if sum(traits) >= 2:
        return "mix"
    for name, t in zip(("overfit", "noisy", "cap"), traits):
        if t:
            return name
    return "clean"


PeakFn = Callable[[str, int, int, list[str]], dict[str, float]]
"""(base, batch size, seq_len, strategies) -> measured peak MiB of each strategy."""


def measured_peaks(spec: WorldSpec, cache_dir: str = "") -> PeakFn:
    """The peaks the env measures at reset (``envs.probe``), on a small clean workload of each base.

    The peak depends on the base's shapes, the batch shape and the strategy, not on the weights or the
    data's content, so one probe per (base, batch size, seq_len, strategy) serves every instance, run on a
    base of the same shapes pretrained for one step (the env measures again at reset, on the real base).
    """
    from govgym.efficiency.config import RunConfig
    from govgym.envs.probe import strategy_peaks
    from govgym.typed import deep_merge

    def fn(base: str, batch: int, seq_len: int, strategies: list[str]) -> dict[str, float]:
        run = deep_merge(spec.run, _base_run(base))
        # a peak depends on shapes (base, batch, seq_len, strategy), not on weights: measured on a base of
        # the same shapes pretrained 1 step (built in seconds), so generating never waits for pretraining
        run["model"]["pretrain_steps"] = 1
        run = deep_merge(
            run,
            {
                "data": {"task": "doc2code", "max_examples": 64, "noise_rate": 0.0, "seq_len": seq_len},
                "optim": {"batch_size": batch},
                "cache_dir": cache_dir,
            },
        )
        return strategy_peaks(from_dict(RunConfig, run), strategies)

    return fn


def _base_run(base: str) -> dict[str, Any]:
    over = dict(WORLD_BASES[base])
    arch = over.get("arch", "llama")
    return {"model": {"source": "default", **over}, "memory": {"lora_targets": list(LORA_TARGETS[arch])}}


def _draw(
    spec: WorldSpec, split: SplitSpec, rng: np.random.Generator, peaks: PeakFn
) -> tuple[dict[str, Any] | None, str]:
    """One draw: (the draw, '') or (None, why it cannot run)."""
    task = split.tasks[int(rng.integers(len(split.tasks)))]
    base = split.bases[int(rng.integers(len(split.bases)))]
    batch = int(spec.batch_sizes[int(rng.integers(len(spec.batch_sizes)))])
    epochs = round(spec.budget_epochs.draw(rng), 2)
    target_intervals = spec.intervals.draw(rng)
    k = spec.env.interval_steps
    n = int(round(target_intervals * k * batch / epochs))
    n = int(min(max(n, spec.max_examples.lo), spec.max_examples.hi))
    intervals = round(epochs * n / batch / k)
    noise = _pick(rng, spec.noise)
    rate = round(spec.noise_rate.draw(rng), 2) if noise != "none" else 0.0
    lr_mult = round(spec.lr_mult.draw(rng), 3)
    lam = round(spec.lam.draw(rng), 3)
    start = _pick(rng, spec.start_strategies)
    cap = _pick(rng, spec.caps)
    cap_at = round(spec.cap_at.draw(rng), 2)
    cap_u = float(rng.uniform(0.0, 1.0))
    data_seed = int(rng.integers(1, 2**31 - 1))
    draw = {
        "task": task,
        "base": base,
        "batch_size": batch,
        "budget_epochs": epochs,
        "max_examples": n,
        "intervals": intervals,
        "noise": noise,
        "noise_rate": rate,
        "lr_mult": lr_mult,
        "lam": lam,
        "start_strategy": start,
        "cap": cap,
        "cap_at": cap_at if cap in ("arrive", "leave") else None,
        "data_seed": data_seed,
    }
    if intervals < 1:
        return None, f"budget {epochs} epochs of {n} examples is under one interval of {k} steps"
    seq_len = int(spec.run.get("data", {}).get("seq_len", 128))
    cap_mb, schedule = 0.0, []
    if cap != "none":
        reach = sorted({*spec.env.switch_targets, start})
        pk = peaks(base, batch, seq_len, reach)
        lo, hi = min(pk.values()), max(pk.values())
        between = lo + (0.2 + 0.6 * cap_u) * (hi - lo)  # above the leanest, below the heaviest strategy
        if cap == "arrive":  # starts roomy (every strategy fits), then only lean ones fit
            cap_mb, schedule = round(1.25 * hi, 1), [{"at": cap_at, "cap_mb": round(between, 1)}]
        elif cap == "leave":  # starts tight, then lifted
            cap_mb, schedule = round(between, 1), [{"at": cap_at, "cap_mb": 0.0}]
            start = draw["start_strategy"] = min(reach, key=lambda s: pk[s])
        else:  # tight throughout: start on the leanest strategy
            cap_mb = round(between, 1)
            start = draw["start_strategy"] = min(reach, key=lambda s: pk[s])
        for c in [cap_mb, *(ch["cap_mb"] for ch in schedule)]:
            if 0 < c < lo:
                return None, f"a cap of {c} MiB is below every strategy's peak ({lo:.1f}-{hi:.1f} MiB)"
        if 0 < cap_mb < pk[start]:
            return None, f"the start cap {cap_mb} MiB is below {start}'s peak {pk[start]:.1f} MiB"
        draw["peaks_mb"] = {s: round(v, 2) for s, v in pk.items()}
    draw["cap_mb"], draw["cap_schedule"] = cap_mb, schedule
    return draw, ""


def _instance(spec: WorldSpec, name: str, draw: dict[str, Any], holdout: str) -> dict[str, Any]:
    lr = spec.tuned_lr[draw["base"]] * draw["lr_mult"]
    data: dict[str, Any] = {
        "task": draw["task"],
        "max_examples": draw["max_examples"],
        "noise_rate": draw["noise_rate"],
        "seed": draw["data_seed"],
        "response_only": draw["task"] not in PLAIN_TASKS,
    }
    if draw["noise"] not in ("none", "mixed"):
        data["noise_kinds"] = [draw["noise"]]
    run = {
        **_base_run(draw["base"]),
        "data": data,
        "optim": {
            "lr": float(f"{lr:.3g}"),
            "lora_lr": float(f"{lr * spec.lora_lr_ratio:.3g}"),
            "batch_size": draw["batch_size"],
        },
    }
    inst = {
        "name": name,
        "family": family_of(draw),
        "holdout": holdout,
        "budget_epochs": draw["budget_epochs"],
        "lam": draw["lam"],
        "seed": int(draw["data_seed"] % 2**40),
        "start_strategy": draw["start_strategy"],
        "cap_mb": draw["cap_mb"],
        "run": run,
        "draw": {k: v for k, v in draw.items() if k not in ("cap_mb", "cap_schedule")},
    }
    if draw["cap_schedule"]:
        inst["cap_schedule"] = draw["cap_schedule"]
    return inst


def generate(spec: WorldSpec, peaks: PeakFn) -> dict[str, Any]:
    """Draw every split of ``spec``; returns the instance set as a YAML-able dict (validated).

    Raises:
        ConfigError: one instance could not be drawn runnable in ``spec.max_redraws`` tries (the
            message gives the last reason), or the result fails the InstanceSet's own checks.
    """
    rng = np.random.default_rng(spec.seed)
    out: dict[str, Any] = {"run": spec.run, "env": to_dict(spec.env), "train": [], "test": []}
    refused = 0
    for split_name, holdout in (("train", ""), ("a", "a"), ("b", "b"), ("c", "c")):
        split: SplitSpec = getattr(spec, split_name)
        for i in range(split.count):
            why = ""
            for _ in range(spec.max_redraws):
                draw, why = _draw(spec, split, rng, peaks)
                if draw is not None:
                    break
                refused += 1
            else:
                raise ConfigError(
                    f"{split_name}[{i}]: no runnable draw in {spec.max_redraws} tries (last: {why}); widen the "
                    "ranges (budget_epochs, intervals, max_examples) or the cap settings."
                )
            prefix = "tr" if not holdout else f"ho{holdout}"
            fam = family_of(draw)
            name = f"{prefix}-{i:04d}-{fam}-{TASK_SHORT[draw['task']]}-{draw['base']}"
            (out["train"] if not holdout else out["test"]).append(_instance(spec, name, draw, holdout))
    out["generated"] = {"seed": spec.seed, "redrawn": refused}
    iset = dict(out)
    iset.pop("generated")
    from_dict(InstanceSet, iset)  # the set's own validation (names, run configs) before anything is written
    return out


HEADER = """\
# govgym/FineTune-v2 instance set, GENERATED by:
#   govgym instances generate --config {spec} --out {out}
# Do not edit by hand: edit the distribution ({spec}) and regenerate (same seed -> same file).
# Splits: train; test = held out, by `holdout`: a (new draws of train tasks/bases), b (tasks never in
# training), c (bases never in training: an unseen size and an unseen architecture).
# {counts}
"""


def write_set(data: dict[str, Any], out: Path, spec_path: str) -> Path:
    """Write the set as YAML (one instance per line, flow style) atomically; returns ``out``."""
    import os

    gen = data.get("generated", {})
    counts = {"train": len(data["train"])}
    for h in HOLDOUTS:
        counts[h] = sum(1 for i in data["test"] if i["holdout"] == h)
    head = HEADER.format(
        spec=spec_path,
        out=out,
        counts=f"instances: {json.dumps(counts)}; seed {gen.get('seed')}; draws redrawn as unrunnable: {gen.get('redrawn')}",
    )
    body = yaml.safe_dump(
        {k: data[k] for k in ("run", "env")}, sort_keys=False, default_flow_style=None, width=120
    )
    lines = [head, body]
    for split in ("train", "test"):
        lines.append(f"{split}:\n" if data[split] else f"{split}: []\n")  # a held-out-only set stays loadable
        for inst in data[split]:
            lines.append("  - " + yaml.safe_dump(inst, default_flow_style=True, width=10**6, sort_keys=False))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, out)
    return out


__all__ = ["HOLDOUTS", "WorldSpec", "family_of", "generate", "load_spec", "measured_peaks", "write_set"]
