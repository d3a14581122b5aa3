"""Measured memory peak of each strategy on a workload, for the action mask (what fits a cap).

One real optimizer step per strategy on a throwaway run of the same workload, measured by
``efficiency.memstats`` (categories + profiler/allocator peak), cached per workload in the process.
This is environment setup, not a governor decision, so its FLOPs are not charged to any episode.
"""

from __future__ import annotations

import copy
import json

from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.typed import to_dict

_PEAKS: dict[str, dict[str, float]] = {}


def _key(cfg: RunConfig) -> str:
    d = to_dict(cfg)
    d["memory"] = {k: v for k, v in d["memory"].items() if k not in ("strategy", "cap_mb")}
    d.pop("seed", None)
    return json.dumps(d, sort_keys=True, default=str)


def strategy_peaks(cfg: RunConfig, strategies: list[str]) -> dict[str, float]:
    """Peak MiB per strategy (max of category total and profiled peak), measured once per workload."""

    table = _PEAKS.setdefault(_key(cfg), {})
    for name in strategies:
        if name in table:
            continue
        c = copy.deepcopy(cfg)
        c.memory.strategy, c.memory.cap_mb = name, 0.0
        run = FineTuneRun(c, workload=load_workload(c, progress=False), progress=False)
        run.advance(1)
        table[name] = run.last_memory.peak / 2**20
    return {k: table[k] for k in strategies}


__all__ = ["strategy_peaks"]
