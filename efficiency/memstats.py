"""Memory measured by category from the tensors themselves, and the analytic estimate beside it.

Measured on one real optimizer step (the run's own step, instrumented once per strategy and batch
shape, or every ``memory.measure_every`` steps):

- parameters: bytes of every unique parameter/buffer storage (4-bit weights count their packed bytes
  plus their absmax scales; int8 weights their bytes plus row scales);
- gradients: bytes of ``.grad`` of the trainable parameters right after backward;
- optimizer state: bytes of the optimizer's state tensors right after ``step()``;
- activations: bytes saved for backward, caught by ``torch.autograd.graph.saved_tensors_hooks``
  (unique storages, parameters excluded). Under gradient checkpointing the hooks only see what is
  saved outside checkpointed layers, so we add the layer inputs the checkpoint keeps (forward
  pre-hooks) and the recompute peak of one layer (the largest per-layer saved bytes, from one
  extra forward with checkpointing off; its FLOPs are counted by the caller).

Their sum (``total``) is what the analytic estimate predicts. Independently, ``profile_peak`` is the
peak of live bytes over the same step from torch.profiler's allocator events on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA; it also sees transient temporaries (the logits'
gradient, softmax buffers) that belong to no category. A memory cap is compared with ``peak``: on
CUDA max(total, allocator peak); on CPU the total (the profiler's peak is reported as a check only).

Analytic estimate (fp32 unless noted; N = parameters, N_t = trainable, B·T tokens per step):

    M_θ = 4·N_fp32 + (0.5 + 4/64)·N_nf4 + (1 + 4/d_in)·N_int8     # NF4 absmax: one fp32 per 64 weights
    M_G = 4·N_t
    M_O = 8·N_t (AdamW: two fp32 moments) | ≈ 2·N_t (8-bit AdamW; tensors < 4096 elements stay 32-bit)
    M_A = 4·B·T·[L·(10·d + 4·i + 2·h) + V + 3·d]     # per layer: 2 RMSNorms (input, rsqrt, output),
                                                    # q/k/v/o inputs, rotary q/k, v, attention out +
                                                    # logsumexp (h), SwiGLU gate/up/silu/product (4·i);
                                                    # outside: final norm, lm_head input, logits (V)
    M_A(gc) = 4·B·T·[L·d + (10·d + 4·i + 2·h) + V + 3·d]   # kept layer inputs + one layer's recompute

The per-layer count 10·d + 4·i + 2·h floats per token was read off the saved tensors of transformers'
LlamaDecoderLayer (sdpa attention, fp32) and checked at two widths: 1354 measured vs 1356 formula at
d=64, 2702 vs 2704 at d=128.

Measured vs estimate agree within 15% on the default workload (``tests/test_memstats.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from govgym.efficiency.memory import base_model, set_checkpointing

# torch 2.13's kineto prints "USDT ... profiler_start/stop" to stderr on every profiled step (the
# memory measurement profiles one step per strategy); read at the profiler's first start, so setting
# it here, before any profile(), silences it. A user's own KINETO_LOG_LEVEL wins.
os.environ.setdefault("KINETO_LOG_LEVEL", "99")

MB = 2**20


@dataclass
class MemoryStats:
    """Bytes by category for one optimizer step."""

    params: int = 0
    grads: int = 0
    optimizer: int = 0
    activations: int = 0
    profile_peak: int = 0
    """Independent check: peak live bytes over the step (torch.profiler on CPU, CUDA allocator on GPU)."""

    @property
    def total(self) -> int:
        """The four categories live at once (what the analytic estimate predicts)."""
        return self.params + self.grads + self.optimizer + self.activations

    allocator: bool = False
    """True when ``profile_peak`` comes from the CUDA caching allocator (deterministic, authoritative)."""

    @property
    def peak(self) -> int:
        """Peak compared with a memory cap. On CUDA: the larger of the category total and the allocator's
        peak (which also sees temporaries). On CPU: the category total, which is deterministic — the
        profiler's event order varies with thread timing by a few MiB, and an episode must replay
        bit-identically."""
        return max(self.total, self.profile_peak) if self.allocator else self.total

    def as_mb(self) -> dict[str, float]:
        d = {k: v / MB for k, v in asdict(self).items()}
        d["total"] = self.total / MB
        d["peak"] = self.peak / MB
        d.pop("allocator", None)
        return d


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return (s.data_ptr(), s.nbytes())


def param_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers (unique storages), including bnb quantization scales."""
    seen: dict[tuple[int, int], int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        k = _storage_key(t)
        seen[k] = k[1]
        qs = getattr(t, "quant_state", None)
        if qs is not None and getattr(qs, "absmax", None) is not None:
            seen[_storage_key(qs.absmax)] = qs.absmax.nbytes
    for m in model.modules():
        st = getattr(m, "state", None)
        scb = getattr(st, "SCB", None)
        if isinstance(scb, torch.Tensor):
            seen[_storage_key(scb)] = scb.nbytes
    return sum(seen.values())


def grad_bytes(params: list[nn.Parameter]) -> int:
    return sum(p.grad.nbytes for p in params if p.grad is not None)


def optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    seen: dict[tuple[int, int], int] = {}
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.numel() > 1:  # skip scalar step counters
                k = _storage_key(v)
                seen[k] = k[1]
    return sum(seen.values())


class ActivationMeter:
    """Counts bytes saved for backward during a forward pass (and checkpoint-kept layer inputs)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.param_keys = {_storage_key(p) for p in model.parameters()}
        self.saved: dict[tuple[int, int], int] = {}
        self.layer_inputs = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        k = _storage_key(t)
        if k not in self.param_keys and t.device.type != "meta":
            self.saved[k] = k[1]
        return t

    @contextlib.contextmanager
    def watch(self, checkpointed_layers: list[nn.Module] = ()) -> Iterator[ActivationMeter]:
        def pre_hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            h = args[0] if args else kwargs.get("hidden_states")
            if isinstance(h, torch.Tensor):
                self.layer_inputs += h.nbytes

        handles = [m.register_forward_pre_hook(pre_hook, with_kwargs=True) for m in checkpointed_layers]
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                yield self
        finally:
            for h in handles:
                h.remove()

    @property
    def bytes(self) -> int:
        return sum(self.saved.values()) + self.layer_inputs


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks that gradient checkpointing wraps (transformers' GradientCheckpointingLayer)."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # older transformers: fall back to the usual ModuleList of blocks
        GradientCheckpointingLayer = ()  # type: ignore[assignment]
    layers = [
        m for m in model.modules() if GradientCheckpointingLayer and isinstance(m, GradientCheckpointingLayer)
    ]
    if not layers:
        lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
        layers = list(max(lists, key=len)) if lists else []
    return layers


def max_layer_saved_bytes(model: nn.Module, forward: Callable[[], torch.Tensor]) -> int:
    """Largest bytes one decoder layer saves for backward (what one checkpoint recompute holds).

    Runs ``forward`` once with checkpointing temporarily off and attributes saved bytes to layers.
    """

    bm = base_model(model)
    flag = (
        "is_activation_checkpointing"
        if hasattr(type(bm), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    was = getattr(bm, flag, False)
    meter = ActivationMeter(model)
    per_layer: list[int] = []
    marks: list[int] = []

    def pre(_m: nn.Module, _a: Any) -> None:
        marks.append(sum(meter.saved.values()))

    def post(_m: nn.Module, _a: Any, _o: Any) -> None:
        per_layer.append(sum(meter.saved.values()) - marks.pop())

    layers = decoder_layers(model)
    handles = [h for m in layers for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]

    if was:
        set_checkpointing(model, False)
    try:
        with meter.watch():
            out = forward()
        del out
    finally:
        for h in handles:
            h.remove()
        if was:
            set_checkpointing(model, True)
    return max(per_layer, default=0)


@contextlib.contextmanager
def profile_peak(device: torch.device) -> Iterator[dict[str, int]]:
    """Measure peak live bytes over the block: CUDA allocator stats, or torch.profiler allocation events."""
    result = {"peak": 0}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result["peak"] = torch.cuda.max_memory_allocated(device)
        result["base"] = base
        return

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield result
    # Allocator-level alloc (+bytes) / free (-bytes) records, in time order: the live-bytes curve.
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, b in events:
        live += b
        peak = max(peak, live)
    result["peak_delta"] = peak  # caller adds the bytes live before the block


def estimate(
    model: nn.Module, strategy: Any, batch: int, seq: int, trainable: list[nn.Parameter]
) -> MemoryStats:
    """The analytic estimate M_θ + M_G + M_O + M_A (see the module docstring)."""
    import bitsandbytes as bnb

    m_theta = 0.0
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            if isinstance(mod, bnb.nn.Linear4bit) and p is mod.weight:
                n = mod.in_features * mod.out_features
                m_theta += (0.5 + 4 / 64) * n
            elif isinstance(mod, bnb.nn.Linear8bitLt) and p is mod.weight:
                m_theta += (1 + 4 / mod.in_features) * mod.in_features * mod.out_features
            else:
                m_theta += p.numel() * p.element_size()
    m_theta += sum(b.nbytes for b in model.buffers())
    n_t = sum(p.numel() for p in trainable)
    if strategy.adam8:
        m_o = sum(2 * p.numel() if p.numel() >= 4096 else 8 * p.numel() for p in trainable)
    else:
        m_o = 8 * n_t
    c = base_model(model).config
    d, i, h = c.hidden_size, c.intermediate_size, c.num_attention_heads
    n_layers, vocab = c.num_hidden_layers, c.vocab_size
    per_layer = 10 * d + 4 * i + 2 * h
    layers = n_layers * d + per_layer if strategy.gc else n_layers * per_layer
    m_a = 4 * batch * seq * (layers + vocab + 3 * d)
    return MemoryStats(params=int(m_theta), grads=4 * n_t, optimizer=int(m_o), activations=int(m_a))
