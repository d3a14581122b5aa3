"""The checks of ``GovernorCallback``'s arguments: one sentence naming the argument, raised in the constructor.

Numbers are Python or numpy numbers (``np.float32(0.3)`` is a number), never bools (``True`` is not 1.0),
finite, in the argument's range; a count of steps is an integer (``2.5`` steps is refused, not rounded);
a budget is bounded so that converting it to steps or FLOPs cannot overflow (bad-inputs round 2: N6–N11).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from govgym.deploy.validate import check_interval
from govgym.errors import ConfigError

WHO = "GovernorCallback"
BUDGET_LIMITS = {"budget_flops": 1e30, "budget_epochs": 1e6, "budget_steps": 1e12}
"""Largest budget of each kind: 1e30 FLOPs (10^5 x a frontier pretraining run), 10^6 epochs, 10^12 steps;
larger ones overflow where they become step counts (1e308 epochs x batches per epoch = inf)."""


def is_number(x: Any) -> bool:
    """A real number: int, float or a numpy scalar of either, never a bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def check_number(name: str, value: Any, lo: float, hi: float) -> float:
    """``value`` as a float if it is a finite number in [lo, hi]; else a ``ConfigError`` naming ``name``."""
    if not (is_number(value) and math.isfinite(value) and lo <= value <= hi):
        kind = " (a bool is not a number)" if isinstance(value, (bool, np.bool_)) else ""
        raise ConfigError(f"{WHO}: {name} must be a number in [{lo:g}, {hi:g}]; got {value!r}{kind}.")
    return float(value)


def check_budget(budget_flops: Any, budget_epochs: Any, budget_steps: Any) -> tuple[str, float]:
    """(kind, value) of the one budget given; a ``ConfigError`` for none, several, or a bad value."""
    given = {
        k: v
        for k, v in (
            ("budget_flops", budget_flops),
            ("budget_epochs", budget_epochs),
            ("budget_steps", budget_steps),
        )
        if v is not None
    }
    if len(given) != 1:
        raise ConfigError(
            f"{WHO}: give exactly one budget (budget_flops, budget_epochs or budget_steps); "
            f"got {', '.join(f'{k}={v}' for k, v in given.items()) or 'none'}. The governor's "
            "observation is the fraction of the budget left, so it needs one, e.g. budget_epochs=3."
        )
    ((kind, value),) = given.items()
    hi = BUDGET_LIMITS[kind]
    if not (is_number(value) and math.isfinite(value) and 0 < value <= hi):
        raise ConfigError(f"{WHO}: {kind} must be a finite number > 0 and <= {hi:g}; got {value!r}.")
    if kind == "budget_steps" and not float(value).is_integer():
        raise ConfigError(
            f"{WHO}: budget_steps must be a whole number of optimizer steps; got {value!r}. Pass an integer, "
            f"e.g. budget_steps={max(math.ceil(value), 1)}."
        )
    return kind, float(value)


def check_k(interval_steps: Any, governor: Any) -> int:
    """K: ``interval_steps``, or the governor's own; an integer in range (``deploy.validate.check_interval``)."""
    k = interval_steps if interval_steps is not None else getattr(governor, "interval_steps", None)
    src = "interval_steps" if interval_steps is not None else "the governor"
    fix = f"(from {src}) Pass interval_steps=K, e.g. the interval the governor was trained with."
    return check_interval(k, WHO, fix)


__all__ = ["BUDGET_LIMITS", "check_budget", "check_k", "check_number", "is_number"]


def resolve_governor(governor: Any, tolerance: float | None = None) -> tuple[Any, list[str], str | None]:
    """(governor, its action names, the path it was given as or None): an object with SB3's ``predict``
    and ``action_names`` holding continue and stop, or a path / shipped name loaded by ``shipped.load_any``
    (``"default"`` is the shipped default of the objective: equal quality when ``tolerance`` is given)."""
    import os

    from govgym.envs.actions import CONTINUE, STOP

    if governor is None:
        raise ConfigError(
            f"{WHO}: no governor given. If this happens while resuming with "
            "restore_callback_states_from_checkpoint=True: the Trainer rebuilds each callback from the "
            "arguments saved in the checkpoint, and a governor passed as a Python object cannot be saved "
            "there. Resume with restore_callback_states_from_checkpoint=False (the default; the callback "
            "restores its own state in place), or pass the governor as an exported artifact's path."
        )
    ref = None
    if isinstance(governor, (str, os.PathLike)):
        from govgym.deploy import shipped

        ref, governor = str(governor), shipped.load_any(governor, tolerance)
    names = list(getattr(governor, "action_names", None) or [])
    missing = [a for a in (CONTINUE, STOP) if a not in names]
    if missing or not callable(getattr(governor, "predict", None)):
        raise ConfigError(
            f"{WHO}: the governor must have predict(obs, action_masks=...) and action_names "
            f"including 'continue' and 'stop'; got {type(governor).__name__} with action names {names} "
            f"(missing {missing or 'predict'}). Build a heuristic with its action list, e.g. "
            "make_policy('patience', ['continue', 'stop']), or load an exported governor."
        )
    return governor, names, ref


def check_shield(shield: Any, shield_k: Any) -> tuple[bool, float]:
    """(shield, k): ``shield`` a bool, k a number in [0, 1e3] (gain_rate is clipped to [-10, 10] and
    lam <= 10, so a k above 1e3 could never fire: refused)."""
    if not isinstance(shield, (bool, np.bool_)):
        raise ConfigError(
            f"{WHO}: shield must be True or False; got {shield!r}. Pass shield=False to turn the "
            "shield off, shield=True (the default) to keep it."
        )
    return bool(shield), check_number("shield_k", shield_k, 0.0, 1e3)
