"""Deployment: exported governors and the Hugging Face Trainer integration.

Imports neither Stable-Baselines3 nor gymnasium: a full-size fine-tuning run needs only torch,
transformers and numpy (DESIGN.md, "deploy"). The observation is computed with the same
``govgym.efficiency.signals`` code as in the environment.
"""
