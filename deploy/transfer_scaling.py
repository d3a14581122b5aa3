"""The scaling rules of ``govgym transfer``: an instance's budget, cap and OOMs at another model size.

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
"""

from __future__ import annotations

import copy
import math
from typing import Any

from govgym.errors import ConfigError

TRAIN_SIZE = "train"
"""The label of the instances' own model (the size the policies were trained at)."""


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


def _size_cfg(base_cfg: Any, size: str, sizes_table: dict[str, dict[str, Any]] | None = None) -> Any:
    from govgym.deploy.bases import base_overrides
    from govgym.efficiency.config import RunConfig
    from govgym.typed import deep_merge, from_dict, to_dict

    if size == TRAIN_SIZE:
        return copy.deepcopy(base_cfg)
    over = base_overrides(size, table=sizes_table)  # a named size, model keys or {"source": DIR}
    return from_dict(RunConfig, deep_merge(to_dict(base_cfg), {"model": dict(over)}))


__all__ = ["TRAIN_SIZE", "budget_steps", "oom_intervals", "scale_cap"]
