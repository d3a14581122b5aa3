"""``govgym outside``: a deployed governor judged on a run nothing in govgym's world resembles (issue 20, split d).

Every govgym run a governor learns from is a decoder-only causal LM on a next-token loss. Here the
model is a BERT-style encoder (``deploy/outside_base.py``: pretrained here by masked LM on the
standard library's pretrain half, cached like the bases) and the task is sequence classification
(``deploy/outside_task.py``: which stdlib package a function comes from), fine-tuned with a plain
``transformers.Trainer`` (``BertForSequenceClassification``), eval loss (cross-entropy) as the metric.

For each seed, on the same data, the same head initialisation and the same batch order, the harness
runs: the fixed budget; transformers' ``EarlyStoppingCallback`` (``patience``, ``threshold``); and each
governor of ``governors`` through ``GovernorCallback`` (a spec as ``govgym deploy`` takes: a shipped
name, a heuristic spec, or an exported folder). Every run carries a ``GovernorCallback`` (the fixed
run's and EarlyStoppingCallback's around ``fixed_budget``, which never stops) so FLOPs are counted by
one ledger (``deploy/ledger.py``: measured with ``FlopCounterMode``, evaluations included), and every
run evaluates at step 0 and every K steps. A governor only stops (a plain Trainer masks reprunes and
switches), so each run is a prefix of the fixed run on its seed; ``prefix_ok`` checks that it is (the
eval losses agree to 1e-4), i.e. that the runs differ in when they stopped and in nothing else.

What is reported (``deploy/outside_report.py``): per run and per policy, FLOPs used / the fixed run's,
final eval loss / the fixed run's, whether the run ended within ``tolerance`` of the fixed run's final
eval loss, the FLOPs at which it first got there; and each policy's paired differences to the fixed run
and to EarlyStoppingCallback over seeds, with paired bootstrap 95% intervals (``agents/bootstrap.py``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from govgym.deploy.outside_base import EncoderConfig
from govgym.deploy.outside_task import TaskConfig
from govgym.errors import ConfigError
from govgym.typed import check_choice, check_range

FIXED, ESC = "fixed", "early_stopping"
"""The two reference policies' labels (reserved: a governor may not be labelled so)."""


@dataclass
class OutsideJob:
    """``govgym outside``: governors vs the fixed budget vs EarlyStoppingCallback on a BERT classifier."""

    governors: list[str] = field(default_factory=lambda: ["default"])
    """Governor specs as `govgym deploy` takes them: shipped names (default, marginal_gain, patience), heuristic specs (patience:patience=2) or `govgym export` folders."""
    seeds: int = 5
    """Seeds (each: the head's initialisation, dropout and batch order; the data stays the same)."""
    budget_epochs: float = 8.0
    """The fixed budget, in epochs of the train split (the LR schedule is planned over it). 8 x 40 = 320 steps: the pretrained encoder's eval loss stays at ln(10) for ~100 steps, then falls (2.30 -> 1.91 by step 250)."""
    batch_size: int = 16
    """Train and eval batch size."""
    lr: float = 2e-3
    """Peak fine-tuning LR (linear decay to 0 over the budget). Measured: 5e-4 leaves the eval loss at ln(10) after 80 steps; 2e-3 takes it 2.30 -> 1.91 in 250."""
    warmup_ratio: float = 0.06
    """Share of the budget spent warming up the LR."""
    interval: int = 0
    """K, optimizer steps between evaluations and decisions in every run (0 = the governors' own K, which must agree)."""
    lam: float = 0.05
    """Compute price the governors see (issue 20 tried the outside run at 0.05: a user after the full budget's quality prices compute low)."""
    patience: int = 3
    """EarlyStoppingCallback's early_stopping_patience (evaluations without improvement)."""
    threshold: float = 0.0
    """EarlyStoppingCallback's early_stopping_threshold (an improvement must exceed it)."""
    tolerance: float = 0.005
    """Equal quality: a final eval loss within this fraction above the fixed run's."""
    objective: str = "price"
    """What the governors are told to pursue: price (λ per budget fraction, `lam`) | equal_quality (they get
    `tolerance` as GovernorCallback's tolerance=, their 21st feature; `lam` still prices nothing else)."""
    resamples: int = 10_000
    """Bootstrap resamples per interval."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The encoder (shape, MLM pretraining, cache)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The classification task."""

    def __post_init__(self) -> None:
        if not self.governors:
            raise ConfigError("governors: empty; name at least one, e.g. governors=[default].")
        for i, g in enumerate(self.governors):
            if not isinstance(g, str) or not g.strip():
                raise ConfigError(
                    f"governors[{i}]: expected a shipped name, a heuristic spec or an artifact folder; got {g!r}."
                )
        check_range("seeds", self.seeds, 1, 1000)
        check_range("budget_epochs", self.budget_epochs, 0.0, 1e4, lo_open=True)  # int(steps) must hold it
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        check_range("warmup_ratio", self.warmup_ratio, 0.0, 0.5)
        check_range("interval", self.interval, 0, 1_000_000)
        check_range("lam", self.lam, 0.0, 10.0)
        check_range("patience", self.patience, 1, 1_000_000)
        check_range("threshold", self.threshold, 0.0, 100.0)
        check_range("tolerance", self.tolerance, 0.0, 1.0)
        check_choice("objective", self.objective, ("price", "equal_quality"))
        check_range("resamples", self.resamples, 100, 10_000_000)
        if self.task.max_len > self.encoder.max_len:
            raise ConfigError(
                f"task.max_len: {self.task.max_len} tokens exceed the encoder's {self.encoder.max_len} positions; "
                f"set task.max_len<={self.encoder.max_len} or encoder.max_len={self.task.max_len}."
            )


def resolve_governors(specs: list[str], tolerance: float | None = None) -> list[tuple[Any, str]]:
    """(governor, label) of each spec, as ``govgym deploy`` resolves it (``governor_from_spec``; ``default`` is
    the shipped default of the objective: equal quality when ``tolerance`` is given); labels unique."""
    from govgym.deploy.artifact import governor_from_spec

    out = [governor_from_spec(s, key=f"governors[{i}]", tolerance=tolerance)[:2] for i, s in enumerate(specs)]
    labels = [lab for _, lab in out]
    if len(set(labels)) != len(labels) or {FIXED, ESC} & set(labels):
        raise ConfigError(
            f"governors: labels {labels} repeat or use a reserved one ({FIXED}, {ESC}); name each governor once."
        )
    return out


def decision_interval(job: OutsideJob, govs: list[tuple[Any, str]]) -> int:
    """K: ``job.interval``, else the governors' own K (they must agree)."""
    if job.interval:
        return job.interval
    ks = {lab: int(getattr(g, "interval_steps", 0) or 0) for g, lab in govs}
    if len(set(ks.values())) != 1 or min(ks.values()) < 1:
        raise ConfigError(
            f"interval: the governors decide every {ks} steps; one K is needed for every run (the references "
            "evaluate on it too): pass interval=K."
        )
    return next(iter(ks.values()))


# ----------------------------------------------------------------------------- one run


def budget_steps(job: OutsideJob, n_train: int, k: int) -> int:
    """The fixed budget in optimizer steps: ``budget_epochs`` of the train split, rounded to whole intervals.

    Whole intervals (at least one): the Trainer evaluates every K steps, so a budget between two
    multiples of K would train steps after its last evaluation that no final eval loss reflects.
    """
    per_epoch = max(math.ceil(n_train / job.batch_size), 1)
    return k * max(1, round(job.budget_epochs * per_epoch / k))


def _one_run(
    enc_dir: Path,
    data: dict[str, Any],
    job: OutsideJob,
    seed: int,
    gov: Any,
    esc: bool,
    k: int,
    steps: int,
    tmp: str,
) -> dict[str, Any]:
    """One Trainer run of the classifier on ``seed``: its decisions, FLOPs, eval losses and accuracy."""
    import numpy as np
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from govgym.deploy.callback import GovernorCallback
    from govgym.deploy.outside_base import load_classifier

    model, _ = load_classifier(enc_dir, len(data["classes"]), seed)
    tol = job.tolerance if job.objective == "equal_quality" else None
    cb = GovernorCallback(gov, budget_steps=steps, lam=job.lam, interval_steps=k, tolerance=tol)
    callbacks: list[Any] = [cb]
    over: dict[str, Any] = {}
    if esc:
        callbacks.append(
            EarlyStoppingCallback(
                early_stopping_patience=job.patience, early_stopping_threshold=job.threshold
            )
        )
        # compared as it stands where it stopped (no checkpoints, so no load_best_model_at_end), as in deploy
        over = {"metric_for_best_model": "eval_loss", "greater_is_better": False}
    args = TrainingArguments(
        output_dir=str(Path(tmp) / "run"),
        max_steps=steps,
        per_device_train_batch_size=job.batch_size,
        per_device_eval_batch_size=job.batch_size,
        learning_rate=job.lr,
        warmup_steps=math.ceil(
            job.warmup_ratio * steps
        ),  # explicit steps: transformers 5 dropped warmup_ratio
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=k,
        eval_on_start=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        **over,
    )

    def accuracy(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, axis=-1) == p.label_ids).mean())}

    trainer = Trainer(
        model,
        args,
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        data_collator=default_data_collator,  # rows are padded to task.max_len: every step costs the same
        callbacks=callbacks,
        compute_metrics=accuracy,
    )
    for quiet in (PrinterCallback, ProgressCallback):  # the table is the output, not the Trainer's lines
        trainer.remove_callback(quiet)
    log = logging.getLogger("transformers.trainer_callback")
    level = log.level
    log.setLevel(logging.ERROR)  # EarlyStoppingCallback's note about load_best_model_at_end (said above)
    t0 = time.time()
    try:
        trainer.train()
    finally:
        log.setLevel(level)
    evals = [r for r in trainer.state.log_history if "eval_loss" in r]
    return {
        "decisions": [{k2: v for k2, v in d.items() if k2 not in ("obs", "mask")} for d in cb.decisions],
        "evals": [(int(r["step"]), float(r["eval_loss"]), float(r["eval_accuracy"])) for r in evals],
        "flops_used": float(sum(cb.flops.values())),
        "budget_flops": float(cb.budget or 0.0),
        "budget_steps": steps,
        "stop_step": int(trainer.state.global_step),
        "shielded": bool(cb.shielded),
        "shield_fired": int(cb.shield_fired),
        "ended": cb.ended if not (esc and trainer.state.global_step < steps) else "early_stopping",
        "seconds": round(time.time() - t0, 1),
    }


def _fresh(gov: Any) -> Any:
    """A copy of the governor with fresh episode state (heuristics keep counters between runs)."""
    g = copy.deepcopy(gov)
    with contextlib.suppress(Exception):
        g.reset()
    return g


# ----------------------------------------------------------------------------- the harness


def outside(job: OutsideJob, out: Path, progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run every policy on every seed; print the tables; write ``outside*.csv/json``, ``runs.json(l)``, ``outside.png``.

    Args:
        job: what to run (see ``OutsideJob``).
        out: the results folder (checked writable by the CLI before anything runs).
        progress: a progress bar over the runs (and the encoder's pretraining on first use).

    Returns:
        ``{"summary": per-policy rows, "runs": per-run rows, "paired": paired-difference rows}``.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from govgym.agents.heuristics import make_policy
    from govgym.deploy import outside_report as report
    from govgym.deploy.outside_base import check_encoder, ensure_encoder
    from govgym.deploy.outside_task import build_task
    from govgym.efficiency.basemodel import clean_stale_tmp, progress_bars
    from govgym.results import format_table, write_json, write_rows

    tol = job.tolerance if job.objective == "equal_quality" else None
    govs = resolve_governors(job.governors, tol)  # every spec checked before the encoder is built
    k = decision_interval(job, govs)
    t_start = time.time()
    enc_dir = ensure_encoder(job.encoder, progress)
    enc_meta = check_encoder(enc_dir, job.encoder)
    data = build_task(job.task, AutoTokenizer.from_pretrained(enc_dir, local_files_only=True))
    t_ready = time.time()
    steps = budget_steps(job, len(data["train"]), k)
    fixed = make_policy("fixed_budget", list(govs[0][0].action_names))
    plan = [(FIXED, fixed, False), (ESC, fixed, True), *[(lab, g, False) for g, lab in govs]]
    # the runs' Trainer folders: under one parent, named with this pid, so that those of a run killed
    # with kill -9 (no cleanup runs) are removed by the next one, first thing
    scratch = Path(tempfile.gettempdir()) / "govgym-outside"
    scratch.mkdir(exist_ok=True)
    clean_stale_tmp(scratch)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "runs.jsonl"  # each run as it finishes: a crash later loses no run
    partial.write_text("")
    runs: list[dict[str, Any]] = []
    bar = tqdm(total=job.seeds * len(plan), desc="govgym outside", unit="run", disable=not progress)
    # one bar over the runs; transformers' weight-loading bar of every run would drown it
    with progress_bars(False):
        for seed in range(job.seeds):
            for label, gov, esc in plan:
                bar.set_postfix_str(f"seed {seed} {label}")
                with tempfile.TemporaryDirectory(prefix=f".tmp-runs-{os.getpid()}-", dir=scratch) as tmp:
                    r = _one_run(enc_dir, data, job, seed, _fresh(gov), esc, k, steps, tmp)
                runs.append({"policy": label, "seed": seed, **r})
                with partial.open("a") as f:
                    f.write(json.dumps(runs[-1]) + "\n")
                bar.update()
    bar.close()
    tables = report.tables(runs, job.tolerance, job.resamples)
    meta = {
        "governors": {lab: spec for (_, lab), spec in zip(govs, job.governors)},
        "job": asdict(job),
        "interval_steps": k,
        "budget_steps": steps,
        "budget_epochs_rounded": steps / max(math.ceil(len(data["train"]) / job.batch_size), 1),
        "budget_flops": runs[0]["budget_flops"],
        "classes": data["classes"],
        "functions_per_class": data["counts"],
        "train_rows": len(data["train"]),
        "eval_rows": len(data["eval"]),
        "encoder": {"path": str(enc_dir), **{k2: v for k2, v in enc_meta.items() if k2 != "recipe"}},
        "setup_seconds": round(t_ready - t_start, 1),
        "run_seconds": round(time.time() - t_ready, 1),
    }
    # shown before anything is written: a failed write loses no result
    print(format_table(tables["summary"]))
    print()
    print(format_table(tables["paired"]))
    print(
        f"equal quality: final eval loss <= the fixed run's x (1 + {job.tolerance:g}) on the same seed; "
        f"paired differences: mean over {job.seeds} seed(s) with a paired bootstrap 95% interval; "
        f"{len(data['classes'])} classes, {len(data['train'])} train / {len(data['eval'])} eval rows, "
        f"{meta['budget_steps']} steps, K={k}, encoder {enc_meta['n_params']:,} parameters"
    )
    write_rows(out, "outside", tables["summary"], meta)
    write_rows(out, "outside_runs", tables["runs"], meta)
    write_rows(out, "outside_paired", tables["paired"], meta)
    write_json(out / "runs.json", {"meta": meta, "runs": runs})
    report.plot(runs, job.seeds, out / "outside.png")
    print(
        f"wrote {out}/outside.csv/json, outside_runs.csv/json, outside_paired.csv/json, runs.json, outside.png "
        f"(setup {meta['setup_seconds']:.0f} s, runs {meta['run_seconds']:.0f} s)"
    )
    return tables


__all__ = ["ESC", "FIXED", "OutsideJob", "budget_steps", "decision_interval", "outside", "resolve_governors"]
