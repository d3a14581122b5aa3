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
and ``switch:lora`` / ``switch:full`` (``switch_base``: LoRA adapters added to the live model or
merged back, the optimizer rebuilt for the new trainable set, the scheduler at its position) unmasked
(it finds the trainer through the ``trainer`` attribute set here); each reprune and switch is logged to
the trainer's ``events``, ``state.log_history`` and the callback's decision log.

Example::

    trainer = GovernedTrainer(model, args, train_dataset=train, eval_dataset=held_out,
                              callbacks=[GovernorCallback(gov, budget_epochs=3, interval_steps=20)])
    trainer.train()
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import Trainer

from govgym.efficiency.config import MemoryConfig
from govgym.efficiency.pruning import (
    per_example_losses as per_example_losses,  # one definition, shared with FineTuneRun
)
from govgym.errors import ConfigError

INDEX_COLUMN = "govgym_index"
REPRUNE_MODES = ("hardest", "easiest")
SWITCH_BASES = ("full", "lora")


class KeptSampler(Sampler[int]):
    """Draws ``length`` indices per epoch from successive seeded shuffles of a mutable kept set.

    Dropped indices are skipped lazily, so a reprune takes effect from the next index drawn.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.length = n, int(seed), n
        self.kept = np.ones(n, dtype=bool)
        self.passes = 0  # shuffles of the kept set started so far
        self._order: list[int] = []

    def __len__(self) -> int:
        return self.length

    def kept_indices(self) -> np.ndarray:
        return np.flatnonzero(self.kept)

    def _next(self) -> int:
        while True:
            while self._order:
                i = self._order.pop()
                if self.kept[i]:
                    return i
            g = torch.Generator()
            g.manual_seed(self.seed + self.passes)
            self.passes += 1
            idx = self.kept_indices()
            self._order = idx[torch.randperm(len(idx), generator=g).numpy()][::-1].tolist()

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.length):
            yield self._next()


class _IndexCollator:
    """Wraps the Trainer's collator: takes ``govgym_index`` out of each row, returns it as a tensor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if features and isinstance(features[0], dict) and INDEX_COLUMN in features[0]:
            idx = [int(f[INDEX_COLUMN]) for f in features]
            batch = self.inner([{k: v for k, v in f.items() if k != INDEX_COLUMN} for f in features])
            batch[INDEX_COLUMN] = torch.tensor(idx, dtype=torch.long)
            return batch
        return self.inner(features)


class GovernedTrainer(Trainer):
    """A ``Trainer`` with a reprunable train set ranked by the per-example losses it records.

    Takes every ``Trainer`` argument. The train dataset must be a ``datasets.Dataset`` (a column
    ``govgym_index`` is added to it; the collator wrapper removes it before the user's collator runs).

    Args:
        memory: the LoRA settings of ``switch_base("lora")`` (rank, alpha, targets; default the env's
            ``MemoryConfig``).

    Attributes:
        example_loss: float32 array, one per train example: its last recorded training loss (nan: unseen).
        events: the reprunes done, in order (also in ``state.log_history``).
    """

    def __init__(self, *args: Any, memory: MemoryConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        self.data_collator = _IndexCollator(self.data_collator)
        self.n_examples = len(ds)
        self.example_loss = np.full(self.n_examples, np.nan, dtype=np.float32)
        self.events: list[dict[str, Any]] = []
        self.memory = memory if memory is not None else MemoryConfig()
        self._sampler: KeptSampler | None = None
        for cb in self.callback_handler.callbacks:
            if hasattr(cb, "action_masks"):  # a GovernorCallback: give it the levers this trainer owns
                cb.trainer = self

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
        self.example_loss[idx.cpu().numpy()] = per.cpu().numpy()
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------ levers
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

    def switch_base(self, base: str) -> dict[str, Any]:
        """Switch the live model between full fine-tuning and LoRA in place; rebuild the optimizer and scheduler.

        ``lora``: fresh adapters (B = 0, so the function is unchanged) on the ``memory`` config's targets,
        base frozen; ``full``: adapters merged into the weights, every weight trainable. The optimizer is
        rebuilt for the new trainable set (its moments start at zero) and the scheduler resumes at the
        current step. The Trainer's training loop keeps calling the same module tree, which both
        changes edit in place.

        Returns:
            The event: step, the switch, trainable parameters before and after.
        """
        from govgym.efficiency.memory import add_adapters, to_full
        from govgym.efficiency.strategy import Strategy

        if base not in SWITCH_BASES:
            raise ConfigError(
                f"GovernedTrainer.switch_base: base must be one of {SWITCH_BASES}; got {base!r}."
            )
        now = self.base
        before = _trainable(self.model)
        if base != now:
            gc = bool(getattr(self.model, "is_gradient_checkpointing", False))
            if base == "lora":
                self.model = add_adapters(
                    self.model, Strategy("lora"), self.memory, self.args.seed + self.state.global_step
                )
            else:
                self.model = to_full(self.model)
            self.model_wrapped = self.model
            if gc:  # the wrapper / unwrapped model must keep checkpointing as it was
                kw = self.args.gradient_checkpointing_kwargs or {"use_reentrant": False}
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
            if self.optimizer is not None:  # inside train(): rebuild for the new trainable set
                self._rebuild_optimizer()
        event = {
            "step": int(self.state.global_step),
            "event": f"switch_{now}_to_{base}",
            "trainable_before": before,
            "trainable_after": _trainable(self.model),
        }
        self.events.append(event)
        self.state.log_history.append(dict(event))
        for cb in self.callback_handler.callbacks:
            if getattr(cb, "trainer", None) is self and getattr(cb, "model", None) is not None:
                cb.model = self.model
        return event

    @property
    def base(self) -> str:
        return "lora" if getattr(self.model, "peft_config", None) else "full"

    def _rebuild_optimizer(self) -> None:
        import warnings

        self.optimizer, self.lr_scheduler = None, None
        self.create_optimizer_and_scheduler(num_training_steps=self.state.max_steps)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": replaying the position
            warnings.simplefilter("ignore")
            for _ in range(self.state.global_step):
                self.lr_scheduler.step()
        self.optimizer = self.accelerator.prepare(self.optimizer)

    def can_reprune(self, fraction: float, min_kept_fraction: float = 0.0) -> bool:
        """Whether a reprune of ``fraction`` leaves at least a batch and ``min_kept_fraction`` of the data."""
        kept = len(self.kept_indices)
        after = kept * (1 - fraction)
        return (
            after >= self.args.per_device_train_batch_size
            and after / max(self.n_examples, 1) >= min_kept_fraction
        )


def _trainable(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _is_causal(model: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    m = getattr(m, "module", m)
    return m.__class__.__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
