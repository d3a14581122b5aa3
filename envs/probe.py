"""Measured memory peak and FLOPs of each strategy on a workload, for the action mask and budgets.

One real optimizer step (and one eval) per strategy on a throwaway run of the same workload, measured
by ``efficiency.memstats`` (categories + profiler/allocator peak) and torch's FlopCounterMode, cached per
workload in the process. This is environment setup, not a governor decision, so its FLOPs are not
charged to any episode.
"""

from __future__ import annotations

import copy
import json

from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.typed import to_dict

_PEAKS: dict[str, dict[str, float]] = {}
_COSTS: dict[str, dict[str, tuple[int, int, int]]] = {}
_BASE: dict[str, tuple[float, int]] = {}


def _key(cfg: RunConfig) -> str:
    d = to_dict(cfg)
    d["memory"] = {k: v for k, v in d["memory"].items() if k not in ("strategy", "cap_mb")}
    d.pop("seed", None)
    # the schedule changes neither shapes nor memory: FineTune-v1 plans it per episode after probing
    d["optim"] = {k: v for k, v in d["optim"].items() if k not in ("total_steps", "schedule_step_flops")}
    return json.dumps(d, sort_keys=True, default=str)


def _probe(cfg: RunConfig, name: str) -> None:
    """One real step and one eval of strategy ``name`` on a throwaway run; fills both tables."""
    c = copy.deepcopy(cfg)
    c.memory.strategy, c.memory.cap_mb = name, 0.0
    run = FineTuneRun(c, workload=load_workload(c, progress=False), progress=False)
    run.advance(1)
    _PEAKS.setdefault(_key(cfg), {})[name] = run.last_memory.peak / 2**20
    run.evaluate()
    _COSTS.setdefault(_key(cfg), {})[name] = (
        int(run.flops["train"]),
        int(run.flops["eval"]),
        len(run.train_ids),
    )


def strategy_peaks(cfg: RunConfig, strategies: list[str]) -> dict[str, float]:
    """Peak MiB per strategy (max of category total and profiled peak), measured once per workload."""

    table = _PEAKS.setdefault(_key(cfg), {})
    for name in strategies:
        if name not in table:
            _probe(cfg, name)
    return {k: table[k] for k in strategies}


def strategy_costs(cfg: RunConfig, strategy: str) -> tuple[int, int, int]:
    """(FLOPs of one optimizer step, FLOPs of one eval, training examples) of ``strategy`` on ``cfg``'s workload.

    Measured by FlopCounterMode on a throwaway run (the same counts an episode's run makes: the
    count depends on shapes and the strategy, not on weights or seed).
    """
    table = _COSTS.setdefault(_key(cfg), {})
    if strategy not in table:
        _probe(cfg, strategy)
    return table[strategy]


def base_facts(cfg: RunConfig) -> tuple[float, int]:
    """(initial eval loss, parameter count) of ``cfg``'s base on its task: one evaluation of the untouched
    base on the workload's eval split, as the real env's reset measures E_0 (an adapter starts at zero,
    so the start strategy does not change it), and every parameter of the base (no adapters).
    Measured once per workload in the process."""
    key = _key(cfg)
    if key not in _BASE:
        c = copy.deepcopy(cfg)
        c.memory.strategy, c.memory.cap_mb = "full", 0.0
        run = FineTuneRun(c, workload=load_workload(c, progress=False), progress=False)
        _BASE[key] = (float(run.evaluate()), int(run.n_params["total"]))
    return _BASE[key]


__all__ = ["base_facts", "strategy_costs", "strategy_peaks"]
