"""The encoder of ``govgym outside``: a tiny BERT pretrained here by masked LM, cached like the bases.

Nothing in govgym's world is an encoder: every base it trains governors on is a decoder-only causal LM.
This one is a ``transformers`` ``BertForMaskedLM`` (bidirectional attention, LayerNorm, GELU, learned
positions, dropout 0.1 as in BERT) with its own byte-level BPE (specials ``<|pad|>``, ``<|cls|>``,
``<|sep|>``, ``<|mask|>``; every sequence is ``cls ... sep``), pretrained by masked LM (15% of the
tokens: 80% masked, 10% random, 10% kept, as BERT) on the same pretrain half of the standard library
as the causal bases, so the functions it is later fine-tuned to classify (the finetune half) were never
seen. Built offline; never a hub download.

Cached exactly as ``efficiency.basemodel`` caches the bases: under ``<cache>/encoder/<recipe
hash>-<stdlib manifest hash>``, built in a ``.tmp-<name>-<pid>-<uid>`` folder and renamed into place
under a file lock (an interrupted or concurrent build never leaves a half folder; a killed build's
temp folder is removed by the next one). ``govgym_encoder.json`` records the recipe; loading checks it.

Measured (2 shared cores, nice 15, load ~6): the default recipe (128 wide, 2 layers, 562,688
parameters) pretrains 300 steps of 8 x 128 tokens in 56 s; held-out MLM loss 7.65 -> 6.31. That is a
weak encoder: fine-tuned on the package task (LR 2e-3, 250 steps of 16, 64 tokens) it reaches eval
loss 1.91 where the same BERT from random initialisation reaches 1.34 (one seed each). A stronger
pretraining (more steps) is the obvious next recipe; it changes the cache key, nothing else.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from govgym import __version__
from govgym.errors import ConfigError
from govgym.typed import check_range

ENCODER_FORMAT = 1
"""Bump when the recipe changes: it is part of the cache key, so old encoders are not reused."""
SPECIALS = ["<|pad|>", "<|cls|>", "<|sep|>", "<|mask|>"]
"""Ids 0-3 in this order (the BPE trainer puts special tokens first)."""
PRETRAIN_FIXED = {"seed": 0, "warmup_frac": 0.05, "betas": [0.9, 0.98], "weight_decay": 0.01, "dropout": 0.1}
"""BERT's optimizer settings (β2 0.98 as RoBERTa, for short runs), fixed: part of the cache key."""
EVAL_CHUNKS = 32
"""Held-out pretrain chunks (every 64th) for the encoder's MLM loss: 4 batches of 8."""
META = "govgym_encoder.json"


@dataclass
class EncoderConfig:
    """The encoder's shape and its masked-LM pretraining (every field is part of the cache key but ``cache_dir``)."""

    hidden_size: int = 128
    """Width (128 x 2 layers, vocabulary 2,048: 562,688 parameters)."""
    num_layers: int = 2
    """Transformer layers."""
    num_heads: int = 4
    """Attention heads (must divide hidden_size)."""
    intermediate_size: int = 256
    """MLP width (BERT's 4x would be 512: 2x keeps the encoder under 0.6M parameters)."""
    vocab_size: int = 2048
    """Byte-level BPE vocabulary, trained on the pretrain half (>= 260: 256 bytes + 4 specials)."""
    max_len: int = 128
    """Positions: the pretraining chunk length and the longest fine-tuning input."""
    pretrain_steps: int = 300
    """Masked-LM steps of pretrain_batch x max_len tokens (300 x 8 x 128 = 307k tokens, ~1.5 min on 2 cores)."""
    pretrain_batch: int = 8
    """Sequences per pretraining step."""
    pretrain_lr: float = 1e-3
    """Peak LR (5% warmup, cosine to 0)."""
    mask_prob: float = 0.15
    """Share of the tokens the MLM predicts (BERT's 15%)."""
    cache_dir: str = ""
    """Cache root ('' = $GOVGYM_CACHE or ~/.cache/govgym, as the bases)."""

    def __post_init__(self) -> None:
        check_range("hidden_size", self.hidden_size, 8, 4096)
        check_range("num_layers", self.num_layers, 1, 48)
        check_range("num_heads", self.num_heads, 1, 64)
        check_range("intermediate_size", self.intermediate_size, 8, 16384)
        check_range("vocab_size", self.vocab_size, 260, 65536)
        check_range("max_len", self.max_len, 8, 4096)
        check_range("pretrain_steps", self.pretrain_steps, 1, 1_000_000)
        check_range("pretrain_batch", self.pretrain_batch, 1, 4096)
        check_range("pretrain_lr", self.pretrain_lr, 0.0, 1.0, lo_open=True)
        check_range("mask_prob", self.mask_prob, 0.0, 0.5, lo_open=True)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"encoder.num_heads: {self.num_heads} does not divide encoder.hidden_size {self.hidden_size}; "
                f"pick a divisor (e.g. num_heads={_divisor(self.hidden_size, self.num_heads)})."
            )


def _divisor(n: int, near: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - near))


def recipe(cfg: EncoderConfig) -> dict[str, Any]:
    """Everything that determines the encoder's weights except the corpus (its manifest hash is in the folder name)."""
    from govgym.efficiency import corpus

    shape = {k: v for k, v in asdict(cfg).items() if k != "cache_dir"}
    return {"format": ENCODER_FORMAT, "char_cap": corpus.PRETRAIN_CHAR_CAP, **PRETRAIN_FIXED, **shape}


def cache_root(cfg: EncoderConfig) -> Path:
    """``<cache>/encoder``: ``cache_dir``, else $GOVGYM_CACHE, else ~/.cache/govgym (as ``default_cache_dir``)."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser() / "encoder"
    return Path(os.environ.get("GOVGYM_CACHE", Path.home() / ".cache" / "govgym")).expanduser() / "encoder"


# ----------------------------------------------------------------------------- build


def _train_tokenizer(texts: list[str], vocab_size: int, max_len: int) -> Any:
    """Byte-level BPE with BERT's frame (``cls text sep``); the causal bases' recipe but for the specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    pad, cls, sep, mask = SPECIALS
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B {sep}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=max_len,
        pad_token=pad,
        cls_token=cls,
        sep_token=sep,
        mask_token=mask,
    )


def _chunks(texts: list[str], tokenizer: Any, max_len: int) -> tuple[Any, Any]:
    """Every file's tokens, joined by ``sep``, cut into ``cls <max_len - 2 tokens> sep`` chunks; (train, held out)."""
    import torch

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    stream: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        stream.extend([*enc.ids, sep])
    body = max_len - 2
    n = len(stream) // body
    rows = torch.tensor(stream[: n * body], dtype=torch.long).view(n, body)
    chunks = torch.cat([torch.full((n, 1), cls), rows, torch.full((n, 1), sep)], dim=1)
    held = torch.zeros(n, dtype=torch.bool)
    held[::64][:EVAL_CHUNKS] = True  # every 64th chunk, spread over the stream
    return chunks[~held], chunks[held]


def mask_tokens(ids: Any, prob: float, mask_id: int, vocab: int, gen: Any) -> tuple[Any, Any]:
    """BERT's masking of a batch: (inputs, labels); labels are -100 except at the ``prob`` share picked.

    Of the picked tokens 80% become ``mask_id``, 10% a random non-special token, 10% stay; specials
    (ids < 4) are never picked. ``gen`` (a ``torch.Generator``) makes it reproducible.
    """
    import torch

    n_special = len(SPECIALS)
    pick = (torch.rand(ids.shape, generator=gen) < prob) & (ids >= n_special)
    labels = torch.where(pick, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=gen)
    inputs = torch.where(pick & (r < 0.8), torch.full_like(ids, mask_id), ids)
    rand = torch.randint(n_special, vocab, ids.shape, generator=gen)
    inputs = torch.where(pick & (r >= 0.8) & (r < 0.9), rand, inputs)
    return inputs, labels


def _mlm_loss(model: Any, chunks: Any, cfg: EncoderConfig, mask_id: int, vocab: int) -> float:
    """Mean MLM loss on the held-out chunks under one fixed masking (the same before and after pretraining)."""
    import torch

    gen = torch.Generator().manual_seed(1)
    model.eval()
    losses = []
    with torch.no_grad():
        for i in range(0, len(chunks), 8):
            x, y = mask_tokens(chunks[i : i + 8], cfg.mask_prob, mask_id, vocab, gen)
            losses.append(model(input_ids=x, labels=y).loss.item())
    model.train()
    return float(sum(losses) / len(losses))


def _build(cfg: EncoderConfig, manifest: dict[str, Any], out: Path, progress: bool) -> dict[str, Any]:
    """Train the tokenizer, pretrain the encoder by MLM, save both into ``out``; returns the summary."""
    import torch
    from tqdm.auto import tqdm
    from transformers import BertConfig, BertForMaskedLM, get_cosine_schedule_with_warmup

    from govgym.efficiency import corpus

    t0 = time.time()
    texts = corpus.pretrain_texts(manifest)
    tokenizer = _train_tokenizer(texts, cfg.vocab_size, cfg.max_len)
    train, held = _chunks(texts, tokenizer, cfg.max_len)
    vocab, mask_id = len(tokenizer), tokenizer.mask_token_id
    torch.manual_seed(PRETRAIN_FIXED["seed"])
    drop = PRETRAIN_FIXED["dropout"]
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=vocab,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_len,
            type_vocab_size=1,  # one segment: the task is single sequences
            hidden_dropout_prob=drop,
            attention_probs_dropout_prob=drop,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).float()
    init_eval = _mlm_loss(model, held, cfg, mask_id, vocab)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.pretrain_lr,
        betas=tuple(PRETRAIN_FIXED["betas"]),
        weight_decay=PRETRAIN_FIXED["weight_decay"],
    )
    sched = get_cosine_schedule_with_warmup(
        opt, max(1, int(PRETRAIN_FIXED["warmup_frac"] * cfg.pretrain_steps)), cfg.pretrain_steps
    )
    gen = torch.Generator().manual_seed(PRETRAIN_FIXED["seed"])
    order, pos, losses = torch.randperm(len(train), generator=gen), 0, []
    bar = tqdm(range(cfg.pretrain_steps), desc="govgym: pretraining the encoder (MLM)", disable=not progress)
    for step in bar:
        if pos + cfg.pretrain_batch > len(order):  # next epoch: a fresh fixed-seed permutation
            order, pos = torch.randperm(len(train), generator=gen), 0
        x, y = mask_tokens(train[order[pos : pos + cfg.pretrain_batch]], cfg.mask_prob, mask_id, vocab, gen)
        pos += cfg.pretrain_batch
        loss = model(input_ids=x, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    tail = max(1, min(50, len(losses) // 10))
    summary = {
        "format": ENCODER_FORMAT,
        "govgym_version": __version__,
        "recipe": recipe(cfg),
        "manifest_hash": manifest["hash"],
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "tokens_seen": cfg.pretrain_steps * cfg.pretrain_batch * cfg.max_len,
        "first_loss": losses[0],
        "final_loss": float(sum(losses[-tail:]) / tail),
        "init_eval_mlm_loss": init_eval,
        "eval_mlm_loss": _mlm_loss(model, held, cfg, mask_id, vocab),
        "seconds": round(time.time() - t0, 1),
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
    }
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    corpus.save_manifest(manifest, out / "manifest.json")
    (out / META).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _is_complete(path: Path) -> bool:
    return (path / META).is_file() and (path / "config.json").is_file()


def ensure_encoder(cfg: EncoderConfig, progress: bool = True) -> Path:
    """Find or build the encoder of ``cfg`` (the folder of a Hugging Face BERT and its tokenizer).

    Same recipe and standard library -> the same folder and weights. A folder built from another
    stdlib with the same recipe is reused (as the bases are), since the cache is what makes results
    reproducible across a Python update.
    """
    from govgym.efficiency import corpus
    from govgym.efficiency.basemodel import progress_bars, short_hash
    from govgym.efficiency.cachebuild import build_once

    current = corpus.current_manifest()

    def build(tmp: Path) -> None:
        with progress_bars(progress):
            _build(cfg, current, tmp, progress)

    final = build_once(cache_root(cfg), short_hash(recipe(cfg)), current["hash"], _is_complete, build)
    check_encoder(final, cfg)
    return final


def check_encoder(path: Path, cfg: EncoderConfig) -> dict[str, Any]:
    """The folder's ``govgym_encoder.json``, checked against ``cfg``'s recipe; a damaged one is refused."""
    fix = f"delete the folder {str(path)!r} and it is rebuilt on next use"
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"encoder: {path / META} does not read as JSON ({err}); {fix}.") from None
    if not isinstance(meta, dict) or meta.get("recipe") != recipe(cfg):
        raise ConfigError(
            f"encoder: {path} holds another recipe than the one asked for ({META} was edited or the cache "
            f"was copied over); {fix}."
        )
    return meta


def load_classifier(path: Path, num_labels: int, seed: int) -> tuple[Any, Any]:
    """(BertForSequenceClassification from the pretrained encoder, tokenizer); the new head seeded by ``seed``.

    The classification head (pooler + linear) is the only fresh part; its initialisation is drawn
    right after ``set_seed(seed)``, so a seed fixes it, and two runs with one seed start identical.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification, set_seed
    from transformers.utils import logging as hf_logging

    set_seed(seed)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were newly initialized": the head, as intended
    try:
        model = BertForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:
        raise ConfigError(
            f"encoder: could not load the cached encoder in {str(path)!r} ({type(err).__name__}: "
            f"{str(err)[:300]}); delete that folder and it is rebuilt on next use."
        ) from err
    finally:
        hf_logging.set_verbosity(level)
    return model.float().train(), tokenizer


__all__ = ["EncoderConfig", "check_encoder", "ensure_encoder", "load_classifier", "mask_tokens", "recipe"]
