"""The real fine-tuning run and the levers a governor pulls. Knows nothing of RL."""
