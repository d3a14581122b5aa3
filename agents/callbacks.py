"""SB3 callbacks of govgym's training (imported only when training: SB3 is an optional extra)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback

from govgym.results import atomic_write


class WallClock(BaseCallback):
    """Training wall time, kept across kills and resumes: written to ``path`` after every rollout.

    Args:
        path: the JSON file (``{"seconds": ..., "env_steps": ...}``).
        resume: add the seconds already recorded in ``path`` (a resumed run continues the count).
        limit_s: stop training once this process has trained this long (0 = no limit); a bounded
            demo stops on time, whatever its steps cost.
    """

    def __init__(self, path: Path, resume: bool = False, limit_s: float = 0.0):
        super().__init__()
        self.path, self.t0, self.limit_s = Path(path), time.perf_counter(), float(limit_s)
        self.before = 0.0
        if resume and self.path.is_file():
            self.before = float(json.loads(self.path.read_text()).get("seconds", 0.0))

    def total(self) -> float:
        """Seconds of training so far, over every process that trained this agent."""
        return self.before + time.perf_counter() - self.t0

    def _on_step(self) -> bool:
        return not self.limit_s or time.perf_counter() - self.t0 < self.limit_s

    def _on_rollout_end(self) -> None:
        atomic_write(
            self.path, json.dumps({"seconds": round(self.total(), 1), "env_steps": int(self.num_timesteps)})
        )
