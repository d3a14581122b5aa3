"""``govgym transfer``: do policies learned on ~1M-parameter runs keep their savings at 10-20x the size?

The same held-out instances are fine-tuned at each model size (the instances' own model, the training
size, then the named larger bases of ``efficiency.basemodel.BASE_SIZES``, built and cached the same
offline way). At every size each policy (a governor artifact of ``govgym export``, or a heuristic spec)
is deployed zero-shot through a ``GovernedTrainer`` with a ``GovernorCallback`` on the instance's data,
beside the fixed budget (``fixed_budget``: never stops, never switches) on the same data and seed.

How an instance scales with the model:

- **Budget**: in optimizer steps of the instance's training set, i.e. epochs, which do not depend on
  the model. An instance with ``budget_epochs`` gives ``ceil(epochs x batches per epoch)`` steps; one
  with ``budget_tflops`` is converted once, at the training size, with the FLOPs of one optimizer step
  and one evaluation measured there (``envs.probe.strategy_costs``): steps = budget / (step FLOPs +
  eval FLOPs / K). The same steps are then the budget at every size (its FLOPs grow with the model).
  The Trainer plans its LR schedule over those steps (``max_steps``), as a Trainer user sets
  ``num_train_epochs``.
- **Memory cap**: ``cap_L = cap_S x peak_L(full) / peak_S(full)``, every cap of the instance's
  schedule alike: the cap keeps its headroom relative to full fine-tuning of the model at hand. Peaks
  are measured per size and strategy by ``efficiency.memstats`` exactly as the env measures them
  (``envs.probe.strategy_peaks``: one real step on a throwaway run).
- **What the governor sees, and OOMs**: on CPU the ``GovernorCallback`` enforces the env's virtual
  cap (``deploy/memory.py``): it is given the scaled cap, the scaled schedule and every strategy's
  peak measured at this size (the switch targets and the start strategy), so ``mem_frac`` and the
  cap masks are those the policy saw in training, and an interval whose strategy's peak exceeds the
  cap it ran under (set at the previous decision: the cap in force at that budget fraction) ends the
  run as an OOM, the fixed run's included. ``oom_intervals`` recomputes the OOMs post hoc from the
  decisions and must agree with the callback's record (checked, else ``RuntimeError``). On CUDA the
  governor sees the scaled cap and schedule over the real allocator peak; OOMs there are counted
  post hoc from the peaks measured at that size (the callback does not end the run).
- **Final eval loss** of a run that OOMed: the last evaluation before the OOM (the over-cap state
  would not exist); its FLOPs include the interval that OOMed.

Reported per size and policy (means over instances x seeds): final eval loss and its ratio to the
fixed run's; FLOPs used / fixed; FLOPs-to-equal-quality / fixed (FLOPs at the first evaluation within
``tolerance`` of the fixed run's final eval loss; runs that never get there are counted in
``reached``); OOMs under the scaled cap; savings at equal quality (``1 - FLOPs used / fixed`` for a run
whose final eval loss is within ``tolerance`` of the fixed run's, 0 for one that lost quality) and
``kept`` = savings at this size / savings at the training size.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym.efficiency import caps
from govgym.envs.actions import switch_target
from govgym.errors import ConfigError
from govgym.typed import check_range

logger = logging.getLogger(__name__)

TRAIN_SIZE = "train"
"""The label of the instances' own model (the size the policies were trained at)."""
DEFAULT_V0_NAMES = ["m-crunch-n00-b1-l0.05", "m-tight-n00-b1-l0.5"]
"""Held-out FineTune-v0 instances of the default table, both 1 TFLOP at the training size (~120-130
steps): a low price (λ=0.05, so policies run long enough to reach the fixed run's quality) with a cap
that falls from 75 to 30 MiB at 40% of the budget (below full fine-tuning's peak: a run still in full
there OOMs), and a LoRA start under a static 55 MiB cap (λ=0.5). Sized for the 30-minute bound on 2
CPU cores with the 10m size and 3 seeds."""
DEFAULT_V1_NAMES = ["of-c2d-n300-e6-l0.2", "cap-c2d-arrive0.4-l0.05"]
"""Held-out FineTune-v1 instances of the default table: one per regime where a governor can save or
must act. Overfit (300 examples, 6 epochs): the fixed run overshoots its best evaluation, so savings at
equal quality exist to be kept. Cap: a co-located job arrives at 40% of the budget and lowers the cap
below full fine-tuning's peak, so only a policy that stops or switches first avoids the OOM (the
"0 OOMs under caps" goal)."""


@dataclass
class TransferJob:
    """``govgym transfer``: each policy deployed zero-shot at each model size on the same held-out instances."""

    sizes: list[str] = field(default_factory=list)
    """Bases to run besides the training size: named (efficiency.basemodel.BASE_SIZES: 10m, 20m), model keys (h256-l4-a4[-i704][-p1200]) or a local HF causal-LM directory (deploy/bases.py); [] = [10m] on CPU, [10m, 20m] on CUDA."""
    policies: list[str] = field(default_factory=lambda: ["patience", "marginal_gain"])
    """Heuristic specs (tuned knobs of configs/heuristics.yaml when named plainly; patience:patience=2) or artifact folders of `govgym export`."""
    instances: str = ""
    """Instance-set YAML ('' = the packaged FineTune-v1 set when it loads in this build, else FineTune-v0's configs/instances.yaml)."""
    split: str = "test"
    """Instance split the instances come from: train | test."""
    names: list[str] = field(default_factory=list)
    """Instances of the split to run ([] = DEFAULT_V1_NAMES or DEFAULT_V0_NAMES when the split has them, else its first two)."""
    seeds: int = 3
    """Seeds per instance and size (the run's seed; the instance's data stays the same)."""
    tolerance: float = 0.005
    """Equal quality: an eval loss within this fraction above the fixed run's final eval loss."""
    device: str = "auto"
    """auto (CUDA when available) | cpu | cuda."""

    def __post_init__(self) -> None:
        from govgym.deploy.bases import base_overrides

        for i, s in enumerate(self.sizes):
            if s == TRAIN_SIZE:
                raise ConfigError(
                    f"sizes[{i}]: {s!r} is always run (it is the reference of 'kept'); list only the larger "
                    f"sizes, e.g. sizes=[10m]."
                )
            base_overrides(s, key=f"sizes[{i}]")  # a named size, model keys or a model directory
        if len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(
                f"sizes: {self.sizes} names a size twice; name each once, e.g. sizes=[10m,20m]."
            )
        if not self.policies:
            raise ConfigError("policies: empty; name at least one, e.g. policies=[patience,marginal_gain].")
        for i, p in enumerate(self.policies):
            if not isinstance(p, str) or not p.strip():
                raise ConfigError(
                    f"policies[{i}]: expected a heuristic spec or an artifact folder; got {p!r}."
                )
        if self.split not in ("train", "test"):
            raise ConfigError(f"split: got {self.split!r}; allowed: train, test.")
        check_range("seeds", self.seeds, 1)
        check_range("tolerance", self.tolerance, 0.0, 1.0)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: got {self.device!r}; allowed: auto, cpu, cuda.")


# ----------------------------------------------------------------------------- pure helpers


def scale_cap(cap_mb: float, peak_small_full: float, peak_large_full: float) -> float:
    """A cap of the training size at another size: ``cap x peak_large(full) / peak_small(full)`` (0 stays 0).

    Args:
        cap_mb: the instance's cap at the training size, MiB (0 = none).
        peak_small_full: measured peak of full fine-tuning at the training size, MiB.
        peak_large_full: measured peak of full fine-tuning at the target size, MiB.
    """
    if cap_mb <= 0:
        return 0.0
    if not (peak_small_full > 0 and peak_large_full > 0):
        raise ConfigError(
            f"transfer: cannot scale the cap {cap_mb:g} MiB: the measured full fine-tuning peaks are "
            f"{peak_small_full!r} (training size) and {peak_large_full!r} (target size); both must be > 0."
        )
    return float(cap_mb) * float(peak_large_full) / float(peak_small_full)


def budget_steps(inst: Any, per_epoch: int, step_flops: float, eval_flops: float, k: int) -> int:
    """An instance's budget in optimizer steps (size-free: epochs of its training set).

    ``budget_epochs``: ``ceil(epochs x per_epoch)``. ``budget_tflops``: the steps the training size
    affords with one evaluation per K steps, ``budget / (step FLOPs + eval FLOPs / K)``.
    """
    if inst.budget_epochs is not None:
        return max(math.ceil(inst.budget_epochs * per_epoch), 1)
    return max(int(inst.budget_tflops * 1e12 / (step_flops + eval_flops / k)), 1)


def reach_flops(decisions: list[dict[str, Any]], target: float) -> float:
    """FLOPs used at the first decision whose eval loss is <= ``target`` (nan: never; an OOM row does not count)."""
    return next(
        (float(d["flops_used"]) for d in decisions if d["eval_loss"] <= target and not d.get("error")),
        float("nan"),
    )


def oom_intervals(
    decisions: list[dict[str, Any]],
    peaks: dict[str, float],
    cap0: float,
    schedule: list[tuple[float, float]] | None = None,
) -> list[int]:
    """Steps at whose decision the interval just run exceeded the cap it ran under (the env's rule).

    The decision log replayed through ``deploy.memory.MemoryCap.end_interval``, the code the
    ``GovernorCallback`` enforces the cap with: the interval after the first decision (E_0, the env's
    reset) runs under ``cap0``; after each later one under the schedule's cap at the budget fraction used.
    It OOMs when the peak of the strategy it ran under (the next decision's ``strategy``) exceeds that cap
    (> 0): a policy has one decision to react to a cap that falls, as in training. Unlike a live run, the
    replay goes on after an OOM (the fixed budget runs its whole budget as the quality reference).

    Args:
        decisions: the decision log's rows (``step``, ``budget_frac``, ``strategy``).
        peaks: measured peak MiB of every strategy the run was under.
        cap0: the (scaled) cap at the start, MiB (0 = none).
        schedule: the (scaled) ``(at, cap_mb)`` changes.
    """
    from govgym.deploy.memory import MemoryCap, check_cap_schedule

    mem, out = MemoryCap(cap0, check_cap_schedule(schedule), dict(peaks)), []
    for d in decisions[1:]:  # the first decision (step 0) follows no interval
        if mem.end_interval(d["strategy"], float(d["budget_frac"])) is not None:
            out.append(int(d["step"]))
            mem.advance(float(d["budget_frac"]))  # the replay goes on under the next cap
    return out


def summarize(runs: list[dict[str, Any]], tolerance: float, sizes: list[str]) -> list[dict[str, Any]]:
    """One row per (size, policy) over the runs (one per instance x seed x size x policy, fixed included)."""
    fixed = {(r["size"], r["instance"], r["seed"]): r for r in runs if r["policy"] == "fixed"}
    rows: list[dict[str, Any]] = []
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    savings_at: dict[tuple[str, str], float] = {}
    for size in sizes:
        for pol in policies:
            mine = [r for r in runs if r["size"] == size and r["policy"] == pol]
            if not mine:
                continue
            finals, used, reach, sav, ooms = [], [], [], [], 0
            for r in mine:
                ref = fixed.get((size, r["instance"], r["seed"]))
                if ref is None:
                    continue
                target = ref["final_eval"] * (1 + tolerance)
                finals.append(r["final_eval"] / ref["final_eval"])
                used.append(r["flops_used"] / ref["flops_used"])
                reach.append(reach_flops(r["decisions"], target) / ref["flops_used"])
                sav.append(1 - used[-1] if r["final_eval"] <= target else 0.0)
                ooms += int(bool(r["oom_steps"]))
            if not finals:
                continue
            got = [x for x in reach if math.isfinite(x)]
            savings = float(np.mean(sav))
            savings_at[(size, pol)] = savings
            rows.append(
                {
                    "size": size,
                    "params": mine[0]["params"],
                    "policy": pol,
                    "runs": len(finals),
                    "final_eval": float(np.mean([r["final_eval"] for r in mine])),
                    "final_vs_fixed": float(np.mean(finals)),
                    "flops_vs_fixed": float(np.mean(used)),
                    "eq_quality_vs_fixed": float(np.mean(got)) if got else float("nan"),
                    "reached": f"{len(got)}/{len(reach)}",
                    "savings": savings,
                    "kept": float("nan"),
                    "flops_saved_kept": float("nan"),
                    "ooms": ooms,
                    "flops_used": float(np.mean([r["flops_used"] for r in mine])),
                }
            )
    raw = {(r["size"], r["policy"]): 1 - r["flops_vs_fixed"] for r in rows}
    for row in rows:
        if row["policy"] == "fixed":
            continue
        base = savings_at.get((TRAIN_SIZE, row["policy"]), float("nan"))
        if base > 0:
            row["kept"] = row["savings"] / base
        base_raw = raw.get((TRAIN_SIZE, row["policy"]), float("nan"))
        if base_raw > 0:  # the FLOPs saved, whatever the quality: does the policy behave alike at both sizes?
            row["flops_saved_kept"] = (1 - row["flops_vs_fixed"]) / base_raw
    return rows


# ----------------------------------------------------------------------------- instances and policies


def default_instance_set(path: str) -> tuple[Any, str]:
    """(instance set, note): ``path``, or the packaged v1 set when it loads here, else v0's."""
    from govgym.envs.instances import default_instances_path, load_instances

    if path:
        return load_instances(path), ""
    try:
        return load_instances(default_instances_path(1)), ""
    except ConfigError as err:
        note = (
            f"instances: using FineTune-v0's configs/instances.yaml (FineTune-v1's set does not load in this "
            f"build: {str(err)[:160]})"
        )
        return load_instances(default_instances_path(0)), note


def pick_instances(iset: Any, split: str, names: list[str]) -> list[Any]:
    """The instances to run: ``names`` (each checked) or the default selection of the split."""
    items = iset.split(split)
    if names:
        from govgym.errors import did_you_mean

        by_name = {i.name: i for i in items}
        for j, n in enumerate(names):
            if n not in by_name:
                raise ConfigError(
                    f"names[{j}]: {n!r} is not an instance of the {split!r} split of {iset.source}."
                    f"{did_you_mean(n, by_name)} It has: {', '.join(by_name)}."
                )
        return [by_name[n] for n in names]
    by_name = {i.name: i for i in items}
    for default in (DEFAULT_V1_NAMES, DEFAULT_V0_NAMES):
        if all(n in by_name for n in default):
            return [by_name[n] for n in default]
    return items[:2]


def resolve_policy(spec: str, action_names: list[str], k: int) -> tuple[Any, str]:
    """(governor, label): an exported artifact (every check of ``load_governor``) or a heuristic spec."""
    from govgym.deploy.artifact import governor_from_spec

    gov, label, _ = governor_from_spec(spec, action_names, k, key="policies")
    return gov, label


# ----------------------------------------------------------------------------- runs


def _size_cfg(base_cfg: Any, size: str, sizes_table: dict[str, dict[str, Any]] | None = None) -> Any:
    from govgym.deploy.bases import base_overrides
    from govgym.efficiency.config import RunConfig
    from govgym.typed import deep_merge, from_dict, to_dict

    if size == TRAIN_SIZE:
        return copy.deepcopy(base_cfg)
    over = base_overrides(size, table=sizes_table)  # a named size, model keys or {"source": DIR}
    return from_dict(RunConfig, deep_merge(to_dict(base_cfg), {"model": dict(over)}))


def _one_run(
    cfg: Any,
    gov: Any,
    inst: Any,
    k: int,
    steps: int,
    cap_mb: float,
    tmp: str,
    cuda: bool,
    cap_schedule: list[tuple[float, float]] | None = None,
    memory_peaks: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One GovernedTrainer run of ``inst`` at ``cfg``'s model: decisions, FLOPs, final eval loss.

    ``cap_mb`` / ``cap_schedule``: the scaled cap and its schedule; ``memory_peaks``: the strategies'
    peaks at this size, given on CPU (the env's virtual cap, enforced by the callback), None on CUDA.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from govgym.deploy.callback import GovernorCallback
    from govgym.deploy.trainer import GovernedTrainer
    from govgym.deploy.trainer_args import training_args
    from govgym.efficiency.strategy import Strategy
    from govgym.efficiency.workload import load_workload

    wl = load_workload(cfg, progress=False)
    keep = ("input_ids", "labels")
    train = wl.train.remove_columns([c for c in wl.train.column_names if c not in keep])
    held = wl.eval.remove_columns([c for c in wl.eval.column_names if c not in keep])
    n_params = int(sum(p.numel() for p in wl.model.parameters()))  # the base's, before any adapters
    start = Strategy.parse(inst.start_strategy)
    lr = cfg.optim.lora_lr if start.base != "full" else cfg.optim.lr
    virtual = bool(memory_peaks) and not cuda
    cb = GovernorCallback(
        gov,
        budget_steps=steps,
        lam=inst.lam,
        interval_steps=k,
        cap_mb=cap_mb if cuda or virtual else 0.0,
        cap_schedule=cap_schedule if cuda or virtual else None,
        memory_peaks=memory_peaks if virtual else None,
    )
    trainer = GovernedTrainer(
        wl.model,
        training_args(cfg, str(Path(tmp) / "run"), k, steps, learning_rate=lr),
        train_dataset=train,
        eval_dataset=held,
        callbacks=[cb],
        memory=cfg.memory,
    )
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    if start.base != "full":
        trainer.switch_base(start.base)
    if start.gc:
        trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    t0 = time.time()
    trainer.train()
    evals = [float(d["eval_loss"]) for d in cb.decisions if not d.get("error")]  # not an over-cap state
    return {
        "params": n_params,
        "decisions": [{k2: v for k2, v in d.items() if k2 not in ("obs", "mask")} for d in cb.decisions],
        "flops_used": float(sum(cb.flops.values())),
        "budget_flops": float(cb.budget or 0.0),
        "final_eval": evals[-1],
        "best_eval": min(evals),
        "stop_step": int(trainer.state.global_step),
        "ended": cb.ended,
        "seconds": round(time.time() - t0, 1),
        "events": [{k2: v for k2, v in e.items() if k2 != "dropped_indices"} for e in trainer.events],
    }


def transfer(
    job: TransferJob,
    out: Path,
    progress: bool = True,
    sizes_table: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run the transfer table; print it; write ``transfer.csv/json``, ``runs.jsonl`` (as runs finish) and ``transfer.png``.

    Args:
        job: what to run (see ``TransferJob``).
        out: the results folder.
        progress: print a line per run.
        sizes_table: named sizes (default ``BASE_SIZES``); a name of ``job.sizes`` is looked up here.

    Returns:
        The table's rows (one per size and policy).
    """
    import torch

    from govgym.agents.heuristics import make_policy
    from govgym.deploy.artifact import interval_and_actions
    from govgym.deploy.bases import base_overrides
    from govgym.efficiency.basemodel import BASE_SIZES
    from govgym.efficiency.strategy import Strategy
    from govgym.envs.probe import strategy_costs, strategy_peaks
    from govgym.results import format_table, write_json, write_rows

    table = sizes_table if sizes_table is not None else BASE_SIZES
    cuda = job.device == "cuda" or (job.device == "auto" and torch.cuda.is_available())
    if job.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: cuda was asked for, but torch sees no CUDA device here; use device=auto or cpu."
        )
    sizes = list(job.sizes) or (["10m", "20m"] if cuda else ["10m"])
    for i, s in enumerate(sizes):
        base_overrides(s, key=f"sizes[{i}]", table=table)  # raises, naming the entry and the forms
    iset, note = default_instance_set(job.instances)
    if note:
        print(note)
    insts = pick_instances(iset, job.split, job.names)
    k, actions, _ = interval_and_actions(iset.source)
    k = iset.env.interval_steps
    targets = [t for t in map(switch_target, actions) if t is not None]
    govs = [resolve_policy(p, actions, k) for p in job.policies]
    labels = [lab for _, lab in govs]
    if len(set(labels)) != len(labels) or "fixed" in labels:
        raise ConfigError(
            f"policies: labels {labels} repeat or use the reserved 'fixed'; label them, e.g. p2=patience:patience=2."
        )
    fixed = make_policy("fixed_budget", list(actions))
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "runs.jsonl"
    partial.write_text("")
    runs: list[dict[str, Any]] = []
    all_sizes = [TRAIN_SIZE, *sizes]
    scales: dict[str, dict[str, Any]] = {}
    t_start = time.time()
    for inst in insts:
        base_cfg = iset.run_config(inst)
        base_cfg.device = "cuda" if cuda else "cpu"
        base_cfg.memory.cap_mb = 0.0
        # the size-free budget, fixed once at the training size
        step_fl, eval_fl, n_train = strategy_costs(base_cfg, inst.start_strategy)
        per_epoch = max(math.ceil(n_train / base_cfg.optim.batch_size), 1)
        # whole decision intervals (the env decides every K steps): the nearest multiple of K, at least K
        steps = max(k, k * int(budget_steps(inst, per_epoch, step_fl, eval_fl, k) / k + 0.5))
        peak_small = strategy_peaks(base_cfg, ["full"])["full"]
        for size in all_sizes:
            cfg = _size_cfg(base_cfg, size, table)
            peak_full = strategy_peaks(cfg, ["full"])["full"]
            ratio = peak_full / peak_small

            cap0 = scale_cap(inst.cap_mb, 1.0, ratio)
            schedule = [(c.at, scale_cap(c.cap_mb, 1.0, ratio)) for c in inst.cap_schedule]
            capped = cap0 > 0 or any(c > 0 for _, c in schedule)
            # every strategy the run can be under (the env probes the same set at reset)
            reach = sorted({Strategy.parse(s).name for s in [*targets, inst.start_strategy]})
            peaks_all = strategy_peaks(cfg, reach) if capped and not cuda else None

            scales[f"{inst.name}@{size}"] = {
                "budget_steps": steps,
                "epochs": steps / per_epoch,
                "peak_full_mb": peak_full,
                "cap_scale": ratio,
                "cap_mb": cap0,
                "cap_schedule": [{"at": at, "cap_mb": caps.cap_at(cap0, schedule, at)} for at, _ in schedule],
            }
            for seed in range(job.seeds):
                run_cfg = copy.deepcopy(cfg)
                run_cfg.seed = inst.seed * 1000 + seed
                for gov, label in [(fixed, "fixed"), *govs]:
                    # the fixed budget is the quality reference: it runs its whole budget, its OOMs counted
                    # after the fact (under an enforced cap it would end at the OOM, an easy bar to match)
                    enforce = None if label == "fixed" else peaks_all
                    with tempfile.TemporaryDirectory(prefix="govgym-transfer-") as tmp:
                        r = _one_run(run_cfg, _fresh(gov), inst, k, steps, cap0, tmp, cuda, schedule, enforce)
                    used = {d["strategy"] for d in r["decisions"]}
                    peaks = peaks_all or (strategy_peaks(run_cfg, sorted(used)) if capped else {})
                    r.update(
                        size=size,
                        instance=inst.name,
                        seed=seed,
                        policy=label,
                        oom_steps=oom_intervals(r["decisions"], peaks, cap0, schedule),
                        oom_enforced=enforce is not None,
                        peaks_mb=peaks,
                    )
                    runs.append(r)
                    with partial.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                    if progress:
                        print(
                            f"transfer: {inst.name} size={size} ({r['params'] / 1e6:.2f}M) seed={seed} {label}: "
                            f"final eval {r['final_eval']:.4f}, {r['flops_used'] / 1e12:.3f} TFLOP, stop step "
                            f"{r['stop_step']}/{steps} ({r['ended']}), OOMs {len(r['oom_steps'])}, {r['seconds']:.0f} s "
                            f"[{(time.time() - t_start) / 60:.1f} min]",
                            flush=True,
                        )
    rows = summarize(runs, job.tolerance, all_sizes)
    meta = {
        "instances": iset.source,
        "split": job.split,
        "names": [i.name for i in insts],
        "sizes": all_sizes,
        "policies": dict(zip(labels, job.policies)),
        "seeds": job.seeds,
        "tolerance": job.tolerance,
        "interval_steps": k,
        "device": "cuda" if cuda else "cpu",
        "scales": scales,
        "minutes": round((time.time() - t_start) / 60, 2),
        "cap_rule": "cap_L = cap_S x peak_L(full) / peak_S(full), peaks measured by efficiency.memstats",
        "oom_rule": (
            "CPU: the env's virtual cap, enforced by GovernorCallback (an OOM ends the run); "
            "CUDA: counted post hoc"
        ),
        "budget_rule": "optimizer steps (epochs) fixed at the training size, the same at every size",
    }
    write_rows(out, "transfer", rows, meta)
    write_json(out / "runs.json", {"meta": meta, "runs": runs})
    _plot(runs, all_sizes, out / "transfer.png")
    print(format_table(rows))
    print(
        f"equal quality: final eval loss <= the fixed run's x (1 + {job.tolerance:g}); savings = 1 - FLOPs used / "
        "fixed for such runs (0 otherwise); kept = savings / savings at the training size"
    )
    print(
        f"wrote {out}/transfer.csv, transfer.json, runs.json, runs.jsonl, transfer.png ({meta['minutes']} min)"
    )
    return rows


def _fresh(gov: Any) -> Any:
    """A copy of the governor with fresh episode state (heuristics keep counters between runs)."""
    g = copy.deepcopy(gov)
    with contextlib.suppress(Exception):
        g.reset()
    return g


def _plot(runs: list[dict[str, Any]], sizes: list[str], path: Path) -> None:
    from govgym.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    policies = list(dict.fromkeys(r["policy"] for r in runs))
    colors = {p: f"C{i}" for i, p in enumerate(policies)}
    for ax, size in zip(axes[0], sizes):
        mine = [r for r in runs if r["size"] == size]
        for r in mine:
            d = r["decisions"]
            xs, ys = [x["flops_used"] for x in d], [x["eval_loss"] for x in d]
            first = r["seed"] == 0 and r["instance"] == mine[0]["instance"]
            ax.plot(
                xs,
                ys,
                color=colors[r["policy"]],
                alpha=0.6,
                lw=2.5 if r["policy"] == "fixed" else 1.2,
                label=r["policy"] if first else None,
            )
            if r["ended"] in ("stop", "oom"):  # x: a stop; v: an OOM (the over-cap evaluation, plotted)
                mark = "x" if r["ended"] == "stop" else "v"
                ax.plot([xs[-1]], [ys[-1]], marker=mark, ms=8, color=colors[r["policy"]])
        params = mine[0]["params"] / 1e6 if mine else 0
        ax.set_title(f"{size} ({params:.1f}M params)")
        ax.set_xlabel("FLOPs used")
        ax.set_ylabel("eval loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "TRAIN_SIZE",
    "TransferJob",
    "budget_steps",
    "oom_intervals",
    "reach_flops",
    "scale_cap",
    "summarize",
    "transfer",
]
