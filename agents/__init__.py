"""Governors (heuristic and learned) and how they are judged."""
