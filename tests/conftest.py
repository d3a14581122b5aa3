"""Shared fixtures: tiny *real* models and data (never mocks of the training run)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

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


def run_cli(args: list[str], env: dict[str, str] | None = None, check: bool = True) -> SimpleNamespace:
    """``govgym ARGS`` run in this process: what a test of a subcommand's output and exit status needs.

    A subprocess costs ~9 s on 2 busy cores, nearly all of it a new Python importing torch; in process the
    same ``govgym.cli.main`` runs with ``env`` (e.g. GOVGYM_CACHE) patched into ``os.environ`` and
    stdout/stderr captured. An exception ``main`` does not turn into exit status 2 propagates and fails
    the test (a subprocess would have printed a traceback). ``test_cli.py`` keeps one real subprocess of
    the installed ``govgym`` command, so the entry point and its exit status stay tested.

    Returns:
        ``returncode``, ``stdout`` and ``stderr``, as ``subprocess.run(..., capture_output=True)`` gives.
    """
    from govgym.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env or {}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    r = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


TINY_INSTANCES = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One GOVGYM_CACHE folder for the whole session (the ``envcache`` that test_env.py and others use).

    A tiny base model and its tokenized data take ~15-20 s to build on 2 busy cores and ~1 s to load;
    built once per session instead of once per module (was 8 separate caches, 1 per test in test_memo).
    Entries are keyed by their config (``base/<key>``, ``data/<key>``), so modules with different tiny
    models share the folder safely; tests that damage a cache work on a copy (test_bad_inputs' F2-F4).
    """
    root = tmp_path_factory.getbasetemp() / "envcache"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def module_cache(shared_cache):
    """GOVGYM_CACHE set to the session's shared cache for a test module (the tiny instances' workload)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVGYM_CACHE", str(shared_cache))
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
