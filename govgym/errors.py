"""The errors govgym raises for things a user can cause, under one base class.

Every error a user can cause (a bad config value, path, model directory, snapshot, strategy, …) is a
``GovgymError``; the CLI reports any of them as one sentence and exits with status 2, never with a
traceback. This module is part of the base layer: it imports nothing of govgym.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GovgymError(Exception):
    """Base class of every error govgym raises for something the user can fix; the message says how."""


class ConfigError(GovgymError, ValueError):
    """A configuration value is wrong. The message names the field, the value and the fix.

    Also a ``ValueError``, so code written against earlier versions (``except ValueError``) still catches it.
    """


class RunError(GovgymError, RuntimeError):
    """The run cannot go on (diverged, out of memory, bad switch); the message says why."""


class StrategyError(GovgymError, RuntimeError):
    """A memory strategy cannot be applied to this model (e.g. no target module matches)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    GovgymError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
)
"""What the CLI reports as one sentence (exit status 2): every GovgymError and the OSErrors of a bad path."""


def did_you_mean(name: object, options: Iterable[object], cutoff: float = 0.5) -> str:
    """``" Did you mean 'x'?"`` for the option closest to ``name``, or ``""`` when none is close.

    The one "closest match" helper behind every unknown-name error (config keys, choices, instances,
    dataset columns, strategies), so they all read alike.
    """
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=cutoff)
    return f" Did you mean '{match[0]}'?" if match else ""


__all__ = ["USER_ERRORS", "ConfigError", "GovgymError", "RunError", "StrategyError", "did_you_mean"]
