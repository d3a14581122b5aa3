"""The memory-strategy type: a name such as ``lora+gc`` parsed once into (base, adam8, gc).

Torch-free (it imports nothing but the standard library and govgym's errors), so the observation
function, the heuristics, the env's action list and config validation all use this one type without
loading torch. ``efficiency/memory.py`` applies a strategy to a model; this module only names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from govgym.errors import ConfigError, did_you_mean

BASES = ("full", "lora", "qlora", "int8")
"""How the base weights are held; the order of the observation's strategy one-hot."""
MODIFIERS = ("adam8", "gc")
"""Optional '+modifier' parts: 8-bit AdamW (bitsandbytes) and gradient checkpointing."""


@dataclass(frozen=True)
class Strategy:
    """A memory strategy: how the base weights are held, which optimizer, and checkpointing.

    base: full (all weights trainable, fp32) | lora (frozen fp32 base + adapters) | qlora (frozen NF4
    4-bit base + adapters) | int8 (frozen int8 base + adapters). adam8: 8-bit AdamW (bitsandbytes).
    gc: gradient checkpointing (recompute activations in backward). Frozen, so strategies compare
    and hash by value: 'lora+gc+adam8' and 'lora+adam8+gc' parse to one, equal strategy.
    """

    base: str = "full"
    adam8: bool = False
    gc: bool = False

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ConfigError(
                f"strategy base: got {self.base!r}; allowed: {', '.join(BASES)}.{did_you_mean(self.base, BASES)}"
            )

    @classmethod
    def parse(cls, name: str | Strategy) -> Strategy:
        """Parse 'full', 'lora+gc', 'full+adam8+gc', ... (order of modifiers does not matter).

        Raises:
            ConfigError: (a ValueError) the name does not start with a base or has an unknown modifier.
        """
        if isinstance(name, Strategy):
            return name
        parts = [p.strip() for p in str(name).split("+") if p.strip()]
        if not parts or parts[0] not in BASES:
            hint = did_you_mean(parts[0], BASES) if parts else ""
            raise ConfigError(
                f"got {name!r}; the strategy must start with one of {', '.join(BASES)} and may add "
                f"'+adam8' and/or '+gc', e.g. 'lora+gc'.{hint}"
            )
        mods = parts[1:]
        for m in mods:
            if m not in MODIFIERS:
                raise ConfigError(
                    f"got {name!r}: unknown modifier '+{m}'; allowed: +adam8, +gc.{did_you_mean(m, MODIFIERS)}"
                )
        return cls(base=parts[0], adam8="adam8" in mods, gc="gc" in mods)

    @property
    def name(self) -> str:
        """The canonical spelling: base, then '+adam8', then '+gc' (what action names and traces show)."""
        return self.base + ("+adam8" if self.adam8 else "") + ("+gc" if self.gc else "")

    @property
    def adapters(self) -> bool:
        """True when the base is frozen and LoRA adapters train."""
        return self.base != "full"

    def __str__(self) -> str:
        return self.name


__all__ = ["BASES", "MODIFIERS", "Strategy"]
