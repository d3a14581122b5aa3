"""govgym: learned compute governors for LLM fine-tuning.

The installed package is one import root: ``govgym.efficiency`` (the real fine-tuning run and its
levers), ``govgym.envs`` (Gymnasium environments), ``govgym.agents`` (governors) and
``govgym.configs`` (YAML presets).
"""

from __future__ import annotations

__version__ = "0.1.0"
