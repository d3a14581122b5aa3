"""The base-switch lever of ``GovernedTrainer``: ``switch_base`` (full, lora, qlora, int8) and its helpers.

``SwitchMixin`` converts the live model in place (LoRA adapters added, on a base quantized by
bitsandbytes for qlora / int8, or merged back), rebuilds the optimizer for the new trainable set and
keeps the scheduler at its position. ``GovernedMixin`` (``deploy/trainer.py``) inherits it; the
attributes it reads (``model``, ``memory``, ``events``, the noise interval) are the trainer's.
"""

from __future__ import annotations

from typing import Any

from govgym.deploy.levers import LeverUser
from govgym.errors import ConfigError

# every base of the env's strategies: qlora / int8 quantize the live Linear targets with bitsandbytes
# (a core dependency; its 4-bit and 8-bit layers run on CPU too) and add LoRA adapters on top
SWITCH_BASES = ("full", "lora", "qlora", "int8")


class SwitchMixin:
    """``switch_base`` and the ``base`` property of ``GovernedMixin`` (mixed into a ``transformers.Trainer``)."""

    def switch_base(self, base: str) -> dict[str, Any]:
        """Switch the live model between full, LoRA, QLoRA and int8 in place; rebuild the optimizer and scheduler.

        ``lora``: fresh adapters (B = 0, so the function is unchanged) on the ``memory`` config's targets,
        base frozen; ``qlora`` / ``int8``: those targets first quantized in place to bitsandbytes NF4 /
        int8 layers, then adapters; ``full``: adapters merged into the (dequantized) weights, every weight
        trainable. Between two adapter bases the model goes through full (the env's
        ``efficiency.memory`` path). The optimizer is rebuilt for the new trainable set (its moments
        start at zero) and the scheduler resumes at the current step. The Trainer's training loop keeps
        calling the same module tree, which every change edits in place.

        Returns:
            The event: step, the switch, trainable parameters before and after.
        """
        if base not in SWITCH_BASES:
            raise ConfigError(
                f"GovernedTrainer.switch_base: base must be one of {SWITCH_BASES} (full fine-tuning, LoRA, "
                f"LoRA on a 4-bit NF4 base, LoRA on an int8 base); got {base!r}."
            )
        now = self.base
        before = _trainable(self.model)
        if base != now:
            self._convert(base)
            self._gsum, self._gnorms = None, []  # another parameter space: the noise interval starts over
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
            if isinstance(cb, LeverUser):
                cb.model_changed(self, self.model)
        return event

    def _convert(self, base: str) -> None:
        """The model conversion of ``switch_base`` (no optimizer, no event)."""
        from govgym.efficiency.memory import add_adapters, to_full
        from govgym.efficiency.strategy import Strategy

        gc = bool(getattr(self.model, "is_gradient_checkpointing", False))
        if self.base != "full":
            self.model = to_full(self.model)
        if base != "full":
            self.model = add_adapters(
                self.model, Strategy(base), self.memory, self.args.seed + self.state.global_step
            )
        self.model_wrapped = self.model
        if gc:  # the wrapper / unwrapped model must keep checkpointing as it was
            kw = self.args.gradient_checkpointing_kwargs or {"use_reentrant": False}
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)

    @property
    def base(self) -> str:
        """The base strategy of the live model: full, lora, qlora (4-bit base) or int8 (8-bit base)."""
        m = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        if getattr(m, "is_loaded_in_4bit", False):
            return "qlora"
        if getattr(m, "is_loaded_in_8bit", False):
            return "int8"
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
        # callbacks get these from the handler (GovernorCallback reads the LR there): the new ones
        self.callback_handler.optimizer, self.callback_handler.lr_scheduler = (
            self.optimizer,
            self.lr_scheduler,
        )


def _trainable(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


__all__ = ["SWITCH_BASES", "SwitchMixin"]
