"""Per-architecture construction of a fresh base model: one concern, ``model.arch`` -> an untrained LM.

Builds the Hugging Face config and causal LM for each family govgym pretrains (``llama``,
``gpt_neox``, ``gpt2``) at the widths of a :mod:`govgym.efficiency.bases` entry. Moved verbatim out of
:mod:`govgym.efficiency.basemodel` (which imports ``_new_model`` from here) to keep that module under
the project's line limit.
"""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM


def _new_model(m: Any, tokenizer: Any) -> Any:
    """A freshly initialised causal LM of family ``m.arch`` (seeded by the caller), fp32, tied embeddings.

    ``llama``: RMSNorm, rotary, SwiGLU MLP of ``intermediate_size``. ``gpt_neox``: LayerNorm, partial
    rotary (25%), parallel attention + GELU MLP, one fused ``query_key_value``. ``gpt2``: LayerNorm,
    learned positions, GELU MLP, ``Conv1D`` layers (``c_attn``/``c_proj``/``c_fc``). Same widths, so a
    size name means about the same parameter count in every family.
    """
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if m.arch == "gpt_neox":
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        config = GPTNeoXConfig(
            vocab_size=len(tokenizer),
            hidden_size=m.hidden_size,
            intermediate_size=m.intermediate_size,
            num_hidden_layers=m.num_layers,
            num_attention_heads=m.num_heads,
            max_position_embeddings=m.max_position_embeddings,
            tie_word_embeddings=True,
            **ids,
        )
        return GPTNeoXForCausalLM(config).float()
    if m.arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=m.hidden_size,
            n_inner=m.intermediate_size,
            n_layer=m.num_layers,
            n_head=m.num_heads,
            n_positions=m.max_position_embeddings,
            tie_word_embeddings=True,
            resid_pdrop=0.0,  # no dropout: runs stay bit-reproducible, as the Llama base (no dropout)
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        return GPT2LMHeadModel(config).float()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        num_key_value_heads=m.num_heads,
        max_position_embeddings=m.max_position_embeddings,
        tie_word_embeddings=True,  # tied: 2048x128 once
        **ids,
    )
    return LlamaForCausalLM(config).float()
