"""``govgym transfer``: do policies learned on ~1M-parameter runs keep their savings at 10-20x the size?

The same held-out instances are fine-tuned at each model size (the instances' own model, the training
size, then the named larger bases of ``efficiency.basemodel.BASE_SIZES``, built and cached the same
offline way). At every size each policy (a governor artifact of ``govgym export``, or a heuristic spec)
is deployed zero-shot through a ``GovernedTrainer`` with a ``GovernorCallback`` on the instance's data,
beside the fixed budget (``fixed_budget``: never stops, never switches) on the same data and seed.

How an instance scales with the model (budget, memory cap, OOMs, the final eval loss of a run that
OOMed) is ``deploy/transfer_scaling.py``; what is reported per size and policy is ``deploy/transfer_report.py``.
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

# moved out of this module; re-exported so that existing imports keep working
from govgym.deploy.transfer_report import _plot, reach_flops, summarize  # noqa: F401
from govgym.deploy.transfer_scaling import (  # noqa: F401
    TRAIN_SIZE,
    _size_cfg,
    budget_steps,
    oom_intervals,
    scale_cap,
)
from govgym.efficiency import caps
from govgym.envs.actions import switch_target
from govgym.errors import ConfigError
from govgym.typed import check_range

logger = logging.getLogger(__name__)

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
