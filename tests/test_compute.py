"""FLOP accounting: measured with FlopCounterMode, right under LoRA, QLoRA, int8 and checkpointing."""

from __future__ import annotations

import torch

from govgym.efficiency.compute import FlopCache, count_flops, param_counts, six_nd
from govgym.efficiency.config import MemoryConfig
from govgym.efficiency.memory import Strategy, apply_strategy
from tests.conftest import tiny_llama

X = torch.randint(0, 256, (4, 32))


def flops(strategy: str) -> tuple[int, int, dict]:
    m = apply_strategy(tiny_llama(hidden=64, inter=176, heads=4), None, Strategy.parse(strategy), MemoryConfig(), 0)
    _, fwd = count_flops(lambda: m(input_ids=X, labels=X).loss)
    _, step = count_flops(lambda: m(input_ids=X, labels=X).loss.backward())
    return fwd, step, param_counts(m)


def test_full_step_is_about_6nd_of_the_matmul_weights():
    fwd, step, n = flops("full")
    # backward = 2 x forward for weight matmuls; torch counts the attention backward as 2.5 x its forward
    assert 3 * fwd <= step < 3.1 * fwd
    # 6·N·D over the weights that do matmuls (the embedding is a gather) plus attention's QK^T and AV
    # (4·T·d per token per layer forward at T = 32, d = 64: ~8% here).
    ratio = step / six_nd(n["non_embedding"], X.numel())
    assert 1.02 <= ratio < 1.15, ratio


def test_lora_backward_skips_frozen_weight_gradients():
    f_fwd, f_step, _ = flops("full")
    l_fwd, l_step, _ = flops("lora")
    # full backward = 2x forward matmuls; LoRA: ~1x (input gradients) + the small adapters + attention
    assert l_step - l_fwd < 0.7 * (f_step - f_fwd)


def test_quantized_bases_count_like_lora():
    l_fwd, l_step, _ = flops("lora")
    for s in ("qlora", "int8"):
        q_fwd, q_step, _ = flops(s)
        assert abs(q_fwd - l_fwd) / l_fwd < 0.01, (s, q_fwd, l_fwd)  # bnb gemm_4bit formula registered
        assert abs(q_step - l_step) / l_step < 0.01, (s, q_step, l_step)


def test_checkpointing_adds_a_recomputed_forward():
    fwd, step, _ = flops("full")
    _, gc_step, _ = flops("full+gc")
    extra = gc_step - step
    assert 0.5 * fwd < extra <= fwd  # the decoder layers' forward again (lm_head is not recomputed)


def test_cache_measures_once():
    cache = FlopCache()
    calls = []
    for _ in range(3):
        _, f = cache.measure(("k", 1), lambda: calls.append(torch.ones(8, 8) @ torch.ones(8, 8)))
        assert f == 2 * 8 * 8 * 8
    assert len(calls) == 3 and cache.measurements == 1
    other = FlopCache()
    other.load_state_dict(cache.state_dict())
    assert other.get(("k", 1)) == 1024


def test_param_counts_use_logical_4bit_size():
    full = param_counts(tiny_llama(hidden=64, inter=176, heads=4))
    m = apply_strategy(tiny_llama(hidden=64, inter=176, heads=4), None, Strategy.parse("qlora"), MemoryConfig(), 0)
    q = param_counts(m)
    assert q["total"] > full["total"] and q["trainable"] < full["total"] / 5


def test_cpu_attention_kernel_is_counted():
    # torch's counter knows only the CUDA sdpa kernels; ours registers the CPU flash kernel too.
    q = torch.randn(2, 4, 64, 16, requires_grad=True)
    _, f = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward())
    fwd = 2 * 2 * 2 * 4 * 64 * 64 * 16  # QK^T and AV
    assert f == fwd + int(2.5 * fwd)  # torch's flash backward formula: 5 matmuls
