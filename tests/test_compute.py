"""FLOP accounting: measured with FlopCounterMode, right under LoRA, QLoRA, int8 and checkpointing."""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
import torch.utils.checkpoint

from govgym.efficiency.compute import FlopCache, count_flops, param_counts, six_nd
from govgym.efficiency.config import MemoryConfig
from govgym.efficiency.memory import Strategy, apply_strategy
from tests.conftest import tiny_llama

X = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
D = X.numel()  # 4 seqs * 32 tokens = 128 tokens
LAYERS, HIDDEN, T = 2, 64, 32
# QK^T and AV: 2·T·d each per token per layer, over the full T x T (the causal mask is not halved)
ATTN_FWD = 4 * LAYERS * T * HIDDEN * D


def model(strategy: str) -> torch.nn.Module:
    m = tiny_llama(hidden=HIDDEN, inter=176, heads=4, layers=LAYERS)
    return apply_strategy(m, None, Strategy.parse(strategy), MemoryConfig(), 0)


def matmul_weights(m: torch.nn.Module) -> int:
    """Weights that multiply (every nn.Linear; the input embedding is a gather)."""
    return sum(mod.weight.numel() for mod in m.modules() if type(mod) is torch.nn.Linear)


@cache
def flops(strategy: str) -> tuple[int, int, int]:
    """(train-mode forward, forward + backward, eval-mode no_grad forward) FLOPs."""
    m = model(strategy)
    m(input_ids=X, labels=X).loss.backward()  # first pass moves int8 scales; count a steady step
    m.zero_grad()
    _, fwd = count_flops(lambda: m(input_ids=X, labels=X).loss)
    _, step = count_flops(lambda: m(input_ids=X, labels=X).loss.backward())
    m.eval()
    with torch.no_grad():
        _, ev = count_flops(lambda: m(input_ids=X).logits)
    return fwd, step, ev


def test_full_step_is_6nd_of_matmul_weights_plus_attention():
    n_mm = matmul_weights(tiny_llama(hidden=HIDDEN, inter=176, heads=4, layers=LAYERS))
    fwd, step, ev = flops("full")
    assert fwd == ev == 2 * n_mm * D + ATTN_FWD
    # backward: 2 matmuls per weight; torch's sdpa backward formula is 2.5x its forward (5 T x T products)
    assert step == six_nd(n_mm, D) + ATTN_FWD + int(2.5 * ATTN_FWD)
    # against the textbook 6·N·D over non-embedding params (lm_head untied here): attention is ~7% at T = 32
    n = param_counts(model("full"))["non_embedding"]
    assert 1.02 < step / six_nd(n, D) < 1.15


def test_lora_backward_skips_frozen_weight_gradients():
    f_fwd, f_step, _ = flops("full")
    l_fwd, l_step, _ = flops("lora")
    n_mm = matmul_weights(tiny_llama(hidden=HIDDEN, inter=176, heads=4, layers=LAYERS))
    n_lora = param_counts(model("lora"))["trainable"]
    # full backward = 4·N·D (+ attention); LoRA's frozen base: input gradients only, 2·N·D, less layer
    # 0's q/k/v (their input, the frozen embedding's output, needs no gradient), + adapters' 4·N_lora·D
    l_bwd = l_step - l_fwd
    assert l_bwd < 0.7 * (f_step - f_fwd)
    assert 2 * (n_mm - 3 * HIDDEN**2) * D + int(2.5 * ATTN_FWD) <= l_bwd
    assert l_bwd <= 2 * n_mm * D + 4 * n_lora * D + int(2.5 * ATTN_FWD)


@pytest.mark.parametrize("quantized", ["qlora", "int8"])
def test_quantized_bases_count_like_lora(quantized):
    # same matmuls on dequantized weights: gemm_4bit / int8_scaled_mm formulas make it exact
    assert flops(quantized) == flops("lora")


def test_quantized_eval_forward_is_counted():
    # eval mode takes other bnb paths (int8: int8_scaled_mm), which torch alone counts as zero
    _, _, lora_eval = flops("lora")
    assert flops("int8")[2] == flops("qlora")[2] == lora_eval == flops("lora")[0]


def test_checkpointing_adds_a_recomputed_forward():
    fwd, step, _ = flops("full")
    _, gc_step, _ = flops("full+gc")
    lm_head = 2 * 256 * HIDDEN * D
    extra = gc_step - step
    # the decoder layers' forward again, minus each layer's last matmul (down_proj), which torch's
    # non-reentrant checkpoint does not recompute (early stop); lm_head is outside the checkpoints
    down_proj = LAYERS * 2 * HIDDEN * 176 * D
    assert extra == fwd - lm_head - down_proj
    m = model("full+gc")
    with torch.utils.checkpoint.set_checkpoint_early_stop(False):
        _, full_recompute = count_flops(lambda: m(input_ids=X, labels=X).loss.backward())
    assert full_recompute - step == fwd - lm_head
    _, lora_step, _ = flops("lora")
    assert flops("lora+gc")[1] > lora_step + 0.5 * fwd


def test_cache_measures_once():
    cache = FlopCache()
    calls = []
    for _ in range(3):
        _, f = cache.measure(("k", (8, 8)), lambda: calls.append(torch.ones(8, 8) @ torch.ones(8, 8)))
        assert f == 2 * 8 * 8 * 8
    assert len(calls) == 3 and cache.measurements == 1  # ran every time, counted once
    assert cache.get(("k", (8, 8))) == 1024 and cache.get("other") is None
    restored = FlopCache()
    restored.load_state_dict(json.loads(json.dumps(cache.state_dict())))
    _, f = restored.measure(("k", (8, 8)), lambda: None)
    assert f == 1024 and restored.measurements == 0
    with pytest.raises(ValueError, match="state_dict"):
        restored.load_state_dict({"k": "lots"})


def test_param_counts_use_logical_4bit_size():
    full = param_counts(tiny_llama(hidden=HIDDEN, inter=176, heads=4, layers=LAYERS))
    m = model("qlora")
    q = param_counts(m)
    assert q["total"] == full["total"] + q["trainable"]  # the base counted at full size, plus adapters
    assert sum(p.numel() for p in m.parameters()) < q["total"]  # storage is packed two per byte
    assert q["non_embedding"] == q["total"] - 256 * HIDDEN


def test_cpu_attention_kernel_is_counted():
    # torch's counter knows only the CUDA sdpa kernels; ours registers the CPU flash kernel too.
    q = torch.randn(2, 4, 64, 16, requires_grad=True)
    _, f = count_flops(
        lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    )
    fwd = 2 * 2 * 2 * 4 * 64 * 64 * 16  # QK^T and AV
    assert f == fwd + int(2.5 * fwd)  # torch's flash backward formula: 5 matmuls
