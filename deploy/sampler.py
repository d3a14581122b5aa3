"""The pieces of ``GovernedTrainer``'s data path: its resumable kept-set sampler, the collator wrapper that
carries each row's index; per-example losses (``efficiency.pruning.per_example_losses``, re-exported) come
from the logits training already computes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from govgym.efficiency.pruning import per_example_losses  # one definition, shared with FineTuneRun

INDEX_COLUMN = "govgym_index"


class KeptSampler(Sampler[int]):
    """Draws ``length`` indices per epoch from successive seeded shuffles of a mutable kept set.

    Dropped indices are skipped lazily, so a reprune takes effect from the next index drawn (the
    Trainer's loader draws one batch ahead: that batch is already drawn). The position is resumable:
    ``consumed`` counts the indices of this epoch that training has used (``GovernedTrainer`` counts
    them), and ``state()`` / ``load_state()`` carry the kept set, the shuffle in progress and the
    indices drawn but not yet trained on (JSON only).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.length = n, int(seed), n
        self.kept = np.ones(n, dtype=bool)
        self.passes = 0  # shuffles of the kept set started so far
        self._order: list[int] = []
        self.drawn: list[int] = []  # indices yielded in the current epoch (-1: a resume's skipped slot)
        self.consumed = 0  # of those, how many training has used
        self._skip = 0  # resume: slots the Trainer skips at the start of the next epoch iterator
        self._pending: list[int] = []  # resume: drawn before the checkpoint, not yet trained on

    def __len__(self) -> int:
        return self.length

    def kept_indices(self) -> np.ndarray:
        return np.flatnonzero(self.kept)

    def _next(self) -> int:
        while True:
            while self._order:
                i = self._order.pop()
                if self.kept[i]:
                    return i
            g = torch.Generator()
            g.manual_seed(self.seed + self.passes)
            self.passes += 1
            idx = self.kept_indices()
            self._order = idx[torch.randperm(len(idx), generator=g).numpy()][::-1].tolist()

    def __iter__(self) -> Iterator[int]:
        skip, pending = self._skip, self._pending
        self._skip, self._pending = 0, []
        self.drawn, self.consumed = [], skip
        for k in range(self.length):
            if k < skip:  # the Trainer's skip_first_batches discards these: trained before the checkpoint
                self.drawn.append(-1)
                yield int(self.kept_indices()[0])
                continue
            i = pending.pop(0) if pending else self._next()
            self.drawn.append(i)
            yield i

    def state(self) -> dict[str, Any]:
        """The position as JSON: kept set (dropped indices), shuffle in progress, drawn-not-trained indices."""
        consumed = min(self.consumed, len(self.drawn))
        return {
            "n": self.n,
            "seed": self.seed,
            "dropped": np.flatnonzero(~self.kept).tolist(),
            "passes": self.passes,
            "order": list(self._order),
            "consumed": consumed if consumed < self.length else 0,  # an epoch's end: the next starts afresh
            "pending": [int(i) for i in self.drawn[consumed:]],
        }

    def load_state(self, st: dict[str, Any]) -> None:
        """Restore ``state()``; the next ``__iter__`` first yields the slots the resumed Trainer skips."""
        self.kept[:] = True
        self.kept[np.asarray(st["dropped"], dtype=np.int64)] = False
        self.passes, self._order = int(st["passes"]), [int(i) for i in st["order"]]
        self._skip, self._pending = int(st["consumed"]), [int(i) for i in st["pending"]]


class IndexCollator:
    """Wraps the Trainer's collator: takes ``govgym_index`` out of each row, returns it as a tensor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if features and isinstance(features[0], dict) and INDEX_COLUMN in features[0]:
            idx = [int(f[INDEX_COLUMN]) for f in features]
            batch = self.inner([{k: v for k, v in f.items() if k != INDEX_COLUMN} for f in features])
            batch[INDEX_COLUMN] = torch.tensor(idx, dtype=torch.long)
            return batch
        return self.inner(features)


__all__ = ["INDEX_COLUMN", "IndexCollator", "KeptSampler", "per_example_losses"]
