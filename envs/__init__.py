"""Gymnasium environments over a real fine-tuning run.

``govgym/FineTune-v0``, ``govgym/FineTune-v1``, ``govgym/FineTune-v2`` (the generated world) and ``govgym/FineTuneFast-v1`` (the fast backend fitted from
real runs) are registered when ``govgym`` is imported (if gymnasium is installed); the entry
point is a string, so nothing heavy is imported until ``gymnasium.make``.
"""

from __future__ import annotations

ENV_ID = "govgym/FineTune-v0"
ENV_ID_V1 = "govgym/FineTune-v1"
ENV_ID_FAST = "govgym/FineTuneFast-v1"
ENV_ID_V2 = "govgym/FineTune-v2"


def register_envs() -> None:
    """Register govgym's environments with gymnasium (idempotent)."""
    from gymnasium.envs.registration import register, registry

    if ENV_ID not in registry:
        register(
            id=ENV_ID,
            entry_point="govgym.envs.finetune_env:FineTuneEnv",
            kwargs={"version": 0},
            disable_env_checker=False,
        )
    if ENV_ID_V1 not in registry:
        register(
            id=ENV_ID_V1,
            entry_point="govgym.envs.finetune_env:FineTuneEnv",
            kwargs={"version": 1},
            disable_env_checker=False,
        )
    if ENV_ID_V2 not in registry:
        register(id=ENV_ID_V2, entry_point="govgym.envs.objective:make_v2", disable_env_checker=False)
    if ENV_ID_FAST not in registry:
        register(
            id=ENV_ID_FAST,
            entry_point="govgym.envs.fast_env:FineTuneFastEnv",
            disable_env_checker=False,
        )
