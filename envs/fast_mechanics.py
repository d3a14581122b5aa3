"""The fast backend's mechanics between decisions: an instance's plan, what a lever costs and does, and how
an interval advances the run (steps, LR schedule, FLOPs). numpy only; ``FineTuneFastEnv`` and ``govgym
fit-fast`` share them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from govgym.efficiency import caps
from govgym.efficiency.strategy import Strategy
from govgym.envs.fastmodel import (
    FastModel,
    RunState,
    Static,
    lr_frac,
)
from govgym.envs.instances import Instance, InstanceSet


@dataclass(frozen=True)
class Plan:
    """One episode's mechanics, as the real env plans them at reset (``FineTuneEnv._plan``)."""

    name: str
    family: str
    static: Static
    k: int
    intervals: int
    total_steps: int
    warmup: int
    schedule: str
    start: str
    budget: float
    """FLOPs: the start strategy's eval + intervals x (K steps + one eval), as measured by the probes."""
    lam: float
    cap_mb: float
    cap_schedule: tuple[tuple[float, float], ...]
    e0: float
    eval_examples: int = 64
    scorer: str = "recorded"
    sample: int = 0

    def cap_at(self, fraction: float) -> float:
        """The cap in force once ``fraction`` of the budget is spent (``efficiency.caps.cap_at``)."""
        return caps.cap_at(self.cap_mb, self.cap_schedule, fraction)


def plan_of(fm: FastModel, iset: InstanceSet, inst: Instance, k: int | None = None) -> Plan:
    """The mechanics of ``inst`` under ``fm``'s measured costs (the real env's rounding and schedule).

    A budget in epochs is ``round(epochs x examples / batch / K)`` whole intervals; one in TFLOPs the
    whole intervals it buys after the first eval, as ``FineTuneEnv._plan`` (v1).
    """
    cfg = iset.run_config(inst)
    k = int(k or iset.env.interval_steps)
    st = Static.of(cfg, inst.budget_epochs if inst.budget_epochs is not None else 0.0)
    step, ev = fm.costs(st.cost_key, inst.start_strategy)
    st = replace(st, e0=fm.e0(st.e0_key, inst.name), params=fm.params(st.cost_key))
    if inst.budget_epochs is not None:
        intervals = max(1, round(inst.budget_epochs * st.examples / st.batch / k))
    else:
        intervals = max(1, int((inst.budget_tflops * 1e12 - ev) // (k * step + ev)))
        st = replace(st, budget_epochs=intervals * k * st.batch / st.examples)
    steps = intervals * k
    return Plan(
        name=inst.name,
        family=inst.family,
        static=st,
        k=k,
        intervals=intervals,
        total_steps=steps,
        warmup=min(cfg.optim.warmup_steps, steps // 10),
        schedule=cfg.optim.schedule,
        start=Strategy.parse(inst.start_strategy).name,
        budget=ev + intervals * (k * step + ev),
        lam=float(inst.lam),
        cap_mb=float(inst.cap_mb),
        cap_schedule=tuple((float(c.at), float(c.cap_mb)) for c in inst.cap_schedule),
        e0=st.e0,
        eval_examples=int(cfg.data.eval_examples),
        scorer=iset.env.reprune_scorer,
        sample=int(iset.env.reprune_sample),
    )


def lever_flops(fm: FastModel, plan: Plan, before: RunState, kind: str, fraction: float) -> float:
    """FLOPs an action costs before the interval's steps: an exact scorer's pass over the scored examples.

    ``recorded`` ranks by the losses the training steps recorded: 0 FLOPs. ``loss``/``el2n`` run one
    forward per scored example, charged as one eval example's FLOPs under the strategy in force
    (``eval FLOPs / eval_examples``); ``gradnorm`` a forward and a backward (~3x).
    """
    if kind != "reprune" or plan.scorer == "recorded":
        return 0.0
    n_kept = round(plan.static.examples * before.kept)
    n = n_kept
    if plan.sample:
        n = min(max(plan.sample, round(fraction * n_kept)), n_kept)
    _, ev = fm.costs(plan.static.cost_key, before.strategy)
    return n * ev / max(plan.eval_examples, 1) * (3.0 if plan.scorer == "gradnorm" else 1.0)


def apply_lever(state: RunState, kind: str, arg: Any, fraction: float) -> RunState:
    """The state right after an action (before the interval's steps): reprune or switch."""
    s = replace(state)
    if kind == "reprune":
        dropped = s.kept * fraction
        s.kept -= dropped
        if arg == "hardest":
            s.dropped_hardest += dropped
        else:
            s.dropped_easiest += dropped
        s.steps_at_reprune, s.since_lever = s.steps, 0
    elif kind == "switch":
        s.strategy, s.since_lever = str(arg), 0
    return s


def advance(fm: FastModel, plan: Plan, s: RunState) -> tuple[RunState, float, float, float, float]:
    """K steps under ``s.strategy`` (on a copy): (state, train + measurement FLOPs, eval FLOPs, lr start, lr end)."""
    out = replace(s)
    step, ev = fm.costs(plan.static.cost_key, s.strategy)
    start_step, _ = fm.costs(plan.static.cost_key, plan.start)
    lr0 = lr_frac(out.virtual, plan.total_steps, plan.warmup, plan.schedule)
    out.virtual += plan.k * step / start_step  # the schedule moves by training FLOPs (v1)
    out.steps += plan.k
    if s.strategy.split("+")[0] != "full":
        out.adapter_steps += plan.k
    out.since_lever = s.since_lever + 1
    lr1 = lr_frac(out.virtual - 1e-9, plan.total_steps, plan.warmup, plan.schedule)
    train = plan.k * step
    if s.strategy not in s.measured:  # memory is measured on a strategy's first step (efficiency.memstats):
        out.measured = (*s.measured, s.strategy)
        if "+gc" in s.strategy:  # under checkpointing that adds one forward without it (~a third of a step)
            train += step / 3.0
    return out, train, ev, lr0, lr1


__all__ = ["Plan", "advance", "apply_lever", "lever_flops", "plan_of"]
