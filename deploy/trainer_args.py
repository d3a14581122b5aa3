"""The TrainingArguments a ``GovernorCallback`` needs, set (or refused with one sentence) before training.

The governor decides every K optimizer steps on a fresh eval loss, with the grad-norm statistics of every
step since the last decision, and takes its first decision on E_0 (the env's reset). So the Trainer must
log every step (or every L steps with L dividing K), evaluate every K steps (or every E steps, E dividing
K) and once at step 0. Off settings are changed (each change returned as a note); an evaluation schedule
that cannot give a fresh eval loss every K steps (per epoch, or steps not dividing K) is refused.
"""

from __future__ import annotations

from typing import Any

from transformers.trainer_utils import IntervalStrategy

from govgym.errors import ConfigError


def adjust_training_args(args: Any, k: int) -> list[str]:
    """Adjust ``args`` (a ``TrainingArguments``) in place for decisions every ``k`` steps; the notes of each change.

    Raises:
        ConfigError: evaluation is on but cannot give an eval loss every ``k`` steps.
    """
    notes: list[str] = []
    ls = args.logging_steps
    if args.logging_strategy != IntervalStrategy.STEPS or ls < 1 or k % int(ls):
        notes.append(
            f"logging_strategy={args.logging_strategy}, logging_steps={ls} -> steps, 1 "
            f"(grad-norm statistics need every step's grad_norm)"
        )
        args.logging_strategy, args.logging_steps = IntervalStrategy.STEPS, 1
    if args.eval_strategy == IntervalStrategy.NO:
        notes.append(f"eval_strategy=no -> steps, eval_steps={k} (one evaluation per decision)")
        args.eval_strategy, args.eval_steps = IntervalStrategy.STEPS, k
    elif (
        args.eval_strategy != IntervalStrategy.STEPS
        or not args.eval_steps
        or args.eval_steps < 1
        or k % int(args.eval_steps)
    ):
        raise ConfigError(
            f"GovernorCallback: the governor decides every {k} steps on a fresh eval loss, but the Trainer "
            f"evaluates with eval_strategy={args.eval_strategy!s}, eval_steps={args.eval_steps}. Set "
            f"eval_strategy='steps' with eval_steps dividing {k} (e.g. eval_steps={k}), or leave "
            "evaluation off and the callback sets it."
        )
    if not args.eval_on_start:
        notes.append("eval_on_start=False -> True (E_0 and the first decision, as at the env's reset)")
        args.eval_on_start = True
    return notes


__all__ = ["adjust_training_args"]
