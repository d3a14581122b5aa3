"""The fast dynamics model's input lists and the features of one interval: v1's and v2's.

``INPUTS`` (v1, the packaged ``configs/fast_v1.json``) describes a FineTune-v1 instance: one base, two
tasks told apart by ``task_c2d``. It cannot describe a generated FineTune-v2 instance (another base,
another task, a drawn learning rate and batch). ``INPUTS_V2`` replaces the task flag by descriptors
that exist for any instance, seen or not, and name neither a task nor an architecture:

- ``sft``: 1 when the loss is on the response only (prompt/response SFT), 0 when on every token;
- ``log_e0``: log of the initial eval loss (what the run measures at reset; a governor sees it too);
- ``log_params``: log of the base's parameter count / 1e6 (measured by the probe);
- ``log_lr_mult``: log of the learning rate / the base's 1x rate (1e-3 x sqrt(128 / width): v1's tuned
  rate at width 128, the rule ``configs/world_v2.yaml``'s ``tuned_lr`` follows);
- ``log_batch``: log of the batch size / 8;

then v1's inputs from ``log_examples`` on (the data, the budget and the run's state). A model file
declares its own input list (``FastModel.inputs``); ``features`` computes the one it was fitted with.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the dataclasses live in envs.fastmodel, which imports this module
    from govgym.envs.fastmodel import RunState, Static

INPUTS = (
    "task_c2d",
    "log_examples",
    "noise_rate",
    "noise_shuffle",
    "noise_corrupt",
    "noise_duplicate",
    "budget_epochs",
    "epochs_before",
    "epochs_after",
    "epochs_on_kept",
    "lr_start",
    "lr_end",
    "eval_ratio_prev",
    "best_ratio_prev",
    "log_prev_over_best",
    "adapters",
    "gc",
    "adapter_steps_frac",
    "kept",
    "dropped_hardest",
    "dropped_easiest",
    "act_hardest",
    "act_easiest",
    "act_switch",
    "since_lever",
)
"""Inputs of the v1 dynamics model, in order (``transition_features``)."""

DESCRIPTORS_V2 = ("sft", "log_e0", "log_params", "log_lr_mult", "log_batch")
"""What v2 knows of an instance besides v1's data and budget inputs: no task, no architecture."""

INPUTS_V2 = (*DESCRIPTORS_V2, *INPUTS[1:])
"""Inputs of the v2 dynamics model, in order (``transition_features_v2``)."""

INPUT_SETS = {1: INPUTS, 2: INPUTS_V2}
"""The input lists a model file may declare, by the number ``govgym fit-fast inputs=`` takes."""

V1_LR_WIDTH = (1e-3, 128)
"""v1's tuned full fine-tuning lr and the width it was tuned at: the base's 1x lr is
``1e-3 x sqrt(128 / hidden_size)`` (configs/world_v2.yaml's ``tuned_lr``: 0.0014 at 64, 0.0008 at 192)."""


def base_lr(hidden_size: int) -> float:
    """The 1x full fine-tuning learning rate of a base of width ``hidden_size`` (``V1_LR_WIDTH``'s rule)."""
    lr, width = V1_LR_WIDTH
    return lr * math.sqrt(width / max(int(hidden_size), 1))


def transition_features(
    s: Static,
    before: RunState,
    after: RunState,
    lr_start: float,
    lr_end: float,
    act: str,
) -> np.ndarray:
    """The v1 model's input for one interval: ``before`` the action, ``after`` the interval's steps (no eval yet)."""
    n = max(s.examples, 1)
    b = s.batch
    on_kept = (after.steps - after.steps_at_reprune) * b / (n * max(after.kept, 1e-6))
    return np.array(
        [
            s.task_c2d,
            math.log(n / 600.0),
            s.noise_rate,
            s.noise_rate * s.kinds[0],
            s.noise_rate * s.kinds[1],
            s.noise_rate * s.kinds[2],
            s.budget_epochs / 6.0,
            before.steps * b / n,
            after.steps * b / n,
            on_kept,
            lr_start,
            lr_end,
            before.eval_ratio - 1.0,
            before.best_ratio - 1.0,
            math.log(before.eval_ratio / before.best_ratio),
            float(after.strategy.split("+")[0] != "full"),
            float("+gc" in after.strategy),
            after.adapter_steps / max(after.steps, 1),
            after.kept,
            after.dropped_hardest,
            after.dropped_easiest,
            float(act == "reprune_hardest"),
            float(act == "reprune_easiest"),
            float(act.startswith("switch")),
            min(before.since_lever, 20) / 20.0,
        ],
        dtype=np.float64,
    )


def transition_features_v2(
    s: Static,
    before: RunState,
    after: RunState,
    lr_start: float,
    lr_end: float,
    act: str,
) -> np.ndarray:
    """The v2 model's input for one interval: ``DESCRIPTORS_V2`` then v1's inputs after ``task_c2d``."""
    head = np.array(
        [
            s.sft,
            math.log(max(s.e0, 1e-6)),
            math.log(max(s.params, 1.0) / 1e6),
            math.log(max(s.lr_mult, 1e-9)),
            math.log(max(s.batch, 1) / 8.0),
        ],
        dtype=np.float64,
    )
    return np.concatenate([head, transition_features(s, before, after, lr_start, lr_end, act)[1:]])


def features(
    inputs: tuple[str, ...],
    s: Static,
    before: RunState,
    after: RunState,
    lr_start: float,
    lr_end: float,
    act: str,
) -> np.ndarray:
    """The input ``inputs`` (``INPUTS`` or ``INPUTS_V2``) names, for one interval."""
    fn = transition_features if tuple(inputs) == INPUTS else transition_features_v2
    return fn(s, before, after, lr_start, lr_end, act)


__all__ = [
    "DESCRIPTORS_V2",
    "INPUTS",
    "INPUTS_V2",
    "INPUT_SETS",
    "V1_LR_WIDTH",
    "base_lr",
    "features",
    "transition_features",
    "transition_features_v2",
]
