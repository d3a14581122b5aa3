"""CLI jobs of deployment: ``govgym export`` (a policy as a numpy-only governor artifact) and
``govgym deploy`` (a governor in a real Hugging Face ``Trainer`` vs the fixed budget vs
``EarlyStoppingCallback``)."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govgym.deploy.artifact import META_FILE, artifact_bytes, export, is_agent_source, timed_load
from govgym.deploy.trainer_args import training_args
from govgym.efficiency.basemodel import clean_stale_tmp
from govgym.errors import ConfigError
from govgym.results import format_table, write_json, write_rows

if TYPE_CHECKING:
    from govgym.cli.options import DeployJob
    from govgym.efficiency.config import RunConfig


def export_governor(source: str, out: Path, instances: str = "", knobs: str = "") -> dict[str, Any]:
    """Export ``source`` (agent or heuristic spec) to ``out``; print the artifact's size and load time.

    For an agent the reference the artifact is checked against is SB3's own forward
    (``AgentPolicy``: the agent's safe files, no pickle), loaded here because deploy imports no SB3.
    """
    if instances:  # validated as every other command validates it, before anything is exported
        from govgym.envs.instances import load_instances

        load_instances(instances)
    reference = None
    if is_agent_source(source):
        from govgym.agents.policies import AgentPolicy

        reference = AgentPolicy(source)
    path = export(source, out, reference=reference, instances=instances, knobs=knobs)
    gov, seconds = timed_load(out)
    size = artifact_bytes(out)
    files = [META_FILE, *(["policy.safetensors"] if gov.kind == "agent" else [])]
    print(
        f"wrote {path.parent}/ ({', '.join(files)}): {gov.kind}, {len(gov.action_names)} actions, "
        f"K={gov.interval_steps} steps per decision; artifact size {size} bytes, load time {seconds * 1000:.2f} ms; "
        "actions match the source on 512 checked observations"
    )
    return {"path": str(path), "bytes": size, "load_ms": seconds * 1000, "kind": gov.kind}


def resolve_governor(spec: str) -> tuple[Any, str]:
    """(governor, label) of ``spec``: an artifact folder (or its governor.json), or a heuristic spec
    built with the packaged instance set's action names and interval (``deploy.artifact.governor_from_spec``)."""
    from govgym.deploy.artifact import governor_from_spec

    gov, label, _ = governor_from_spec(spec)
    return gov, f"governor ({label})"


_training_args = training_args  # moved to deploy/trainer.py (deploy/transfer.py uses it too)


def _one_run(
    cfg: RunConfig, name: str, gov: Any, job: DeployJob, k: int, tmp: str, log_path: Path, esc: bool
) -> dict[str, Any]:
    """One Trainer run on a fresh copy of the workload; its GovernorCallback counts the FLOPs."""
    from transformers import EarlyStoppingCallback, Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from govgym.deploy.callback import GovernorCallback
    from govgym.efficiency.workload import load_workload

    wl = load_workload(cfg, progress=False)
    train = wl.train.remove_columns([c for c in wl.train.column_names if c not in ("input_ids", "labels")])
    held = wl.eval.remove_columns([c for c in wl.eval.column_names if c not in ("input_ids", "labels")])
    per_epoch = max(math.ceil(len(train) / cfg.optim.batch_size), 1)
    steps = max(math.ceil(job.budget_epochs * per_epoch), 1)
    cb = GovernorCallback(
        gov, budget_epochs=job.budget_epochs, lam=job.lam, interval_steps=k, log_path=log_path
    )
    callbacks: list[Any] = [cb]
    over: dict[str, Any] = {}
    if esc:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=job.patience))
        # the stopped model is compared as it stands (no checkpoints, so no load_best_model_at_end):
        # its final eval loss is the last evaluation, its best eval loss the lowest
        over = {"metric_for_best_model": "eval_loss", "greater_is_better": False}
    trainer = Trainer(
        wl.model,
        _training_args(cfg, str(Path(tmp) / name), k, steps, **over),
        train_dataset=train,
        eval_dataset=held,
        callbacks=callbacks,
    )
    for quiet in (PrinterCallback, ProgressCallback):  # the table is the output, not the Trainer's log lines
        trainer.remove_callback(quiet)
    log = logging.getLogger("transformers.trainer_callback")
    level = log.level
    log.setLevel(logging.ERROR)  # EarlyStoppingCallback's note about load_best_model_at_end (said above)
    try:
        trainer.train()
    finally:
        log.setLevel(level)
    evals = [(int(r["step"]), float(r["eval_loss"])) for r in trainer.state.log_history if "eval_loss" in r]
    return {
        "name": name,
        "decisions": cb.decisions,
        "flops_used": float(sum(cb.flops.values())),
        "evals": evals,
        "stop_step": int(trainer.state.global_step),
        "ended": cb.ended,
        "budget_flops": cb.budget,
        "budget_steps": steps,
    }


def deploy_scratch() -> Path:
    """The parent of every deploy's temp folder, after removing those of deploys that were killed."""
    scratch = Path(tempfile.gettempdir()) / "govgym-deploy"
    scratch.mkdir(exist_ok=True)
    clean_stale_tmp(scratch)
    return scratch


def deploy_compare(cfg: RunConfig, out: Path, job: DeployJob, progress: bool = True) -> list[dict[str, Any]]:
    """Three Trainer runs on the same data and seed: the governor, the fixed budget, EarlyStoppingCallback.

    Every run carries a ``GovernorCallback`` (the fixed run's and EarlyStoppingCallback's with the
    ``fixed_budget`` governor, which never stops early) so FLOPs are counted the same way, and every
    run evaluates at step 0 and every K steps. Prints the table; writes ``deploy.csv/json``,
    ``decisions.json`` (the three decision logs) and ``deploy.png`` (eval loss vs FLOPs, decisions marked).
    """
    from govgym.agents.heuristics import make_policy

    # the runs' Trainer folders and logs: under one parent, named with this pid, so that a deploy killed
    # with kill -9 (no cleanup runs) has its folders removed by the next deploy, first thing
    scratch = deploy_scratch()
    gov, label = resolve_governor(job.governor)
    k = job.interval or int(getattr(gov, "interval_steps", 0) or 0)
    if k < 1:
        raise ConfigError(
            f"interval: the governor {job.governor!r} gives no decision interval; pass interval=K."
        )
    fixed = make_policy("fixed_budget", list(gov.action_names))
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix=f".tmp-runs-{os.getpid()}-", dir=scratch) as tmp:
        for name, g, esc in (
            (label, gov, False),
            ("fixed budget", fixed, False),
            ("EarlyStoppingCallback", fixed, True),
        ):
            if progress:
                print(f"deploy: training with {name} ...", flush=True)
            log = Path(tmp) / f"{len(runs)}.json"
            runs.append(_one_run(cfg, name, g, job, k, tmp, log, esc))
    ref = runs[1]
    target = ref["evals"][-1][1] * (1 + job.tolerance)
    rows = []
    for r in runs:
        losses = [e for _, e in r["evals"]]
        reach = next((d["flops_used"] for d in r["decisions"] if d["eval_loss"] <= target), float("nan"))
        rows.append(
            {
                "run": r["name"],
                "final_eval_loss": losses[-1],
                "best_eval_loss": min(losses),
                "flops_used": r["flops_used"],
                "flops_vs_fixed": r["flops_used"] / ref["flops_used"],
                "flops_to_equal_quality": reach,
                "equal_quality_vs_fixed": reach / ref["flops_used"],
                "stop_step": r["stop_step"],
                "ended": r["ended"],
            }
        )
    meta = {
        "governor": job.governor,
        "interval_steps": k,
        "budget_epochs": job.budget_epochs,
        "budget_steps": ref["budget_steps"],
        "budget_flops": ref["budget_flops"],
        "lam": job.lam,
        "patience": job.patience,
        "tolerance": job.tolerance,
        "equal_quality_target": target,
        "model_source": cfg.model.source,
        "data_source": cfg.data.source,
        "seed": cfg.seed,
    }
    print(format_table(rows))  # shown before anything is written: a failed write loses no result
    print(f"equal quality: eval loss <= {target:.4g} (the fixed run's final x (1 + {job.tolerance:g}))")
    write_rows(out, "deploy", rows, meta)
    write_json(out / "decisions.json", {"meta": meta, "runs": {r["name"]: r["decisions"] for r in runs}})
    _plot(runs, target, out / "deploy.png")
    print(f"wrote {out}/deploy.csv, deploy.json, decisions.json, deploy.png")
    return rows


def _plot(runs: list[dict[str, Any]], target: float, path: Path) -> None:
    from govgym.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = [("-", 3.0, "o"), ("--", 2.0, "."), (":", 1.5, ".")]  # identical curves stay visible
    for r, (ls, lw, mk) in zip(runs, styles):
        d = r["decisions"]
        xs, ys = [x["flops_used"] for x in d], [x["eval_loss"] for x in d]
        (line,) = ax.plot(xs, ys, ls=ls, lw=lw, marker=mk, ms=4, label=r["name"])
        if (
            d and r["ended"] == "trainer" and r["stop_step"] < r["budget_steps"]
        ):  # EarlyStoppingCallback's stop
            ax.annotate("early stop", (xs[-1], ys[-1]), fontsize=7, color=line.get_color())
            ax.plot([xs[-1]], [ys[-1]], marker="x", ms=9, color=line.get_color())
        for x in d:
            if x["action"] != "continue":
                ax.annotate(
                    x["action"], (x["flops_used"], x["eval_loss"]), fontsize=7, color=line.get_color()
                )
                ax.plot([x["flops_used"]], [x["eval_loss"]], marker="x", ms=9, color=line.get_color())
    ax.axhline(target, ls="--", lw=0.8, color="gray", label="equal quality")
    ax.set_xlabel("FLOPs used")
    ax.set_ylabel("eval loss")
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


__all__ = ["deploy_compare", "export_governor", "resolve_governor"]
