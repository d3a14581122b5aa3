"""The embedded default base model: a BPE tokenizer and a tiny Llama pretrained here, cached on disk.

Built once on first use from the pretrain half of the Python standard library (see
:mod:`govgym.efficiency.corpus`): ~2 min on 2 CPU cores for 1,200 steps x 8 x 128 tokens. The build
goes to a temporary folder and is renamed into place under a lock, so an interrupted or concurrent
build never leaves a corrupt cache. The result is a normal Hugging Face model directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    get_cosine_schedule_with_warmup,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from govgym import __version__
from govgym.efficiency import corpus
from govgym.efficiency.architectures import _new_model
from govgym.efficiency.bases import LORA_TARGETS, WORLD_BASES  # noqa: F401  (public here too)
from govgym.efficiency.cachebuild import build_once, clean_stale_tmp  # noqa: F401  (clean_stale_tmp: callers import it here)
from govgym.efficiency.config import RunConfig, default_cache_dir
from govgym.typed import ConfigError

if TYPE_CHECKING:
    import transformers

logger = logging.getLogger(__name__)

BASE_FORMAT = 1
"""Bump when the base recipe changes: it is part of every base cache key, so old caches are not reused."""
PRETRAIN = {
    "batch": 8,
    "seq_len": 128,
    "seed": 0,
    "warmup_frac": 0.05,
    "betas": [0.9, 0.95],
    "weight_decay": 0.1,
}
"""Fixed pretraining recipe: 8 x 128 = 1,024 tokens/step; ~88 ms/step for 1.1M params on 2 cores (1,200 steps: 106 s)."""
PRETRAIN_EVAL_CHUNKS = 32
"""Held-out pretrain chunks (every 64th) for the base's validation loss: 4 batches, ~0.1 s."""
SPECIAL_TOKENS = {"pad_token": "<|pad|>", "bos_token": "<|bos|>", "eos_token": "<|eos|>"}
BASE_SIZES: dict[str, dict[str, Any]] = {
    "10m": {
        "hidden_size": 384,
        "num_layers": 6,
        "num_heads": 6,
        "intermediate_size": 1024,
        "pretrain_steps": 1200,
        "pretrain_lr": 1.5e-3,
    },
    "20m": {
        "hidden_size": 512,
        "num_layers": 6,
        "num_heads": 8,
        "intermediate_size": 1408,
        "pretrain_steps": 1200,
        "pretrain_lr": 1.0e-3,
    },
}
"""Named larger bases (``model.*`` overrides), built and cached like the default (same corpus, tokenizer
recipe, vocabulary 2,048 and 8 x 128-token pretraining steps; 1.2M tokens each, as the default).
Exact parameter counts (tied embeddings): default 1,066,112; ``10m`` 11,408,256 (10.7x); ``20m``
20,322,816 (19.1x). Pretraining on 2 free CPU cores: ~0.5 s/step (10m, ~10 min) and ~0.9 s/step
(20m, ~18 min)."""

# ----------------------------------------------------------------------------- embedded base model


def short_hash(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def _base_recipe(cfg: RunConfig) -> dict[str, Any]:
    """Everything that determines the base weights except the corpus (which the manifest hash covers)."""
    m = cfg.model
    fields = (
        "hidden_size",
        "num_layers",
        "num_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "pretrain_steps",
        "pretrain_lr",
    )
    recipe = {
        "format": BASE_FORMAT,
        "char_cap": corpus.PRETRAIN_CHAR_CAP,
        **PRETRAIN,
        **{f: getattr(m, f) for f in fields},
    }
    if m.arch != "llama":  # only another family adds the key: every Llama base keeps its cache key
        recipe["arch"] = m.arch
    return recipe


def size_overrides(size: str, key: str = "size") -> dict[str, Any]:
    """The ``model.*`` overrides of a named base size (``BASE_SIZES``); ``'default'`` is the embedded default.

    Raises:
        ConfigError: ``size`` names no size (the message lists them and the closest).
    """
    from govgym.errors import did_you_mean

    if size == "default":
        return {}
    if size not in BASE_SIZES:
        names = ["default", *BASE_SIZES]
        raise ConfigError(
            f"{key}: unknown base model size {size!r}.{did_you_mean(str(size), names)} Known sizes: "
            f"{', '.join(names)} (efficiency.basemodel.BASE_SIZES)."
        )
    return dict(BASE_SIZES[size])


def _is_complete(path: Path) -> bool:
    return (path / "govgym_base.json").is_file() and (path / "config.json").is_file()


def _train_tokenizer(texts: list[str], vocab_size: int, max_len: int) -> transformers.PreTrainedTokenizerFast:
    """Byte-level BPE on the pretrain texts (~0.5 s for 4 MB); deterministic for a fixed input."""

    specials = [SPECIAL_TOKENS["pad_token"], SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos = specials[1]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_len, **SPECIAL_TOKENS)


def _pretrain_chunks(texts: list[str], tokenizer: Any, seq_len: int) -> tuple[Any, Any]:
    """Pack ``bos text eos`` of every file into one stream; cut it into train and held-out chunks."""

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        stream.extend([bos, *enc.ids, eos])
    n = len(stream) // seq_len
    chunks = torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)
    held = torch.zeros(n, dtype=torch.bool)
    held[::64][:PRETRAIN_EVAL_CHUNKS] = True  # every 64th chunk, spread over the stream
    return chunks[~held], chunks[held]


def _mean_loss(model: Any, chunks: Any, batch: int) -> float:

    model.eval()
    with torch.no_grad():
        losses = [
            model(input_ids=chunks[i : i + batch], labels=chunks[i : i + batch]).loss.item()
            for i in range(0, len(chunks), batch)
        ]
    model.train()
    return float(np.mean(losses))


def _build_base(cfg: RunConfig, manifest: dict[str, Any], out: Path, progress: bool) -> dict[str, Any]:
    """Train the tokenizer, pretrain the tiny Llama and save both into ``out``; returns the summary."""

    m, t0 = cfg.model, time.time()
    texts = corpus.pretrain_texts(manifest)
    tokenizer = _train_tokenizer(texts, m.vocab_size, m.max_position_embeddings)
    seq_len = min(PRETRAIN["seq_len"], m.max_position_embeddings)
    train_chunks, held_chunks = _pretrain_chunks(texts, tokenizer, seq_len)
    torch.manual_seed(PRETRAIN["seed"])
    model = _new_model(m, tokenizer)
    init_eval = _mean_loss(model, held_chunks, PRETRAIN["batch"])
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=m.pretrain_lr,
        betas=tuple(PRETRAIN["betas"]),
        weight_decay=PRETRAIN["weight_decay"],
    )
    sched = get_cosine_schedule_with_warmup(
        opt, max(1, int(PRETRAIN["warmup_frac"] * m.pretrain_steps)), m.pretrain_steps
    )
    gen = torch.Generator().manual_seed(PRETRAIN["seed"])
    order, pos, losses = torch.randperm(len(train_chunks), generator=gen), 0, []
    bar = tqdm(range(m.pretrain_steps), desc="govgym: pretraining base model", disable=not progress)
    for step in bar:
        if pos + PRETRAIN["batch"] > len(order):  # next epoch: a fresh fixed-seed permutation
            order, pos = torch.randperm(len(train_chunks), generator=gen), 0
        batch = train_chunks[order[pos : pos + PRETRAIN["batch"]]]
        pos += PRETRAIN["batch"]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    tail = max(1, min(50, len(losses) // 10))  # mean of the last 10% (<= 50) steps: less noisy than one batch
    summary = {
        "format": BASE_FORMAT,
        "govgym_version": __version__,
        "recipe": _base_recipe(cfg),
        "manifest_hash": manifest["hash"],
        "n_params": sum(p.numel() for p in model.parameters()),
        "pretrain_tokens": len(train_chunks) * seq_len,
        "tokens_seen": m.pretrain_steps * PRETRAIN["batch"] * seq_len,
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-tail:])),
        "init_eval_loss": init_eval,
        "eval_loss": _mean_loss(model, held_chunks, PRETRAIN["batch"]),
        "loss_curve": losses[:: max(1, len(losses) // 50)],
        "seconds": round(time.time() - t0, 1),
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
    }
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    corpus.save_manifest(manifest, out / "manifest.json")
    (out / "govgym_base.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _version(name: str) -> str:

    return version(name)


def base_manifest_diff(base_dir: Path, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Diff between the manifest saved with a base model and this machine's standard library.

    Args:
        base_dir: A directory built by :func:`build_base_model`.
        current: This machine's manifest (computed when omitted).

    Returns:
        :func:`govgym.efficiency.corpus.manifest_diff` output (``missing``/``changed``/``added``/``match``).
    """
    saved = corpus.load_manifest(Path(base_dir) / "manifest.json")
    return corpus.manifest_diff(saved, current or corpus.current_manifest())


def ensure_base(cfg: RunConfig, progress: bool) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Find or build the base; returns (dir, its saved manifest, diff against this machine)."""
    current = corpus.current_manifest()
    # the same recipe built from a different stdlib (another machine, a Python update) is reused, and the
    # difference reported below
    final = build_once(
        default_cache_dir(cfg) / "base",
        short_hash(_base_recipe(cfg)),
        current["hash"],
        _is_complete,
        lambda tmp: _build_base(cfg, current, tmp, progress),
        lambda path: logger.info(
            "building the embedded base model in %s (first use; ~2 min on 2 cores)", path
        ),
    )
    saved = corpus.load_manifest(final / "manifest.json")
    diff = corpus.manifest_diff(saved, current)
    if not diff["match"]:
        logger.warning(
            "%s. Using the cached base model %s built from the recorded files (delete it to "
            "rebuild from this machine's library).",
            corpus.diff_summary(diff),
            final,
        )
    return final, saved, diff


def build_base_model(cfg: RunConfig, progress: bool = True) -> Path:
    """Build (first use) or reuse the cached embedded base model.

    Args:
        cfg: The run config; ``cfg.model`` sets the architecture and pretraining, ``cfg.cache_dir``
            the cache. With a local ``model.source`` that directory is returned unchanged.
        progress: Show a tqdm bar while pretraining.

    Returns:
        A Hugging Face model directory (weights, tokenizer, ``manifest.json``, ``govgym_base.json``)
        that ``AutoModelForCausalLM.from_pretrained`` loads. Same config and stdlib -> same weights.
    """
    if cfg.model.source != "default":
        return Path(cfg.model.source).expanduser()
    with progress_bars(progress):
        return ensure_base(cfg, progress)[0]


def _causal_lm_check(path: Path) -> None:
    """Refuse model directories that are not decoder-only causal LMs, before loading weights."""

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception:
        return  # from_pretrained below reports a broken config.json with the fix
    kind = getattr(config, "model_type", "?")
    archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    if getattr(config, "is_encoder_decoder", False) or kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"model.source: {str(path)!r} holds a {kind!r} model ({archs}), which is not a decoder-only causal "
            "language model. govgym fine-tunes causal LMs (Llama, GPT-2, Qwen, Mistral, ...); point model.source "
            "at one, or use 'default'."
        )


def _sees_future(model: Any) -> bool:
    """True when changing a later token changes the logits at an earlier position (not a causal LM).

    Two forwards of 8 tokens: what separates a decoder from an encoder (e.g. BERT loaded through its
    LM head with ``is_decoder=False``), whatever the config says.
    """

    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.arange(1, 9).remainder(vocab).unsqueeze(0)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % vocab
    was_training = model.training
    model.eval()
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, model(input_ids=changed).logits
    model.train(was_training)
    return not torch.allclose(a[0, :-1], b[0, :-1], atol=1e-5)


def load_model(path: Path, cached: bool = False) -> tuple[Any, Any]:
    """A fresh fp32 model and its tokenizer from a local directory; library errors -> ConfigError.

    Args:
        path: A Hugging Face model directory.
        cached: ``path`` is govgym's own cache of the embedded base (so the fix is to delete it).
    """

    if cached:
        fix = (
            f"This is govgym's cached base model, damaged (an interrupted copy or disk error?): delete the folder "
            f"{str(path)!r} and it is rebuilt on next use."
        )
    else:
        fix = (
            "Point model.source at a directory written by model.save_pretrained(dir) and "
            "tokenizer.save_pretrained(dir), or use 'default'."
        )
        _causal_lm_check(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except Exception as err:  # any library failure is a config problem from the user's point of view
        raise ConfigError(
            f"model.source: could not load a causal LM from {str(path)!r} "
            f"({type(err).__name__}: {str(err)[:300]}). {fix}"
        ) from err
    if not cached and _sees_future(model):
        raise ConfigError(
            f"model.source: {str(path)!r} loads as {type(model).__name__}, whose predictions at a position change "
            "when a later token changes: it attends to future tokens (an encoder such as BERT), so it is not a "
            "causal LM and training it to predict the next token would be meaningless. Point model.source at a "
            "decoder-only causal LM (Llama, GPT-2, Qwen, ...), or use 'default'."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise ConfigError(
            f"model.source: could not load a tokenizer from {str(path)!r} "
            f"({type(err).__name__}: {str(err)[:300]}). {fix}"
        ) from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"model.source: the tokenizer in {str(path)!r} has neither a pad nor an eos token; "
                "add one with tokenizer.add_special_tokens({'pad_token': ...}) and save it."
            )
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out of the loss anyway
    tokenizer.padding_side = "right"
    return model.to("cpu").train(), tokenizer  # from_pretrained hands back eval mode


# ----------------------------------------------------------------------------- fine-tuning data


@contextlib.contextmanager
def progress_bars(progress: bool) -> Iterator[None]:
    """Silence datasets' and transformers' own bars (maps, weight loading) when progress=False.

    Both libraries only offer a process-wide switch, so the previous setting is restored on exit.
    """

    switches = [
        (datasets.is_progress_bar_enabled, datasets.disable_progress_bars, datasets.enable_progress_bars),
        (hf_logging.is_progress_bar_enabled, hf_logging.disable_progress_bar, hf_logging.enable_progress_bar),
    ]
    turned_off = []
    for is_on, off, on in switches:
        if not progress and is_on():
            off()
            turned_off.append(on)
    try:
        yield
    finally:
        for on in turned_off:
            on()
