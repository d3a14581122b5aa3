"""The FLOP ledger of a governed Trainer run: the budget in FLOPs, and the measured costs that fill it.

The env's accounting (``FineTuneEnv``), per process: FLOPs used = the measuring passes + steps × one
optimizer step's FLOPs (under the strategy in force) + evaluations × one evaluation's FLOPs. Never
``state.total_flos`` (its 6·N·D is wrong for LoRA and checkpointing). The step's FLOPs come from one real
forward + backward counted by ``FlopCounterMode`` (``measure_step``), the evaluation's from the E_0
evaluation run under it (``EvalMeter``: active between ``on_train_begin`` and that evaluation only, never
over a training step). A budget given in epochs or steps becomes FLOPs with those measurements
(``steps_of_budget``, ``flop_budget``).
"""

from __future__ import annotations

import math
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

from govgym.deploy.observe import forward_backward
from govgym.efficiency.compute import count_flops, register_formulas
from govgym.errors import ConfigError


def measure_step(model: Any, batch: dict[str, Any], grad_accum: int) -> tuple[int, int]:
    """(FLOPs of the measuring pass, FLOPs of one optimizer step = the pass × ``grad_accum`` micro-batches)."""
    _, fl = count_flops(lambda: forward_backward(model, batch))
    return fl, fl * grad_accum


def steps_of_budget(kind: str, value: float, train_dataloader: Any, grad_accum: int) -> int:
    """A budget of ``budget_steps`` or ``budget_epochs`` as whole optimizer steps (rounded up)."""
    steps = value
    if kind == "budget_epochs":
        try:
            batches = len(train_dataloader)
        except TypeError:
            raise ConfigError(
                "GovernorCallback: budget_epochs needs a train dataset with a length (an epoch has a "
                "size); this one is iterable only. Give budget_steps or budget_flops instead."
            ) from None
        steps = value * max(batches // grad_accum, 1)
    return math.ceil(steps)


def flop_budget(measure: int, steps: int, step_flops: int, eval_steps: int, eval_flops: int) -> float:
    """``steps`` optimizer steps in FLOPs: the measuring pass + the steps + the evaluations they include (+ E_0)."""
    n_evals = steps // int(eval_steps) + 1
    return float(measure + steps * step_flops + n_evals * eval_flops)


class EvalMeter:
    """``FlopCounterMode`` around the first evaluation only: ``start`` at train begin, ``stop`` at E_0."""

    def __init__(self) -> None:
        self._mode: FlopCounterMode | None = None

    @property
    def active(self) -> bool:
        return self._mode is not None

    def start(self) -> None:
        register_formulas()
        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()

    def stop(self) -> int:
        """Leave the counter; the FLOPs it counted (0 if it was not active)."""
        if self._mode is None:
            return 0
        self._mode.__exit__(None, None, None)
        total, self._mode = int(self._mode.get_total_flops()), None
        return total


__all__ = ["EvalMeter", "flop_budget", "measure_step", "steps_of_budget"]
