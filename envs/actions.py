"""The one check of an action given to a govgym env (numpy only: the real and the fast env share it)."""

from __future__ import annotations

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


def action_table(targets: list[Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """The action list of a govgym env with switch ``targets``: (kind, argument) per action, and its names.

    0 continue, 1 reprune_hardest, 2 reprune_easiest, one ``switch:<target>`` per target, then stop. The
    envs dispatch on the (kind, argument) pairs, never on the names.
    """
    actions = [("continue", None), ("reprune", "hardest"), ("reprune", "easiest")]
    actions += [("switch", t) for t in targets] + [("stop", None)]
    names = ["continue", "reprune_hardest", "reprune_easiest", *[f"switch:{t}" for t in targets], "stop"]
    return actions, names


__all__ = ["action_index", "action_table"]
