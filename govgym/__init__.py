"""govgym: learned compute governors for LLM fine-tuning.

The installed package is one import root: ``govgym.efficiency`` (the real fine-tuning run and its
levers), ``govgym.envs`` (Gymnasium environments), ``govgym.agents`` (governors) and
``govgym.configs`` (YAML presets).
"""

from __future__ import annotations

__version__ = "0.1.0"


def _register() -> None:
    # `import govgym` makes gymnasium.make("govgym/FineTune-v0") work when gymnasium is installed;
    # deployment installs without it (a missing gymnasium is not an error here).
    import importlib.util

    if importlib.util.find_spec("gymnasium") is not None:
        from govgym.envs import register_envs

        register_envs()


_register()
