"""The TrainingArguments a ``GovernorCallback`` needs, set (or refused with one sentence) before training.

The governor decides every K optimizer steps on a fresh eval loss, with the grad-norm statistics of every
step since the last decision, and takes its first decision on E_0 (the env's reset). So the Trainer must
log every step (or every L steps with L dividing K), evaluate every K steps (or every E steps, E dividing
K) and once at step 0. Off settings are changed (each change returned as a note); an evaluation schedule
that cannot give a fresh eval loss every K steps (per epoch, or steps not dividing K) is refused.

``training_args`` builds such TrainingArguments from a govgym ``RunConfig`` (``govgym deploy``/``transfer``).
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


def training_args(cfg: Any, out: str, k: int, steps: int, **over: Any) -> Any:
    """The HF TrainingArguments of a govgym run config: K-step evals (one at start), no checkpoints, CPU if asked."""
    import torch
    from transformers import TrainingArguments

    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    o = cfg.optim
    kw: dict[str, Any] = dict(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=o.batch_size,
        per_device_eval_batch_size=o.batch_size,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        adam_beta1=o.beta1,
        adam_beta2=o.beta2,
        max_grad_norm=o.max_grad_norm,
        warmup_steps=min(o.warmup_steps, max(steps - 1, 0)),
        lr_scheduler_type=o.schedule,
        eval_strategy="steps",
        eval_steps=k,
        eval_on_start=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=cpu,
        disable_tqdm=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
    )
    kw.update(over)
    return TrainingArguments(**kw)


__all__ = ["adjust_training_args", "training_args"]
