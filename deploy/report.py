"""Decisions logged like metrics: each one goes through the Trainer's own ``log`` so ``report_to`` sees it.

A ``TrainerCallback`` gets no handle on its Trainer, and mutating ``logs`` in ``on_log`` is too late: the
step's metrics are logged before ``on_evaluate`` (where the governor decides), and the ``report_to``
callbacks (TensorBoard, W&B, ...) sit before user callbacks in the ``CallbackHandler``. So the callback
finds the Trainer that called it and emits each decision with ``trainer.log({...})``: that appends to
``state.log_history`` and fires ``on_log`` on every integration, as for the Trainer's own metrics.

How the Trainer is found: a ``GovernedTrainer`` hands itself over (``attach_levers``); otherwise, at
``on_train_begin``, the caller frames are walked up to the first whose ``self`` is a
``transformers.Trainer`` (deterministic: ``CallbackHandler.call_event`` is called from Trainer methods).
Only a weak reference is kept. Not found (a custom loop driving the callbacks), the decision goes to
``state.log_history`` only, and a warning says so once.

Keys: scalars prefixed ``governor/`` (``governor/budget_frac``, ``governor/flops_used``,
``governor/eval_loss``, ``governor/train_loss``, ``governor/action_index``, ``governor/obs/<feature>``
for every observation feature, ...; non-finite values left out), and ``governor/action`` (the action's
name: text in TensorBoard). TensorBoard's callback writes every key not starting with ``eval_`` under
``train/``: the scalars appear as ``train/governor/...``.
"""

from __future__ import annotations

import math
import sys
import weakref
from typing import Any

from govgym.efficiency.signals import FEATURE_NAMES

PREFIX = "governor/"
SCALARS = (
    "budget_frac",
    "flops_used",
    "eval_loss",
    "train_loss",
    "grad_noise_scale",
    "mem_peak_mb",
    "cap_mb",
    "shield_fired",
)
"""Decision-log fields logged as ``governor/<field>`` scalars (beside the action and the observation)."""


def find_trainer(max_depth: int = 50) -> Any:
    """The ``transformers.Trainer`` whose method is on the call stack (the nearest), or None."""
    from transformers import Trainer

    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        obj = frame.f_locals.get("self")
        if isinstance(obj, Trainer):
            return obj
        frame = frame.f_back
    return None


def decision_logs(row: dict[str, Any], action_names: list[str]) -> dict[str, Any]:
    """The ``governor/`` keys of one decision-log row (see the module docstring)."""
    out: dict[str, Any] = {PREFIX + "action": row["action"]}
    if row["action"] in action_names:
        out[PREFIX + "action_index"] = action_names.index(row["action"])
    for key in SCALARS:
        v = row.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[PREFIX + key] = float(v)
    for name, v in zip(FEATURE_NAMES, row["obs"]):
        if math.isfinite(v):
            out[f"{PREFIX}obs/{name}"] = float(v)
    if "error" in row:
        out[PREFIX + "error"] = str(row["error"])
    return out


class TrainerLog:
    """Where a callback's decisions are logged: its Trainer's ``log``, or ``state.log_history`` as a fallback."""

    def __init__(self) -> None:
        self._ref: weakref.ReferenceType[Any] | None = None
        self.emitting = False  # inside trainer.log: the callback's own on_log ignores these logs
        self._warned = False

    @property
    def trainer(self) -> Any:
        return self._ref() if self._ref is not None else None

    def set(self, trainer: Any) -> None:
        """Use ``trainer.log`` (a ``GovernedTrainer`` hands itself over through ``attach_levers``)."""
        self._ref = weakref.ref(trainer)

    def find(self) -> None:
        """At ``on_train_begin``: the Trainer on the call stack, unless one was handed over and is alive."""
        if self.trainer is not None:
            return
        found = find_trainer()
        if found is not None:
            self.set(found)

    def log(self, state: Any, logs: dict[str, Any]) -> None:
        """``trainer.log(logs)`` (history + every ``report_to`` integration), else append to the history."""
        trainer = self.trainer
        if trainer is None or trainer.state is not state:
            if not self._warned:
                from transformers.utils import logging

                logging.get_logger(__name__).warning(
                    "GovernorCallback: no transformers.Trainer found calling this callback, so decisions go to "
                    "state.log_history and the decision log only, not to report_to integrations (TensorBoard, "
                    "W&B). Drive the callback from a Trainer (or a subclass) to have them logged there."
                )
                self._warned = True
            state.log_history.append({**logs, "step": state.global_step})
            return
        self.emitting = True
        try:
            trainer.log(dict(logs))
        finally:
            self.emitting = False


__all__ = ["PREFIX", "SCALARS", "TrainerLog", "decision_logs", "find_trainer"]
