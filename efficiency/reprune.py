"""The reprune lever on a running ``FineTuneRun``: rank its kept examples and drop a share of them.

    info = reprune(run, "recorded", 0.2)          # the losses the steps recorded: 0 FLOPs
    info = reprune(run, "el2n", 0.2, "hardest")   # an exact no-grad scoring pass, FLOPs counted
    info = reprune(run, "loss", 0.2, sample=400)  # ... among 400 random kept examples

``FineTuneRun.reprune`` calls this. The scorers, the selection rules and the recorded-loss helpers are
``efficiency/pruning.py``'s; this module applies them to a run (its sampler, recorded losses, noise
labels and FLOP ledger) and reports what was dropped.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from govgym.efficiency.pruning import (
    RECORDED,
    REPRUNE_SCORERS,
    drop_positions,
    fill_unseen,
    score_examples,
    select,
)
from govgym.errors import RunError


def reprune(run: Any, scorer: str, fraction: float, mode: str = "hardest", sample: int = 0) -> dict[str, Any]:
    """Rank the kept examples and drop ``round(fraction · kept)`` of them, hardest or easiest (or random) first.

    Args:
        run: the ``FineTuneRun`` to reprune (its sampler's kept set changes; its scoring FLOPs are added
            to ``run.flops['score']``).
        scorer: ``recorded`` (the losses the training steps recorded: 0 FLOPs; never-drawn examples
            rank at the mean of the drawn ones, ties among them broken at random) or an exact scorer
            (``loss``, ``el2n``, ``gradnorm``: a no-grad pass, FLOPs charged to ``flops['score']``).
        fraction: share of the kept set to drop.
        mode: ``hardest`` | ``easiest`` | ``random`` (random scores nothing and costs nothing).
        sample: exact scorers only: score ``m`` random kept examples (raised to at least the number
            dropped) and drop from those; 0 scores the whole kept set.

    Returns:
        scorer, mode, dropped, kept, noise_in_dropped, noise_removed, flops, seconds, ``sample`` (the
        examples scored exactly: the sample size, or 0 for the whole set / recorded / random) and
        ``stale_steps`` (mean optimizer steps since the dropped examples' scores were taken: 0 for an
        exact scorer; for ``recorded`` over the dropped examples that had a recorded loss, whose
        count is ``dropped_seen``).

    Raises:
        RunError: a bad scorer, mode or sample, or a drop that would leave less than one batch.
    """
    if scorer not in REPRUNE_SCORERS and mode != "random":
        raise RunError(f"reprune: scorer {scorer!r} is unknown; allowed: {', '.join(REPRUNE_SCORERS)}.")
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 0:
        raise RunError(
            f"reprune: sample must be an integer >= 0 (examples to score; 0 = the whole kept set); got {sample!r}."
        )
    if sample and scorer == RECORDED and mode != "random":
        raise RunError(
            f"reprune: sample={sample} applies to the exact scorers; 'recorded' already ranks the whole kept "
            "set at 0 FLOPs. Pass sample=0, or an exact scorer (loss, el2n, gradnorm)."
        )
    kept = run.sampler.kept
    n_drop = int(round(fraction * len(kept)))
    if len(kept) - n_drop < run.cfg.optim.batch_size:
        raise RunError(
            f"reprune would keep {len(kept) - n_drop} examples, fewer than one batch "
            f"({run.cfg.optim.batch_size}); use a smaller fraction."
        )
    t0 = time.perf_counter()
    flops, m, stale, n_seen = 0, 0, 0.0, 0
    rng = np.random.default_rng([run.cfg.seed, run.step])
    if mode == "random":
        keep_pos = select(np.zeros(len(kept)), fraction, mode, rng=rng)
    elif scorer == RECORDED:
        values, _ = fill_unseen(run.example_loss[torch.from_numpy(kept).to(run.device)].cpu().numpy())
        perm = rng.permutation(len(kept))  # ties (the never-drawn, all at the mean) in random order
        keep_pos = np.sort(perm[select(values[perm], fraction, mode)])
    else:
        pos = np.arange(len(kept))
        if sample:
            m = min(max(int(sample), n_drop), len(kept))
            pick = np.random.default_rng([run.cfg.seed, run.step, 1]).choice(len(kept), m, replace=False)
            pos = np.sort(pick)
        sc = score_examples(
            run.model,
            run.train_ids[kept[pos]],
            run.train_labels[kept[pos]],
            scorer,
            flop_cache=run.flop_cache,
        )
        flops = sc.flops
        drop_pos = pos[drop_positions(sc.values, n_drop, mode)]
        keep_pos = np.setdiff1d(np.arange(len(kept)), drop_pos)
    run.flops["score"] += flops
    dropped = np.setdiff1d(kept, kept[keep_pos])
    if scorer == RECORDED and mode != "random":
        seen_steps = run.last_seen[torch.from_numpy(dropped).to(run.device)].cpu().numpy()
        seen_steps = seen_steps[seen_steps >= 0]
        n_seen = int(len(seen_steps))
        stale = float(np.mean(run.step - seen_steps)) if n_seen else 0.0
    run.sampler.set_kept(kept[keep_pos])
    noisy = run.noise[dropped] != 0
    return {
        "scorer": scorer,
        "mode": mode,
        "dropped": int(len(dropped)),
        "kept": int(len(keep_pos)),
        "noise_in_dropped": float(noisy.mean()) if len(dropped) else 0.0,
        "noise_removed": float(noisy.sum() / max((run.noise[kept] != 0).sum(), 1)),
        "flops": int(flops),
        "seconds": time.perf_counter() - t0,
        "sample": int(m),
        "stale_steps": stale,
        "dropped_seen": n_seen if scorer == RECORDED else int(len(dropped)),
    }


__all__ = ["reprune"]
