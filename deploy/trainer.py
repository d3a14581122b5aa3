"""``GovernedTrainer``: a ``transformers.Trainer`` that owns the levers a callback cannot reach.

A ``TrainerCallback`` cannot swap the train dataloader (transformers #25925), so it cannot reprune.
``GovernedTrainer`` owns its train sampler: a stream of seeded shuffles of a mutable set of kept
indices. Each training forward pass (the ones the Trainer already runs) also records each example's
loss, detached from the graph (mean over the example's non-ignored label tokens for a causal LM, the
per-example cross-entropy for classification); the loss the Trainer optimizes is the model's own,
unchanged. ``reprune(fraction, mode)`` drops that fraction of the kept set ranked by those losses
(no extra forward passes); the next batch the loader draws comes from the new set.

An epoch keeps its length in batches (the Trainer fixes it at the start of ``train``): after a reprune
the sampler draws that many examples from successive shuffles of the kept set, so the step budget
and FLOPs per step are unchanged and every drawn example is a kept one.

A ``GovernorCallback`` passed to a ``GovernedTrainer`` gets ``reprune_hardest`` / ``reprune_easiest``
and every base switch (``switch_base``: full, lora, qlora, int8 — LoRA adapters added to the live
model, on a base quantized in place by bitsandbytes for qlora / int8, or merged back; the optimizer
rebuilt for the new trainable set, the scheduler at its position) unmasked (it finds the trainer
through ``deploy/levers.py``: the trainer hands itself over with ``attach_levers``); each reprune and switch is logged to the trainer's
``events``, ``state.log_history`` and the callback's decision log.

With a ``GovernorCallback`` attached, each optimizer step's gradients before clipping are added into an
interval sum and its pre-clip norm kept (``_clip_grad_norm`` / ``_get_grad_norm``): the callback's
gradient-noise-scale estimate, the env's (``take_noise_interval``).

Resuming (``train(resume_from_checkpoint=...)``) restores the base strategy, the sampler's kept set and
position, the recorded losses and steps, the events and the noise interval in progress: the
``GovernedTrainerState`` callback carries them as JSON in ``trainer_state.json``, and
``govgym_trainer.safetensors`` in the checkpoint the tensors (the base weights under LoRA adapters
after a switch; the noise sums). A checkpoint saved under QLoRA / int8 is refused (see ``_restore``).
The base switch lives in ``deploy/switch.py`` (``SwitchMixin``), the checkpoint state in
``deploy/trainer_state.py`` (``CheckpointMixin``, ``GovernedTrainerState``); ``GovernedMixin`` inherits both.

Example::

    trainer = GovernedTrainer(model, args, train_dataset=train, eval_dataset=held_out,
                              callbacks=[GovernorCallback(gov, budget_epochs=3, interval_steps=20)])
    trainer.train()
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Trainer

from govgym.deploy.levers import LeverUser
from govgym.deploy.sampler import INDEX_COLUMN, IndexCollator, KeptSampler, per_example_losses
from govgym.deploy.switch import SWITCH_BASES, SwitchMixin
from govgym.deploy.trainer_state import TENSORS_FILE, CheckpointMixin, GovernedTrainerState
from govgym.efficiency.config import MemoryConfig
from govgym.errors import ConfigError

REPRUNE_MODES = ("hardest", "easiest")


class GovernedMixin(SwitchMixin, CheckpointMixin):
    """The levers of ``GovernedTrainer``, for any ``Trainer`` subclass: put it first in the bases.

    ``GovernedTrainer = GovernedMixin + Trainer``; ``governed(SFTTrainer)`` (TRL) is the same levers over
    TRL's trainer: its own data preparation, collator and loss run unchanged, and this mixin wraps them
    (the row index added after the subclass prepared its dataset, the collator wrapped, the per-example
    losses read from the loss call's outputs).

    Takes every argument of the Trainer it is mixed into. The train dataset must be a ``datasets.Dataset`` (a column
    ``govgym_index`` is added to it; the collator wrapper removes it before the user's collator runs).

    Args:
        memory: the LoRA settings of ``switch_base("lora")`` (rank, alpha, targets; default the env's
            ``MemoryConfig``).

    Attributes:
        example_loss: float32 array, one per train example: its last recorded training loss (nan: unseen).
        events: the reprunes done, in order (also in ``state.log_history``).
    """

    switch_bases = SWITCH_BASES  # the bases switch_base reaches (GovernorCallback unmasks these)

    def __init__(self, *args: Any, memory: MemoryConfig | None = None, **kwargs: Any) -> None:
        if not isinstance(self, Trainer):
            raise ConfigError(
                f"GovernedMixin: {type(self).__name__} is not a transformers.Trainer; mix it into one, first in the "
                "bases: class MyTrainer(GovernedMixin, Trainer), or governed(SFTTrainer)."
            )
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        ds = self.train_dataset
        try:
            import datasets

            ok = isinstance(ds, datasets.Dataset)
        except ImportError:  # pragma: no cover - transformers' Trainer data path needs datasets here
            ok = False
        if not ok:
            raise ConfigError(
                f"GovernedTrainer: the train dataset must be a datasets.Dataset (rows are tracked by index to "
                f"rank and reprune them); got {type(ds).__name__}. Build one with datasets.Dataset.from_dict "
                "or from_list, or use a plain Trainer with GovernorCallback (no reprune)."
            )
        if INDEX_COLUMN in ds.column_names:
            raise ConfigError(
                f"GovernedTrainer: the train dataset already has a column '{INDEX_COLUMN}', which this trainer "
                "adds to track rows. Rename or remove that column."
            )
        self.train_dataset = ds.add_column(INDEX_COLUMN, list(range(len(ds))))
        self.data_collator = IndexCollator(self.data_collator)
        self.n_examples = len(ds)
        self.example_loss = np.full(self.n_examples, np.nan, dtype=np.float32)
        self.example_step = np.full(self.n_examples, -1, dtype=np.int64)  # global step of the last loss
        self.events: list[dict[str, Any]] = []
        self.memory = memory if memory is not None else MemoryConfig()
        self._sampler: KeptSampler | None = None
        # the gradient-noise-scale interval (the env's FineTuneRun.advance): pre-clip gradients summed over
        # the steps since the governor last read them, and each step's pre-clip norm
        self.track_noise = False
        self._gsum: list[torch.Tensor] | None = None
        self._gnorms: list[torch.Tensor] = []
        self.add_callback(GovernedTrainerState(self))
        self._link_callbacks()

    def _link_callbacks(self) -> None:
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, LeverUser):  # a GovernorCallback: give it the levers this trainer owns
                check_grad_hooks(type(self))
                cb.attach_levers(self)
                self.track_noise = True
            elif isinstance(cb, GovernedTrainerState):
                cb.trainer = self

    def _load_callback_state(self) -> None:
        # restore_callback_states_from_checkpoint=True replaces callbacks by new instances: link those
        super()._load_callback_state()
        self._link_callbacks()

    # ------------------------------------------------------------------ sampler
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if INDEX_COLUMN not in self._signature_columns:
            self._signature_columns.append(INDEX_COLUMN)  # kept through remove_unused_columns

    def _get_train_sampler(self, train_dataset: Any = None) -> KeptSampler:
        if self._sampler is None:
            self._sampler = KeptSampler(self.n_examples, self.args.data_seed or self.args.seed)
        return self._sampler

    @property
    def kept_indices(self) -> np.ndarray:
        """Indices (rows of the train dataset given) still trained on."""
        if self._sampler is None:
            return np.arange(self.n_examples)
        return self._sampler.kept_indices()

    @property
    def kept_fraction(self) -> float:
        return len(self.kept_indices) / max(self.n_examples, 1)

    # ------------------------------------------------------------------ losses
    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        idx = inputs.pop(INDEX_COLUMN, None)
        labels = inputs.get("labels")
        if idx is None or labels is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[1]
        per = per_example_losses(logits, labels, causal=_is_causal(model))
        rows = idx.cpu().numpy()
        self.example_loss[rows] = per.cpu().numpy()
        self.example_step[rows] = self.state.global_step
        if self._sampler is not None:
            self._sampler.consumed += len(rows)
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------ gradient noise
    def _clip_grad_norm(self, model: Any) -> Any:
        self._add_gradients(model)  # before clipping: the env sums the raw gradients
        return self._record_norm(super()._clip_grad_norm(model))

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        if grad_norm is not None:  # max_grad_norm > 0: _clip_grad_norm recorded this step
            return super()._get_grad_norm(model, grad_norm=grad_norm)
        self._add_gradients(model)  # no clipping: the gradients are the raw ones
        return self._record_norm(super()._get_grad_norm(model, grad_norm=None))

    def _add_gradients(self, model: Any) -> None:
        if not self.track_noise:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        if self._gsum is None or len(self._gsum) != len(params):
            self._gsum, self._gnorms = [torch.zeros_like(p, dtype=torch.float32) for p in params], []
        pairs = [(s, p.grad) for s, p in zip(self._gsum, params) if p.grad is not None]
        if pairs:
            torch._foreach_add_([s for s, _ in pairs], [g.float() for _, g in pairs])

    def _record_norm(self, gn: Any) -> Any:
        if self.track_noise:
            self._gnorms.append(torch.as_tensor(gn).detach().float().reshape(()).cpu())
        return gn

    def take_noise_interval(self) -> tuple[float, float, int] | None:
        """The interval's (mean of the steps' |g|², |Σg / n|², n) and a fresh interval; None below 2 steps.

        The two-batch-size estimate of the env (``FineTuneRun.advance``): per-step pre-clip gradients
        (batch B) and their mean over the interval's n steps (batch n·B).
        """
        n, gsum, norms = len(self._gnorms), self._gsum, self._gnorms
        self._gsum, self._gnorms = None, []
        if n < 2 or gsum is None:
            return None
        small = float(np.mean(torch.stack(norms).numpy() ** 2))
        big = float(torch.stack(torch._foreach_norm(gsum)).pow(2).sum()) / n**2
        return small, big, n

    # ------------------------------------------------------------------ levers
    def can_reprune(self, fraction: float, min_kept_fraction: float = 0.0) -> bool:
        """Whether a reprune of ``fraction`` leaves at least a batch and ``min_kept_fraction`` of the data."""
        kept = len(self.kept_indices)
        after = kept * (1 - fraction)
        return (
            after >= self.args.per_device_train_batch_size
            and after / max(self.n_examples, 1) >= min_kept_fraction
        )

    def reprune(self, fraction: float, mode: str = "hardest") -> dict[str, Any]:
        """Drop ``fraction`` of the kept examples with the highest (hardest) or lowest (easiest) recorded loss.

        Examples not yet seen (no recorded loss) are never dropped. Costs no forward pass. The next batch
        the loader draws comes from the new kept set.

        Returns:
            The event: step, mode, fraction, how many were dropped and kept, the dropped indices.
        """
        if mode not in REPRUNE_MODES:
            raise ConfigError(f"GovernedTrainer.reprune: mode must be one of {REPRUNE_MODES}; got {mode!r}.")
        if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
            raise ConfigError(
                f"GovernedTrainer.reprune: fraction must be a number in (0, 1); got {fraction!r} (e.g. 0.2 drops "
                "a fifth of the kept examples)."
            )
        sampler = self._get_train_sampler()
        kept = sampler.kept_indices()
        seen = kept[np.isfinite(self.example_loss[kept])]
        n_drop = min(int(round(fraction * len(kept))), len(seen))
        order = np.argsort(self.example_loss[seen], kind="stable")
        if mode == "hardest":
            order = order[::-1]
        dropped = np.sort(seen[order[:n_drop]])
        sampler.kept[dropped] = False
        event = {
            "step": int(self.state.global_step),
            "event": f"reprune_{mode}",
            "fraction": float(fraction),
            "dropped": int(n_drop),
            "kept": int(sampler.kept.sum()),
            "kept_fraction": float(sampler.kept.sum()) / max(self.n_examples, 1),
            "dropped_indices": dropped.tolist(),
        }
        self.events.append(event)
        self.state.log_history.append({k: v for k, v in event.items() if k != "dropped_indices"})
        return event


class GovernedTrainer(GovernedMixin, Trainer):
    """A ``Trainer`` with a reprunable train set ranked by the per-example losses it records (``GovernedMixin``)."""


_GOVERNED: dict[type, type] = {GovernedTrainer: GovernedTrainer, Trainer: GovernedTrainer}


def governed(trainer_cls: type) -> type:
    """``trainer_cls`` with ``GovernedTrainer``'s levers: ``governed(SFTTrainer)`` is TRL's trainer that reprunes,
    switches the base and reads the noise scale for a ``GovernorCallback`` (one class per ``trainer_cls``).

    Example::

        from trl import SFTConfig, SFTTrainer
        trainer = governed(SFTTrainer)(model=model, args=SFTConfig(...), train_dataset=train, eval_dataset=held,
                                       processing_class=tok, callbacks=[GovernorCallback("default", budget_epochs=3)])
    """
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, Trainer)):
        raise ConfigError(
            f"governed: expected a transformers.Trainer subclass (Trainer, trl.SFTTrainer, ...); got {trainer_cls!r}."
        )
    if issubclass(trainer_cls, GovernedMixin):
        return trainer_cls
    if trainer_cls not in _GOVERNED:
        _GOVERNED[trainer_cls] = type(
            f"Governed{trainer_cls.__name__}",
            (GovernedMixin, trainer_cls),
            {
                "__doc__": f"``{trainer_cls.__name__}`` with ``GovernedMixin``'s levers (``governed``).",
                "__module__": __name__,
            },
        )
    return _GOVERNED[trainer_cls]


GRAD_HOOKS = ("_clip_grad_norm", "_get_grad_norm")
"""The Trainer methods the noise scale is read through (each step's gradients before clipping)."""


def missing_grad_hooks(trainer_cls: type) -> list[str]:
    """Which of ``GRAD_HOOKS`` the Trainer class (below ``GovernedMixin``'s overrides) does not define."""
    below = [c for c in trainer_cls.__mro__ if c is not GovernedMixin and not issubclass(c, GovernedMixin)]
    return [name for name in GRAD_HOOKS if not any(name in vars(c) for c in below)]


def check_grad_hooks(trainer_cls: type) -> None:
    """Refuse a Trainer whose training loop has no ``_clip_grad_norm`` / ``_get_grad_norm``.

    ``GovernedMixin`` reads the pre-clip gradients by overriding them; a transformers whose loop never calls
    them (older ones clip inline) would leave the noise scale reading 0 without a word. The floor in
    pyproject (transformers>=5.25, the version tested) has both; this check covers an older install.
    """
    missing = missing_grad_hooks(trainer_cls)
    if missing:
        import transformers

        raise ConfigError(
            f"GovernedTrainer: this transformers ({transformers.__version__}) Trainer has no {', '.join(missing)}, "
            "through which the gradient noise scale is read; with it missing the governor's noise-scale feature "
            'would silently read 0. Install a tested transformers (pip install "transformers>=5.25"), or use a '
            "plain Trainer with GovernorCallback (no noise scale, reprune or base switch)."
        )


def _is_causal(model: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    m = getattr(m, "module", m)
    return m.__class__.__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()


__all__ = [
    "INDEX_COLUMN",
    "SWITCH_BASES",
    "TENSORS_FILE",
    "GovernedMixin",
    "GovernedTrainer",
    "GovernedTrainerState",
    "governed",
    "check_grad_hooks",
    "missing_grad_hooks",
    "KeptSampler",
]
