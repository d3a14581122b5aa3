"""The action table of a govgym env, its masks and the check of an action (numpy only, no gymnasium).

One place for what an action *is*: the table's order and names (``action_table``), the masks built by
name from it (``action_mask``: the real env, the fast env and ``deploy.callback.GovernorCallback``),
and the check of an action passed to ``step`` (``action_index``). ``govgym.deploy`` imports this module:
it must stay free of gymnasium and torch (tests/test_layers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def action_index(action: Any, n: int, names: list[str] | None = None) -> int:
    """``action`` as an int in [0, n): what ``Discrete(n).contains`` accepts, bools excepted.

    Raises:
        TypeError: not an integer (a float such as 3.99 is never truncated to 3), or an array that
            is not 0-d (``np.array([0])``), ``None``, a string ...
        ValueError: an integer outside [0, n).
    """
    value = action
    if isinstance(value, np.ndarray) and value.shape == () and np.issubdtype(value.dtype, np.integer):
        value = value.item()  # a 0-d integer array, as SB3's predict returns for one observation
    listed = f" ({', '.join(f'{i} {a}' for i, a in enumerate(names))})" if names else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        shape = f" of shape {value.shape} and dtype {value.dtype}" if isinstance(value, np.ndarray) else ""
        raise TypeError(
            f"action {action!r}{shape}: expected one integer in [0, {n}) ({type(action).__name__} given); "
            f"pass an int such as env.step(0){listed}."
        )
    if not 0 <= int(value) < n:
        raise ValueError(f"action {action!r} is outside Discrete({n}): use 0 to {n - 1}{listed}.")
    return int(value)


CONTINUE = "continue"
STOP = "stop"
REPRUNES = ("reprune_hardest", "reprune_easiest")
"""The reprune actions, hardest first (their argument: ``name.split("_", 1)[1]``)."""
SWITCH = "switch:"
"""Prefix of a switch action's name: ``switch:<strategy>``."""


def switch_target(name: str) -> str | None:
    """The strategy a ``switch:<strategy>`` action names; None for any other action."""
    return name[len(SWITCH) :] if name.startswith(SWITCH) else None


def action_names(targets: Sequence[Any]) -> list[str]:
    """The names of ``action_table(targets)``, in order."""
    return action_table(list(targets))[1]


def action_mask(names: Sequence[str], *, reprune: bool, switch: Callable[[str], bool]) -> np.ndarray:
    """The valid actions among ``names``, by name: the one mask rule of the envs and the callback.

    ``continue`` and ``stop`` are always valid; both reprunes are valid when ``reprune``; a
    ``switch:<t>`` is valid when ``switch(t)`` (the caller's rule: not the strategy in force, fits the
    cap, a lever it can pull).

    Args:
        names: the action names, in the policy's order (an env's ``action_table`` or a subset of it).
        reprune: whether a reprune can run now (enough data would remain).
        switch: whether a switch to the target strategy (as written in the name) is valid now.
    """
    mask = np.zeros(len(names), dtype=bool)
    for i, name in enumerate(names):
        target = switch_target(name)
        if target is not None:
            mask[i] = bool(switch(target))
        elif name in REPRUNES:
            mask[i] = bool(reprune)
        else:
            mask[i] = name in (CONTINUE, STOP)
    return mask


def action_table(targets: list[Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """The action list of a govgym env with switch ``targets``: (kind, argument) per action, and its names.

    0 continue, 1 reprune_hardest, 2 reprune_easiest, one ``switch:<target>`` per target, then stop. The
    envs dispatch on the (kind, argument) pairs, never on the names.
    """
    actions = [(CONTINUE, None), *(("reprune", r.split("_", 1)[1]) for r in REPRUNES)]
    actions += [("switch", t) for t in targets] + [(STOP, None)]
    names = [CONTINUE, *REPRUNES, *[f"{SWITCH}{t}" for t in targets], STOP]
    return actions, names


__all__ = [
    "CONTINUE",
    "REPRUNES",
    "STOP",
    "SWITCH",
    "action_index",
    "action_mask",
    "action_names",
    "action_table",
    "allowed_mask",
    "masked_argmax",
    "restricted",
    "switch_target",
]


def allowed_mask(names: Sequence[str], allowed: Any) -> np.ndarray:
    """A boolean mask over ``names`` of the ``allowed`` ones: a list of names among ``names``, ``continue``
    among them (a stop-only governor: ``["continue", "stop"]``). ValueError otherwise."""
    if not isinstance(allowed, (list, tuple)) or not all(isinstance(a, str) for a in allowed):
        raise ValueError(f"allowed actions must be a list of action names; got {allowed!r:.120}.")
    unknown = [a for a in allowed if a not in names]
    if unknown or CONTINUE not in allowed:
        raise ValueError(
            f"allowed actions {list(allowed)}: must include {CONTINUE!r} and name only the actions "
            f"({', '.join(names)}); not among them: {unknown}."
        )
    return np.array([n in allowed for n in names], dtype=bool)


def restricted(action_masks: Any, allowed: np.ndarray | None, rows: int, n: int) -> np.ndarray | None:
    """The caller's masks (``rows`` x ``n``; None = every action valid) and an agent's allowed set (None =
    all): what a maskable agent may choose from; None when neither restricts anything."""
    if action_masks is None and allowed is None:
        return None
    m = (
        np.ones((rows, n), dtype=bool)
        if action_masks is None
        else np.asarray(action_masks, dtype=bool).reshape(rows, n)
    )
    return m if allowed is None else m & allowed


def masked_argmax(values: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """Each row's best action among its True entries (``masks`` None: among all): a Q agent's choice."""
    return (values if masks is None else np.where(masks, values, -np.inf)).argmax(axis=1)
