"""Compute accounting: FLOPs measured with torch.utils.flop_counter, once per (strategy, batch shape).

Every FLOP a run spends is counted — training steps, evaluation passes, pruning scorer passes and
the one-off measurement passes — by running the real pass under ``FlopCounterMode`` the first time a
key (e.g. ("train", "lora+gc|(8, 128)")) is seen and reusing the count afterwards (``FlopCache``).
Counting what executes is right where formulas go wrong (LoRA, checkpointing), once the counter is
taught the ops it does not know (``register_formulas``): bitsandbytes' 4-bit and int8 matmuls and
CPU attention would otherwise count as zero.

Measured vs 6·N·D, default workload (``basemodel``: Llama, d = 128, 4 layers, 4 heads, MLP 352,
vocab 2,048, tied embeddings, N = 1,066,112; LoRA r = 8 on all 7 projections = 78,848 adapter
params; batch 8 × 128, D = 1,024 tokens; 6·N·D = 6.550 GFLOP). GFLOP per step, from
``count_flops`` on random weights (the count depends on shapes only):

    strategy   forward   fwd+bwd   ÷ 6·N·D
    full        2.449     7.483     1.14
    lora        2.611     5.679     0.87
    qlora       2.611     5.679     0.87   same matmuls as lora, to the FLOP
    int8        2.611     5.679     0.87   same matmuls as lora, to the FLOP
    full+gc     2.449     9.026     1.38
    lora+gc     2.611     7.852     1.20

N is the base model's count; with the adapters in N (1,144,960; ``param_counts()['total']``, as the
strategy table in docs/environment.md uses) 6·N·D = 7.035 and lora is 0.81×. An eval / scoring forward (eval
mode, no_grad) costs the forward column in every strategy.

Why the numbers are not 6·N·D (N_mm = 1,064,960 matmul weights: 7 × 4 linears = 802,816 + lm_head
262,144):

- **Embeddings.** 6·N·D treats every parameter as a matmul weight. The input embedding is a gather
  (zero FLOPs) while the lm_head is a matmul; tied here, the 2,048 × 128 matrix is in N once and
  multiplies once, so 6·N_mm·D = 6.543 ≈ 6·N·D. Untied (N = 1,328,256) the step still measures 7.483
  but 6·N·D = 8.161 (0.92×): count N as non-embedding + lm_head. RMSNorm weights (1,152) are elementwise.
- **Attention** adds matmuls with no parameters: QKᵀ and AV, each 2·T·d per token per layer, so
  4·L·T·d forward (Kaplan et al. 2020 write 2·L·T·d; torch counts both products over the full T × T,
  the causal mask not halved) = 0.268 GFLOP, and 2.5× that backward (torch's sdpa backward formula:
  five T × T products) = 0.671. Full step = 6·N_mm·D + 3.5 × 0.268 = 6.543 + 0.940; the extra
  grows with T/d (14% at T = d = 128).
- **LoRA** (and every frozen weight): the backward of a frozen linear computes only the input gradient
  (one matmul, 2·N·D) and no weight gradient, so a step is ≈ 4·N·D + 6·N_lora·D + attention, not
  6·N·D: 2.611 forward + 3.068 backward = 2.080 base input gradients (layer 0's q/k/v skipped: their
  input is the frozen embedding's output, which needs no gradient) + 0.317 adapters + 0.671 attention.
- **QLoRA / int8**: the frozen base does the same matmuls as LoRA's, on dequantized weights: the
  registered formulas make the counts identical (dequantization counted as zero, see below).
- **Gradient checkpointing** recomputes each decoder layer's forward during backward: +1.543 GFLOP
  for full (≈ +0.24 × 6·N·D; textbook "8·N·D" would be +2.18). Less than a forward (2.449) because
  lm_head is outside the checkpoints and torch's non-reentrant checkpoint stops recomputing once the
  tensors backward needs are rebuilt — each layer's last matmul (down_proj) is not redone. lora+gc
  adds +2.173: the recompute with adapters, plus layer 0's input gradients, which transformers turns
  on (embedding outputs require grad) so that checkpointed frozen layers get gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils import flop_counter as fc
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")

_REGISTERED = False


def _matmul_flops(m_rows: int, b_shape: Any) -> int:
    """2·M·N·K for A [M, K] @ Bᵀ with B [N, K]: N·K is B's logical element count in either orientation."""
    return 2 * int(m_rows) * math.prod(b_shape)


def register_formulas() -> None:
    """Teach FlopCounterMode the ops that hide a matmul from it (once per process).

    Found by logging every op a TorchDispatchMode sees during a forward and backward of a
    ``Linear4bit`` / ``Linear8bitLt`` layer on CPU (bitsandbytes 0.50); "source" rows are read from
    bitsandbytes' code, not exercised on this CPU:

    - 4-bit forward: ``bitsandbytes::gemm_4bit`` (dequantizes inside the kernel, invisible to the
      mode) -> 2·M·N·K registered here.
    - 4-bit eval forward on AVX512-BF16 CPUs (source): ``bitsandbytes::gemv_4bit`` -> same formula
      (govgym turns that packed path off, see ``memory._quantize``; kept for layers built elsewhere).
    - 4-bit backward (input gradient only): ``dequantize_4bit`` + ``aten.mm`` -> counted by torch.
    - int8 in train mode, forward and backward: bnb's CPU ``MatMul8bitFp`` dequantizes with aten ops
      (``_to_copy``, ``mul_``) and calls ``aten.mm`` -> counted by torch.
    - int8 in eval mode (scoring, evaluation): ``int8_vectorwise_quant`` + ``bitsandbytes::int8_scaled_mm``
      -> 2·M·N·K registered here (before this, an int8 eval forward missed every base matmul).
    - int8 on CUDA (source): ``int8_scaled_mm`` / ``int8_mixed_scaled_mm`` -> registered here.

    (De)quantization is elementwise — a few operations per weight or activation element, against
    2·M per weight for the matmul (M = 1,024 tokens a step here) — and FlopCounterMode counts no
    elementwise op (norms, softmax, activations are zero too), so it is zero here as well. A custom
    op's inner ops are not seen by the mode (it is disabled while the op runs), so nothing is
    counted twice.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True

    def register(op: Any, formula: Callable[..., int]) -> None:
        if op is not None and op not in fc.flop_registry:
            fc.register_flop_formula(op)(formula)

    # CPU sdpa runs as aten._scaled_dot_product_flash_attention_for_cpu, for which torch's counter has no
    # formula (it knows the CUDA flash/efficient/cudnn kernels): QKᵀ and AV would count as zero.
    def sdpa_fwd(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return fc.sdpa_flop_count(q, k, v)

    def sdpa_bwd(g: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return fc.sdpa_backward_flop_count(g, q, k, v)

    register(getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None), sdpa_fwd)
    register(getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None), sdpa_bwd)

    try:
        import bitsandbytes  # noqa: F401  (importing registers torch.ops.bitsandbytes)

        ops = torch.ops.bitsandbytes
    except (ImportError, RuntimeError):  # no bitsandbytes: no quantized layers to count
        return

    # gemm_4bit(A [..., K], B packed, shapeB = [N, K], ...) and gemv_4bit(A, B, shapeB, ...) -> [..., N]
    def gemm_4bit(a: Any, b: Any, shape_b: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return _matmul_flops(math.prod(a[:-1]), shape_b)

    # int8_scaled_mm / int8_linear_matmul(A [..., K], B [N, K]) -> [..., N]
    def int8_mm(a: Any, b: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return _matmul_flops(math.prod(a[:-1]), b)

    # int8_mixed_scaled_mm(A, CA [..., K], CB [N, K], ...): the int8 product (outlier columns, none at
    # threshold 0, are a small fp16 matmul inside the kernel and not added)
    def int8_mixed(a: Any, ca: Any, cb: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return _matmul_flops(math.prod(ca[:-1]), cb)

    for name, formula in (
        ("gemm_4bit", gemm_4bit),
        ("gemv_4bit", gemm_4bit),
        ("int8_scaled_mm", int8_mm),
        ("int8_linear_matmul", int8_mm),
        ("int8_mixed_scaled_mm", int8_mixed),
    ):
        register(getattr(ops, name, None), formula)


_register_formulas = register_formulas  # the earlier private name, kept while deploy/callback.py moves over


def count_flops(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn()`` under FlopCounterMode with the formulas above registered.

    Args:
        fn: the pass to count (a forward, a forward + backward, a scoring batch ...).

    Returns:
        (what ``fn`` returned, total FLOPs it executed; a multiply-add counts 2).
    """
    register_formulas()
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


class FlopCache:
    """FLOPs measured once per key (e.g. (strategy name, batch shape, kind)) and reused.

    A pass's FLOPs depend only on its shapes and the strategy, so each key is counted once: counting
    runs every op through a Python dispatch mode, which made a default-workload step 1.4× slower
    (full) and 1.8× (qlora) on one CPU thread, and a tiny test model's step 6×.
    Keys are stored by ``repr`` so that ``state_dict()`` is JSON-able and survives a run snapshot.
    """

    def __init__(self) -> None:
        self._flops: dict[str, int] = {}
        self.measurements = 0
        """How many passes were actually counted (the rest reused the cache); for tests and logs."""

    @staticmethod
    def _key(key: Hashable) -> str:
        return repr(key)

    def get(self, key: Hashable) -> int | None:
        """The cached FLOPs of ``key``, or None if it was never measured."""
        return self._flops.get(self._key(key))

    def measure(self, key: Hashable, fn: Callable[[], T]) -> tuple[T, int]:
        """Run ``fn()``; count its FLOPs the first time ``key`` is seen, run it plainly after.

        Returns:
            (what ``fn`` returned, its FLOPs: counted now or cached).
        """
        k = self._key(key)
        if k in self._flops:
            return fn(), self._flops[k]
        result, flops = count_flops(fn)
        self._flops[k] = flops
        self.measurements += 1
        return result, flops

    def state_dict(self) -> dict[str, int]:
        """{repr(key): FLOPs}, JSON-able."""
        return dict(self._flops)

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Replace the cache with ``state`` (from ``state_dict``, possibly through JSON)."""
        bad = {
            k: v
            for k, v in state.items()
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0
        }
        if bad:
            raise ValueError(
                f"FlopCache.load_state_dict: expected {{str: non-negative int}}, got {dict(list(bad.items())[:3])}; "
                "pass what FlopCache.state_dict() returned."
            )
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
    """Parameters by kind; tied weights counted once, packed 4-bit weights by their logical size.

    A ``Params4bit`` holds two NF4 values per byte (a 128 × 128 weight is 8,192 uint8 elements), so
    its size is read from ``quant_state.shape``; int8 weights are one value per element already.

    Returns:
        ``total`` (base + adapters), ``trainable`` (requires_grad) and ``non_embedding`` (total minus
        ``nn.Embedding`` weights; a tied lm_head is that same matrix, so it is excluded with it).
    """
    total = trainable = embedding = 0
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for p in model.parameters():  # de-duplicates tied parameters
        n = _logical_numel(p)
        total += n
        trainable += n if p.requires_grad else 0
        embedding += n if id(p) in emb_ids else 0
    return {"total": total, "trainable": trainable, "non_embedding": total - embedding}
