"""The named bases of the generated world and each family's linear layers: plain data, no torch import.

``efficiency.basemodel`` builds and caches any of them (``model.*`` overrides of ``RunConfig``);
``envs.world`` draws from them without importing torch, transformers or datasets.
"""

from __future__ import annotations

from typing import Any

WORLD_BASES: dict[str, dict[str, Any]] = {
    "llama-0.3m": {
        "arch": "llama",
        "hidden_size": 64,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 176,
    },
    "llama-1m": {},  # the embedded default (hidden 128, 4 layers, MLP 352): 1,066,112 params
    "llama-3m": {
        "arch": "llama",
        "hidden_size": 192,
        "num_layers": 6,
        "num_heads": 6,
        "intermediate_size": 512,
        "pretrain_lr": 2e-3,
    },
    "neox-0.3m": {
        "arch": "gpt_neox",
        "hidden_size": 64,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 256,
    },
    "neox-1m": {
        "arch": "gpt_neox",
        "hidden_size": 128,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 512,
    },
    "gpt2-0.3m": {
        "arch": "gpt2",
        "hidden_size": 64,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 256,
    },
    "gpt2-1m": {
        "arch": "gpt2",
        "hidden_size": 128,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 512,
    },
}
"""The bases of the generated world (``govgym instances generate``): ``model.*`` overrides, each built and
cached like the default (same corpus, tokenizer, vocabulary 2,048, 1,200 pretraining steps of 8 x 128
tokens). Sizes ~0.3M / ~1M / ~3M parameters; families Llama, GPT-NeoX, GPT-2 (``LORA_TARGETS``).
GPT-NeoX and GPT-2 get a 4x GELU MLP (their own convention) where Llama's SwiGLU has 2.75x."""

LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}
"""Every linear layer of each family's decoder blocks: ``memory.lora_targets`` for a base of that arch."""

__all__ = ["LORA_TARGETS", "WORLD_BASES"]
