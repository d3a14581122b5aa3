"""The errors a user can cause (bad config, path, model dir, snapshot): reported as one sentence by the CLI."""

from __future__ import annotations

from govgym.typed import ConfigError


def _user_errors() -> tuple[type[BaseException], ...]:
    from govgym.efficiency.memory import StrategyError
    from govgym.efficiency.run import RunError

    return (ConfigError, RunError, StrategyError, FileNotFoundError, NotADirectoryError, PermissionError)


USER_ERRORS: tuple[type[BaseException], ...] = _user_errors()
