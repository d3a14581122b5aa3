"""The checkpoint / resume state of ``GovernedTrainer``: what it saves with each checkpoint and restores.

Resuming (``train(resume_from_checkpoint=...)``) restores the base strategy, the sampler's kept set and
position, the recorded losses and steps, the events and the noise interval in progress: the
``GovernedTrainerState`` callback carries them as JSON in ``trainer_state.json``, and
``govgym_trainer.safetensors`` in the checkpoint the tensors (the base weights under LoRA adapters
after a switch; the noise sums). A checkpoint saved under QLoRA / int8 is refused (see ``_restore``).
``GovernedMixin`` (``deploy/trainer.py``) inherits ``CheckpointMixin``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from govgym.deploy.sampler import KeptSampler
from govgym.deploy.state import FORMAT, from_json, to_json
from govgym.errors import ConfigError

TENSORS_FILE = "govgym_trainer.safetensors"  # in each checkpoint: what JSON cannot hold (see save_model)


class CheckpointMixin:
    """``governed_state``, ``save_model``, ``train`` (resume) and ``_restore`` of ``GovernedMixin``."""

    def governed_state(self) -> dict[str, Any]:
        """What a resume needs, as JSON: base, sampler position, per-example losses and steps, events."""
        started = self._sampler is not None
        return to_json(
            {
                "format": FORMAT,
                "started": started,
                "global_step": int(self.state.global_step) if started else 0,
                "n_examples": self.n_examples,
                "base": self.base,
                "sampler": self._sampler.state() if started else None,
                "example_loss": self.example_loss,
                "example_step": self.example_step,
                "events": self.events,
                "noise_steps": len(self._gnorms),
            }
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's save, plus (in checkpoints) ``govgym_trainer.safetensors``: the tensors JSON cannot hold.

        Those are the noise interval in progress (summed gradients, per-step norms) and, when the run has
        switched and holds LoRA adapters now, the base weights under them (the Trainer saves only the
        adapters of a PEFT model, and this run's base is no longer the one the script loads).
        """
        super().save_model(output_dir, _internal_call)
        if not (_internal_call and output_dir and self.args.should_save):
            return
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        if self._gsum is not None and self._gnorms:
            tensors.update({f"gsum.{i}": g for i, g in enumerate(self._gsum)})
            tensors["gnorms"] = torch.stack(self._gnorms)
        if self.base == "lora" and any(e["event"].startswith("switch_") for e in self.events):
            for k, v in self.model.get_base_model().state_dict().items():
                if "lora_" not in k:
                    tensors["base." + k.replace(".base_layer.", ".")] = v
        if tensors:
            save_file(
                {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()},
                str(Path(output_dir) / TENSORS_FILE),
            )

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; a resume first restores this trainer's state (base, sampler, losses, events)."""
        if resume_from_checkpoint:
            path = resume_from_checkpoint
            if isinstance(path, bool):
                from transformers.trainer_utils import get_last_checkpoint

                path = (
                    get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
                )
            if path is not None:  # none: the Trainer's own error says so
                self._restore(Path(path))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _restore(self, ckpt: Path) -> None:
        from transformers.trainer import TRAINER_STATE_NAME

        file = ckpt / TRAINER_STATE_NAME
        if not file.is_file():
            return
        saved = json.loads(file.read_text()).get("stateful_callbacks", {}).get("GovernedTrainerState")
        if isinstance(saved, list):
            saved = saved[0]
        st = from_json((saved or {}).get("attributes", {}).get("saved") or {})
        if not st.get("started"):
            return  # not saved by a GovernedTrainer in training: nothing of ours to restore
        if st["n_examples"] != self.n_examples:
            raise ConfigError(
                f"GovernedTrainer: checkpoint {ckpt} was trained on {st['n_examples']} examples; this trainer has "
                f"{self.n_examples}. Resume with the same train dataset."
            )
        if st["base"] in ("qlora", "int8"):
            raise ConfigError(
                f"GovernedTrainer: checkpoint {ckpt} was saved while the run was switched to {st['base']} (LoRA on "
                "a quantized base). The checkpoint holds the adapters only, and the quantized base was made from "
                "weights this run had trained, which it does not hold: the run cannot be rebuilt exactly. Resume "
                "from a checkpoint saved under full or lora (keep more with save_total_limit), or start afresh."
            )
        tensors: dict[str, torch.Tensor] = {}
        if (ckpt / TENSORS_FILE).is_file():
            from safetensors.torch import load_file

            tensors = load_file(str(ckpt / TENSORS_FILE))
        base_sd = {k[len("base.") :]: v for k, v in tensors.items() if k.startswith("base.")}
        if st["base"] != self.base or base_sd:
            if self.base != "full":
                self._convert("full")
            if base_sd:  # the run's base weights under its adapters
                missing, unexpected = self.model.load_state_dict(base_sd, strict=False)
                if missing or unexpected:
                    raise ConfigError(
                        f"GovernedTrainer: the base weights saved in {ckpt / TENSORS_FILE} do not fit this model "
                        f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}). Resume with the model "
                        "the checkpoint was trained from."
                    )
            if st["base"] != "full":
                self._convert(st["base"])  # the Trainer loads the checkpoint's adapters into these
        self._sampler = KeptSampler(self.n_examples, self.args.data_seed or self.args.seed)
        self._sampler.load_state(st["sampler"])
        self.example_loss = np.asarray(st["example_loss"], dtype=np.float32)
        self.example_step = np.asarray(st["example_step"], dtype=np.int64)
        self.events = list(st["events"])
        if "gnorms" in tensors:
            dev = next(self.model.parameters()).device
            n = len([k for k in tensors if k.startswith("gsum.")])
            self._gsum = [tensors[f"gsum.{i}"].to(dev) for i in range(n)]
            self._gnorms = list(tensors["gnorms"].unbind(0))


class GovernedTrainerState(TrainerCallback, ExportableState):
    """Carries a ``GovernedTrainer``'s state through its checkpoints (``trainer_state.json``, JSON only).

    Added by ``GovernedTrainer`` itself; the Trainer saves ``state()`` with every checkpoint and
    ``GovernedTrainer.train(resume_from_checkpoint=...)`` restores it.
    """

    def __init__(self, trainer: Any = None) -> None:
        self.trainer = trainer

    def state(self) -> dict[str, Any]:
        t = self.trainer
        return {"args": {}, "attributes": {"saved": t.governed_state() if t is not None else {}}}


__all__ = ["TENSORS_FILE", "CheckpointMixin", "GovernedTrainerState"]
