"""Memory strategies, switched mid-run in place, and memory measured by category."""

from __future__ import annotations

from dataclasses import dataclass

BASES = ("full", "lora", "qlora", "int8")
MODIFIERS = ("adam8", "gc")


@dataclass(frozen=True)
class Strategy:
    """A memory strategy: how the base weights are held, which optimizer, and checkpointing.

    base: full (all weights trainable, fp32) | lora (frozen fp32 base + adapters) | qlora (frozen NF4
    4-bit base + adapters) | int8 (frozen int8 base + adapters). adam8: 8-bit AdamW (bitsandbytes).
    gc: gradient checkpointing (recompute activations in backward).
    """

    base: str = "full"
    adam8: bool = False
    gc: bool = False

    @classmethod
    def parse(cls, name: str) -> Strategy:
        """Parse 'full', 'lora+gc', 'full+adam8+gc', ... (order of modifiers does not matter)."""
        parts = [p.strip() for p in str(name).split("+") if p.strip()]
        if not parts or parts[0] not in BASES:
            raise ValueError(
                f"got {name!r}; the strategy must start with one of {', '.join(BASES)} and may add "
                f"'+adam8' and/or '+gc', e.g. 'lora+gc'."
            )
        mods = parts[1:]
        for m in mods:
            if m not in MODIFIERS:
                raise ValueError(f"got {name!r}: unknown modifier '+{m}'; allowed: +adam8, +gc.")
        return cls(base=parts[0], adam8="adam8" in mods, gc="gc" in mods)

    @property
    def name(self) -> str:
        return self.base + ("+adam8" if self.adam8 else "") + ("+gc" if self.gc else "")

    @property
    def adapters(self) -> bool:
        """True when the base is frozen and LoRA adapters train."""
        return self.base != "full"

    def __str__(self) -> str:
        return self.name
