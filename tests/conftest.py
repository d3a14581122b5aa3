"""Shared fixtures: tiny *real* models and data (never mocks of the training run)."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)


def tiny_llama(
    vocab: int = 256, hidden: int = 32, layers: int = 2, heads: int = 2, inter: int = 88, seed: int = 0
):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg)


def pattern_data(n: int, seq: int, vocab: int, noise_rate: float = 0.0, seed: int = 0):
    """Learnable sequences (arithmetic progressions mod vocab) with some uniformly random 'noise' rows."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    start = rng.integers(0, vocab, n)[:, None]
    stride = rng.integers(1, 4, n)[:, None]
    ids = (start + stride * np.arange(seq)[None]) % vocab
    noise = np.zeros(n, dtype=np.int64)
    bad = rng.random(n) < noise_rate
    ids[bad] = rng.integers(0, vocab, (int(bad.sum()), seq))
    noise[bad] = 1
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist(), "noise": noise.tolist()})


def tiny_workload(noise_rate: float = 0.0, n: int = 128, seq: int = 32, seed: int = 0, **model_kw):
    vocab = model_kw.pop("vocab", 256)
    return SimpleNamespace(
        model=tiny_llama(vocab=vocab, seed=seed, **model_kw),
        tokenizer=None,
        train=pattern_data(n, seq, vocab, noise_rate, seed),
        eval=pattern_data(16, seq, vocab, 0.0, seed + 1),
        info={"source": "tests.tiny_workload"},
    )


TINY_EMBEDDED: dict[str, Any] = {
    "model": {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 512,
        "pretrain_steps": 20,
    },
    "data": {"max_examples": 64, "eval_examples": 8, "seq_len": 64, "noise_rate": 0.3},
}
"""A tiny embedded default (the stdlib corpus, a 1-layer base pretrained for 20 steps): built in seconds."""


def embedded_cfg(cache: Path, **over: Any):
    """A RunConfig of ``TINY_EMBEDDED`` cached under ``cache``, with nested ``over`` merged in."""
    from govgym.efficiency.config import RunConfig
    from govgym.typed import deep_merge, from_dict

    return from_dict(RunConfig, deep_merge(deep_merge(TINY_EMBEDDED, {"cache_dir": str(cache)}), over))


def tiny_cfg(**over):
    from govgym.efficiency.config import RunConfig
    from govgym.typed import deep_merge, from_dict, parse_overrides

    base = {
        "data": {"seq_len": 32, "max_examples": 128, "eval_examples": 16},
        "optim": {"batch_size": 8, "total_steps": 60, "warmup_steps": 2},
    }
    return from_dict(
        RunConfig, deep_merge(base, parse_overrides([f"{k.replace('__', '.')}={v}" for k, v in over.items()]))
    )


@pytest.fixture
def make_run():
    from govgym.efficiency.run import FineTuneRun

    def _make(noise_rate: float = 0.0, **over):
        return FineTuneRun(tiny_cfg(**over), workload=tiny_workload(noise_rate))

    return _make


TINY_INSTANCES = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One GOVGYM_CACHE per test module: the tiny instances' workload is built once (~20 s on 2 busy cores)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVGYM_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory, module_cache):
    """A MaskablePPO agent from a very short real training (8 env steps on the tiny instances)."""
    from govgym.agents.train import TrainConfig, train

    out = tmp_path_factory.mktemp("agent") / "agent"
    cfg = TrainConfig(
        algo="maskable_ppo",
        timesteps=8,
        n_envs=1,
        n_steps=8,
        checkpoint_every=8,
        eval_every=0,
        memo="",
        pretrain=False,
        instances=TINY_INSTANCES,
    )
    train(cfg, out, progress=False)
    return out
