"""Shipped YAML presets; read them with ``importlib.resources.files("govgym.configs")``."""
