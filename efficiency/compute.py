"""Compute accounting: FLOPs measured with torch.utils.flop_counter, once per (strategy, batch shape).

Every FLOP a run spends is counted — training steps, evaluation passes, pruning scorer passes and
the one-off measurement passes — by running the real pass under ``FlopCounterMode`` the first time a
key (e.g. ("train", "lora+gc|(8, 128)")) is seen and reusing the count afterwards. Because it counts
what actually executes, it is right where formulas go wrong:

- **LoRA / frozen layers**: the backward of a frozen linear computes only the input gradient (one
  matmul) and skips the weight gradient, so a LoRA step is ≈ 4·N·D, not 6·N·D.
- **Gradient checkpointing**: the recomputed forward is counted: ≈ 8·N·D for full fine-tuning.
- **QLoRA**: bitsandbytes runs the 4-bit forward matmul as its own op (``bitsandbytes::gemm_4bit``),
  which FlopCounterMode does not know; we register its formula (2·M·K·N, like the matmul it performs;
  dequantization is elementwise and counted as zero, like other elementwise ops). Its backward and the
  int8 path dequantize and call ``aten.mm``, which is counted as is. So QLoRA ≈ LoRA in FLOPs.

Why measured ≠ 6·N·D (N = parameters, D = tokens). On the default workload (1,066,112 params with tied
embeddings, 4 layers, d = 128, vocab 2,048; batch 8 × 128 = 1,024 tokens) one full step measures
7.48 GFLOP = 1.14 × 6·N·D (6.55 GFLOP); a LoRA step 5.68 (0.81×), a full+gc step 9.03 (1.38×):
  * 6·N·D counts every parameter as a matmul weight: the input embedding is a gather (tied here to the
    lm_head, a matmul, so the matrix counts once either way) and RMSNorm weights are elementwise;
  * attention adds matmuls with no parameters: QKᵀ and AV cost 4·T·d per token per layer forward
    (counted over the full T², not halved for the causal mask), and torch counts their backward as
    2.5× the forward: +0.94 GFLOP per step here, growing with T;
  * 6·N·D assumes every weight gets a weight gradient; frozen weights (LoRA, QLoRA, int8) do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")

_REGISTERED = False


def _register_bnb_formulas() -> None:
    """Teach FlopCounterMode the bitsandbytes ops that hide a matmul (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from torch.utils import flop_counter as fc

    # CPU sdpa runs as aten._scaled_dot_product_flash_attention_for_cpu, which torch's counter has no
    # formula for (it knows the CUDA flash/efficient/cudnn kernels): QKᵀ and AV would count as zero.
    cpu_fwd = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    cpu_bwd = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if cpu_fwd is not None and cpu_fwd not in fc.flop_registry:

        @fc.register_flop_formula(cpu_fwd)
        def _sdpa_cpu_flops(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
            return fc.sdpa_flop_count(q, k, v)

    if cpu_bwd is not None and cpu_bwd not in fc.flop_registry:

        @fc.register_flop_formula(cpu_bwd)
        def _sdpa_cpu_bwd_flops(g: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
            return fc.sdpa_backward_flop_count(g, q, k, v)

    try:
        import bitsandbytes  # noqa: F401  (registers torch.ops.bitsandbytes)
        from torch.utils.flop_counter import register_flop_formula

        op = torch.ops.bitsandbytes.gemm_4bit
    except (ImportError, AttributeError, RuntimeError):
        return

    @register_flop_formula(op)
    def _gemm_4bit_flops(a_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        # A [..., K] @ dequant(B)[K, N] -> out [..., N]: 2·M·K·N multiply-adds.
        return 2 * math.prod(out_shape) * a_shape[-1]


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn()`` under FlopCounterMode (bitsandbytes formulas registered); return (result, FLOPs)."""
    _register_bnb_formulas()
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


class FlopCache:
    """FLOPs measured once per key (e.g. (kind, strategy, batch shape)) and reused afterwards."""

    def __init__(self) -> None:
        self._flops: dict[str, int] = {}
        self.measurements = 0
        """How many times a pass was actually counted (the rest reused the cache)."""

    @staticmethod
    def _key(key: Hashable) -> str:
        return repr(key)

    def get(self, key: Hashable) -> int | None:
        return self._flops.get(self._key(key))

    def measure(self, key: Hashable, fn: Callable[[], T]) -> tuple[T, int]:
        """Run ``fn()``; count its FLOPs the first time ``key`` is seen, reuse the count after."""
        k = self._key(key)
        if k in self._flops:
            return fn(), self._flops[k]
        result, flops = count_flops(fn)
        self._flops[k] = flops
        self.measurements += 1
        return result, flops

    def state_dict(self) -> dict[str, int]:
        return dict(self._flops)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._flops = dict(state)


def six_nd(n_params: int, n_tokens: int) -> int:
    """The textbook training cost 6·N·D (2 forward + 4 backward FLOPs per parameter per token)."""
    return 6 * int(n_params) * int(n_tokens)


def _logical_numel(p: torch.Tensor) -> int:
    qs = getattr(p, "quant_state", None)
    if qs is not None and getattr(qs, "shape", None) is not None:
        return math.prod(qs.shape)  # 4-bit weights are stored packed, two per byte
    return p.numel()


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameters by kind, counting packed 4-bit weights by their logical size; tied weights once."""
    seen: set[int] = set()
    total = trainable = embedding = 0
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = _logical_numel(p)
        total += n
        trainable += n if p.requires_grad else 0
        embedding += n if id(p) in emb_ids else 0
    return {"total": total, "trainable": trainable, "non_embedding": total - embedding}
