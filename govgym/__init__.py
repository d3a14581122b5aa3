"""govgym: learned compute governors for LLM fine-tuning.

The installed package is one import root, in layers whose imports point one way (tests/test_layers.py):
the base (``govgym.typed``, ``govgym.errors``, ``govgym.results``, ``govgym.plots``, and the YAML presets
of ``govgym.configs``) -> ``govgym.efficiency`` (the real fine-tuning run and its levers) ->
``govgym.envs`` (Gymnasium environments) -> ``govgym.agents`` (governors) -> ``govgym.cli`` (the
``govgym`` command). This root holds ``__version__`` and registers the env; it is the one module that
imports upward, and only ``govgym.envs.register_envs`` (a string entry point: nothing heavy loads).
"""

from __future__ import annotations

import importlib.util
import logging

__version__ = "0.1.0"


def _quiet_libraries() -> None:

    # bitsandbytes >= 0.50.2 on AVX512-BF16 CPUs tries to fetch a 4-bit kernel from a hub at import and
    # warns when it cannot; govgym runs offline and turns that packed path off (efficiency/memory.py).
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


_quiet_libraries()


def _register() -> None:
    # `import govgym` makes gymnasium.make("govgym/FineTune-v0") work. gymnasium is a core dependency,
    # but deployment (an exported policy in a Trainer run) needs only torch and transformers, so an
    # environment without it is not an error here.

    try:
        found = importlib.util.find_spec("gymnasium") is not None
    except (ImportError, ValueError):  # an import hook that refuses it: deploying without gymnasium
        found = False
    if found:
        from govgym.envs import register_envs

        register_envs()


_register()
