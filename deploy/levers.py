"""The one interface between ``GovernedTrainer`` and ``GovernorCallback``: the levers a callback cannot reach.

A ``TrainerCallback`` sees events, not the Trainer: it cannot swap the train data (reprune), change the
model's base (full, LoRA, QLoRA, int8) or read gradients before clipping (the noise scale). A
``GovernedTrainer`` owns those; at construction (and when the Trainer rebuilds callbacks from a
checkpoint) it hands itself, as ``Levers``, to every callback that is a ``LeverUser``, and after a base
switch tells them the new model. Nothing else passes between them: no attribute of the other is set.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Levers(Protocol):
    """What a ``GovernedTrainer`` offers a governor (``deploy/trainer.py``)."""

    switch_bases: tuple[str, ...]
    """The bases ``switch_base`` reaches (a governor unmasks switches between these)."""
    events: list[dict[str, Any]]
    """Every reprune and switch so far, the governor's and any other caller's."""

    @property
    def kept_fraction(self) -> float:
        """Fraction of the train examples still kept (1.0 before any reprune)."""
        ...

    def can_reprune(self, fraction: float, min_kept_fraction: float = 0.0) -> bool:
        """Whether a reprune of ``fraction`` leaves at least a batch and ``min_kept_fraction`` of the data."""
        ...

    def reprune(self, fraction: float, mode: str = "hardest") -> dict[str, Any]:
        """Drop ``fraction`` of the kept examples (``mode`` hardest or easiest); the event."""
        ...

    def switch_base(self, base: str) -> dict[str, Any]:
        """Change the model's base in place (optimizer rebuilt); the event."""
        ...

    def take_noise_interval(self) -> tuple[float, float, int] | None:
        """(mean |g|², |sum g / n|², n) of the steps since the last call (None: none recorded); resets it."""
        ...


@runtime_checkable
class LeverUser(Protocol):
    """A callback that uses a ``GovernedTrainer``'s levers (``GovernorCallback``)."""

    def attach_levers(self, levers: Levers) -> None:
        """Called by the trainer at construction: the levers this callback may pull from now on."""
        ...

    def model_changed(self, levers: Levers, model: Any) -> None:
        """Called by the trainer after ``switch_base`` replaced its model (ignored unless ``levers`` is its own)."""
        ...


__all__ = ["LeverUser", "Levers"]
