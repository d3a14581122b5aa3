"""Gymnasium environments over a real fine-tuning run."""
