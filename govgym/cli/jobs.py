"""The job functions of ``govgym/cli/commands.py``'s table: each takes the parsed ``Invocation`` and hands
its config to the module that does the work, imported inside the function so that ``govgym <cmd> --help``
and a refused key stay fast. Returns an exit status (None = 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from govgym.cli.commands import Invocation


def cmd_prepare(inv: Invocation) -> None:
    from govgym.cli import reports

    reports.prepare(inv.cfg)


def cmd_run(inv: Invocation) -> None:
    from govgym.cli import reports

    reports.fixed_budget_run(inv.cfg, inv.out, inv.job.interval, inv.job.budget_flops)


def cmd_strategies(inv: Invocation) -> None:
    from govgym.cli import reports

    reports.strategy_table(inv.cfg, inv.out, inv.job.steps, inv.job.only or None)


def cmd_prune(inv: Invocation) -> None:
    from govgym.cli import reports

    reports.prune_noise(inv.cfg, inv.out, inv.job.fraction, inv.job.warm_steps)


def cmd_switch(inv: Invocation) -> None:
    from govgym.cli import reports

    reports.switch_curves(inv.cfg, inv.out, inv.job.steps)


def cmd_deploy(inv: Invocation) -> None:
    from govgym.cli.deployjobs import deploy_compare

    deploy_compare(inv.cfg, inv.out, inv.job, progress=inv.progress)


def cmd_collect(inv: Invocation) -> None:
    from govgym.cli import envjobs

    job = inv.job
    envjobs.collect(
        job.instances or None,
        job.split,
        job.policies,
        job.episodes,
        inv.out,
        job.seed,
        progress=inv.progress,
        workers=job.workers,
        backend=job.backend,
        ray_address=job.ray_address,
    )


def cmd_replay(inv: Invocation) -> int:
    from govgym.cli import envjobs

    return 0 if envjobs.replay_state(Path(inv.args.state), inv.job.instances or None)["valid"] else 1


def cmd_plot_traces(inv: Invocation) -> None:
    from govgym.cli import envjobs

    print(f"wrote {envjobs.plot_traces(Path(inv.args.traces), inv.out, inv.job.max_episodes)}")


def cmd_train(inv: Invocation) -> None:
    from govgym.agents.train import train

    print(f"wrote {train(inv.job, inv.out, resume=inv.args.resume, progress=inv.progress)}")


def cmd_tune(inv: Invocation) -> None:
    from govgym.agents.tune import tune

    job = inv.job
    tune(
        inv.out,
        job.instances,
        job.seeds,
        job.workers,
        inv.args.write,
        progress=inv.progress,
        memo=job.memo,
        backend=job.backend,
        ray_address=job.ray_address,
        objective=job.objective,
        tolerance=job.tolerance,
        heuristics=job.heuristics,
        knobs=job.knobs,
    )


def cmd_evaluate(inv: Invocation) -> None:
    from govgym.agents.evaluate import evaluate

    inv.job.policies = [*inv.job.policies, *inv.args.agent]
    evaluate(inv.job, inv.out, progress=inv.progress)


def cmd_map(inv: Invocation) -> None:
    from govgym.agents.levermap import lever_map

    lever_map(inv.job, inv.out, progress=inv.progress)


def cmd_fit_fast(inv: Invocation) -> None:
    from govgym.cli.fastjobs import fit_fast_job

    fit_fast_job(inv.job, inv.out)


def cmd_fit_curve(inv: Invocation) -> None:
    from govgym.cli.fastjobs import fit_curve_job

    fit_curve_job(inv.job, inv.out)


def cmd_offline(inv: Invocation) -> None:
    from govgym.cli.fastjobs import offline_job

    offline_job(inv.job, inv.out, progress=inv.progress)


def cmd_sim2real(inv: Invocation) -> None:
    from govgym.cli.fastjobs import sim2real_job

    sim2real_job(inv.job, inv.out, progress=inv.progress)


def cmd_export(inv: Invocation) -> None:
    from govgym.cli.deployjobs import export_governor

    export_governor(inv.args.source, inv.out, inv.job.instances, inv.job.knobs)


def cmd_transfer(inv: Invocation) -> None:
    from govgym.deploy.transfer import transfer

    transfer(inv.job, inv.out, progress=inv.progress)


def cmd_outside(inv: Invocation) -> None:
    from govgym.deploy.outside import outside

    outside(inv.job, inv.out, progress=inv.progress)


def cmd_demo(inv: Invocation) -> None:
    from govgym.cli.demo import demo

    job = inv.job
    demo(
        inv.out,
        job.timesteps,
        job.seeds,
        job.workers,
        job.instances,
        inv.progress,
        job.train_minutes,
        job.fast_model,
        job.randomize,
        job.levers,
        job.split,
        job.max_instances,
        job.knobs,
    )


__all__ = [
    "cmd_collect",
    "cmd_demo",
    "cmd_deploy",
    "cmd_evaluate",
    "cmd_export",
    "cmd_fit_curve",
    "cmd_fit_fast",
    "cmd_map",
    "cmd_offline",
    "cmd_outside",
    "cmd_plot_traces",
    "cmd_prepare",
    "cmd_prune",
    "cmd_replay",
    "cmd_run",
    "cmd_sim2real",
    "cmd_strategies",
    "cmd_switch",
    "cmd_train",
    "cmd_transfer",
    "cmd_tune",
]
