"""What ``GovernorCallback`` reads from a Trainer: readings, observations, strategy, the FLOP-measuring pass.

``reading_from_trainer`` is the one mapping from Trainer reports to the env's ``Reading``; ``Observer``
turns readings into observations with the env's ``SignalTracker`` (tested for parity with the env).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from govgym.efficiency.signals import Reading, SignalTracker
from govgym.efficiency.strategy import Strategy
from govgym.errors import ConfigError


def reading_from_trainer(
    *,
    flops_used: float,
    budget: float,
    eval_loss: float,
    logs: list[dict[str, Any]],
    peak_lr: float,
    batch_size: int,
    mem_peak_mb: float,
    cap_mb: float,
    strategy: str,
    lam: float,
    kept_fraction: float = 1.0,
    grad_noise_scale: float = float("nan"),
    lr: float | None = None,
) -> Reading:
    """The Reading of one decision interval from what a Trainer reports (the callback's observation path).

    Aggregates like ``FineTuneRun.advance``: float32 mean of the losses, mean and population std of the
    grad norms, the last LR. ``logs`` empty = the first decision (no interval yet: train loss reads as
    the eval loss, gradient figures as absent, LR fraction 0), as the env's reset reading.

    Args:
        flops_used: FLOPs spent so far (measuring pass, steps, evaluations).
        budget: the FLOP budget.
        eval_loss: the eval loss just measured.
        logs: the ``on_log`` records of the interval (``loss``, optional ``grad_norm``, ``learning_rate``).
        peak_lr: ``args.learning_rate`` (the LR fraction's denominator).
        batch_size: examples per optimizer step.
        mem_peak_mb: measured peak memory in MiB (0 when not measured).
        cap_mb: memory cap in MiB (0 = none).
        strategy: the strategy name (``lora+gc`` ...).
        lam: the compute price λ.
        kept_fraction: data kept (1.0: a callback does not prune).
        grad_noise_scale: B_simple (nan: not estimated from a Trainer).
        lr: the LR at the end of the interval (default: the last logged ``learning_rate``).
    """
    losses = np.asarray([r["loss"] for r in logs if "loss" in r], dtype=np.float32)
    norms = np.asarray([r["grad_norm"] for r in logs if r.get("grad_norm") is not None], dtype=np.float32)
    lrs = [r["learning_rate"] for r in logs if "learning_rate" in r] + ([lr] if lr is not None else [])
    first = not logs
    return Reading(
        flops_used=flops_used,
        budget=budget,
        eval_loss=eval_loss,
        train_loss=eval_loss if first or not losses.size else float(losses.mean()),
        grad_norm=float(norms.mean()) if norms.size else 0.0,
        grad_norm_std=float(norms.std()) if norms.size else 0.0,
        grad_noise_scale=grad_noise_scale,
        batch_size=batch_size,
        mem_peak_mb=mem_peak_mb,
        cap_mb=cap_mb,
        strategy=strategy,
        kept_fraction=kept_fraction,
        lr_frac=float(lrs[-1]) / peak_lr if lrs and peak_lr > 0 else 0.0,
        lam=lam,
    )


class Observer:
    """Readings -> observations through the env's ``SignalTracker``, started as the env's reset starts it."""

    def __init__(self) -> None:
        self.tracker = SignalTracker()
        self.started = False

    def observe(self, r: Reading) -> np.ndarray:
        if not self.started:  # FineTuneEnv.reset: tracker.reset(E_0, 0.0), then observe the E_0 reading
            self.tracker.reset(r.eval_loss, 0.0)
            self.started = True
        return self.tracker.observe(r)


def model_strategy(model: Any, optim: str = "") -> str:
    """The govgym strategy name of a Trainer's model: base from PEFT/quantization, ``+gc``, ``+adam8``."""
    base_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base_model, "is_loaded_in_4bit", False):
        base = "qlora"
    elif getattr(base_model, "is_loaded_in_8bit", False):
        base = "int8"
    elif getattr(model, "peft_config", None):
        base = "lora"
    else:
        base = "full"
    # transformers >= 5 names it is_activation_checkpointing (the old name warns on every read)
    gc = getattr(model, "is_activation_checkpointing", None)
    if gc is None:
        gc = getattr(model, "is_gradient_checkpointing", False)
    gc = bool(gc)
    return Strategy(base, adam8="8bit" in str(getattr(optim, "value", optim)), gc=gc).name


def probe_batch(dl: Any, args: Any, device: torch.device) -> dict[str, Any]:
    """One real per-device batch of the train data, collated by the Trainer's collator, on the model's device.

    Indexes the dataset (the first rows) rather than iterating the dataloader, whose sampler would
    draw from the data-order RNG and change the user's run; an iterable dataset is iterated afresh.
    """
    if dl is None:
        raise ConfigError("GovernorCallback: the Trainer gave no train dataloader; pass a train_dataset.")
    ds = getattr(dl, "dataset", None)
    if ds is not None and hasattr(ds, "__getitem__") and hasattr(ds, "__len__"):
        batch = dl.collate_fn([ds[i] for i in range(min(args.per_device_train_batch_size, len(ds)))])
    else:
        batch = next(iter(dl))
    batch = {k: v for k, v in dict(batch).items() if k != "govgym_index"}  # GovernedTrainer's row index
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in dict(batch).items()}


def forward_backward(model: Any, batch: dict[str, Any]) -> None:
    """One training forward + backward, leaving no trace: RNG restored, gradients cleared, mode restored."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    was = model.training
    model.train()
    try:
        out = model(**batch)
        loss = out.get("loss") if hasattr(out, "get") else None
        if loss is None:  # no labels in the batch: backward through the outputs costs the same matmuls
            loss = (out[0] if isinstance(out, (tuple, list)) else next(iter(out.values()))).float().sum()
        loss.backward()
    finally:
        for p in model.parameters():
            p.grad = None
        model.train(was)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
