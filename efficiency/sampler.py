"""Seeded, resumable data order over the examples a run still keeps."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class EpochSampler:
    """Shuffles the kept examples once per epoch with its own generator (drop-last batches).

    Its state (generator, kept indices, permutation, position, epoch) is part of a run snapshot, so a
    restored run draws exactly the same batches. Repruning starts a new epoch over the new kept set.
    """

    def __init__(self, n: int, seed: int):
        self.gen = torch.Generator().manual_seed(int(seed))
        self.kept = np.arange(n, dtype=np.int64)
        self.epoch = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.perm = torch.from_numpy(self.kept)[torch.randperm(len(self.kept), generator=self.gen)]
        self.pos = 0

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """Row indices of the next batch (a new epoch starts when fewer than a batch remain)."""
        if self.pos + batch_size > len(self.perm):
            self.epoch += 1
            self._new_epoch()
        idx = self.perm[self.pos : self.pos + batch_size]
        self.pos += batch_size
        return idx

    def set_kept(self, kept: np.ndarray) -> None:
        self.kept = np.sort(np.asarray(kept, dtype=np.int64))
        self.epoch += 1
        self._new_epoch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "kept": self.kept.copy(),
            "perm": self.perm.clone(),
            "pos": self.pos,
            "epoch": self.epoch,
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.gen.set_state(st["gen"])
        self.kept = st["kept"].copy()
        self.perm = st["perm"].clone()
        self.pos = st["pos"]
        self.epoch = st["epoch"]
