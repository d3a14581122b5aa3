"""Several processes (``torchrun``, DDP): one decision for all ranks, taken on rank 0, files written by rank 0.

Each rank runs the callback; the Trainer's logged loss, grad norm and eval loss are already reduced over
the ranks, but a rank's own measurements (the FLOPs of its evaluation shard) can differ by padding, and a
decision taken apart on each rank could differ with them. So rank 0's measurements and rank 0's decision
are broadcast (``torch.distributed.broadcast_object_list``) and every rank acts on them: all stop, switch
or reprune at the same step. One process (no process group): everything here is the identity.

FLOPs are global: a step's FLOPs measured on one rank's per-device batch x the world size (every rank
runs the same step on its own batch), and likewise each evaluation (each rank evaluates its shard).
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def from_rank0(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (any picklable object); ``obj`` itself in one process.

    Every rank must call it at the same point (a collective): the callback does at its measurements and
    at each decision, which every rank reaches at the same step.
    """
    rank, world = rank_and_world()
    if world == 1:
        return obj
    import torch
    import torch.distributed as dist

    box: list[Any] = [obj]
    device = None
    if dist.get_backend() == "nccl":  # NCCL moves the pickled bytes through the current GPU
        device = torch.device("cuda", torch.cuda.current_device())
    dist.broadcast_object_list(box, src=0, device=device)
    return box[0]


__all__ = ["from_rank0", "rank_and_world"]
