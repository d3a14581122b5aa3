"""The workload of a run: base model, tokenizer and fine-tuning datasets, fully offline.

Two sources each for model and data, chosen in :class:`~govgym.efficiency.config.RunConfig`:

* ``model.source='default'``: a tiny Llama (~1.1M params by default) that govgym pretrains itself on
  the pretrain half of the Python standard library (see :mod:`govgym.efficiency.corpus`), with a
  byte-level BPE trained on the same half. Built once on first use (~2 min on 2 CPU cores for
  1,200 steps x 8 x 128 tokens), cached under ``default_cache_dir(cfg)/base/<key>`` as a normal
  Hugging Face model directory. A directory path instead loads that local model.
* ``data.source='default'``: a task from the *other* half of the library, a different distribution
  from the raw code the base saw: ``data.task='doc2code'`` (docstring summary -> function) or
  ``'code2doc'`` (function -> summary). A path instead loads a local dataset (json/jsonl/txt/
  parquet/arrow/csv files, a folder of them, or a ``save_to_disk`` folder), as plain text
  (``data.text_field``) or as prompt -> response pairs (``data.prompt_field`` + ``data.response_field``).

Every example is exactly ``data.seq_len`` tokens: ``bos`` + text (+ ``eos`` when it fits), truncated,
right-padded. By default ``labels`` equal ``input_ids`` with -100 on padding only: the loss covers the
prompt as well as the response. With ``data.response_only`` (SFT as TRL's SFTTrainer does it for
prompt-completion data) prompt and response are tokenized separately and concatenated, so the
boundary is exact, and the labels are -100 on the prompt too: train and eval loss are the response's.
Noise (corrupt / shuffle / duplicate) replaces a ``data.noise_rate`` fraction of the train split:
corrupt rewrites labelled tokens, shuffle pairs a prompt with another row's response (plain text: its
words shuffled), duplicate copies a clean row. The eval split is always clean. Nothing here touches a
hub: every load is ``local_files_only``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
from datasets.utils import logging as ds_logging
from transformers.utils import logging as hf_logging

from govgym.efficiency import corpus, tasks
from govgym.efficiency.basemodel import (  # noqa: F401  (build_base_model, base_manifest_diff: public API here too)
    base_manifest_diff,
    build_base_model,
    clean_stale_tmp,
    ensure_base,
    load_model,
    progress_bars,
    short_hash,
)
from govgym.efficiency.config import NOISE_KINDS, RunConfig, default_cache_dir
from govgym.efficiency.localdata import (  # noqa: F401  (moved here verbatim; re-exported)
    DATA_EXTENSIONS,
    _check_text_file,
    _load_local_dataset,
    _pairs,
    _root_cause,
)
from govgym.typed import ConfigError

if TYPE_CHECKING:
    import datasets
    import transformers

logger = logging.getLogger(__name__)

DATA_FORMAT = 2
"""Bump when the default dataset recipe changes (part of the tokenized-data cache key).
2: tasks (doc2code / code2doc) and response-only labels."""
PROMPT_TAIL = 8
"""Tokens kept from a prompt's end when a prompt -> response example must cut its prompt to fit
``seq_len`` (the cue before the response, e.g. ``"\n<doc>"``); the prompt's head fills the rest."""
NOISE_CODES = {"clean": 0, **{kind: i + 1 for i, kind in enumerate(NOISE_KINDS)}}
"""Value of the ``noise`` column: 0 clean, 1 corrupt, 2 shuffle, 3 duplicate."""


@dataclass
class Workload:
    """Everything a fine-tuning run needs; built by :func:`load_workload`."""

    model: transformers.PreTrainedModel
    """A fresh fp32 model on CPU, ready to fine-tune (the caller moves it to its device)."""
    tokenizer: transformers.PreTrainedTokenizerBase
    """The model's tokenizer (pad token always set)."""
    train: datasets.Dataset
    """Columns ``input_ids`` (len == seq_len), ``labels`` (-100 = ignore) and ``noise`` (NOISE_CODES)."""
    eval: datasets.Dataset
    """Same columns; always clean (noise == 0) and disjoint from train."""
    info: dict[str, Any]
    """JSON-able provenance: sources, base dir, sizes, noise counts, manifest hash and mismatch."""


def hash_order(keys: list[str], seed: int) -> list[int]:
    """Row positions ordered by sha256(seed:key): the split's order (eval first, then train, then unused)."""
    digest = [hashlib.sha256(f"{seed}:{k}".encode()).digest() for k in keys]
    return sorted(range(len(keys)), key=digest.__getitem__)


def _split(texts: datasets.Dataset, cfg: RunConfig) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Order rows by sha256(seed:key): eval = first eval_examples, train = the next max_examples.

    A hash order (not a permutation of positions) keeps every example's side fixed when others come
    or go, e.g. when some stdlib files differ from the recorded manifest.
    """
    seed, n_eval = cfg.data.seed, cfg.data.eval_examples
    if len(texts) <= n_eval:
        raise ConfigError(
            f"data.eval_examples: {n_eval} leaves no training examples; the data has only "
            f"{len(texts)} non-empty examples. Lower data.eval_examples or add data."
        )
    order = hash_order(texts["key"], seed)
    n_train = min(cfg.data.max_examples, len(texts) - n_eval)
    if n_train < cfg.data.max_examples:
        logger.warning(
            "data.max_examples=%d but only %d examples remain after the %d eval examples; training on %d.",
            cfg.data.max_examples,
            n_train,
            n_eval,
            n_train,
        )
    return texts.select(order[n_eval : n_eval + n_train]), texts.select(order[:n_eval])


def _noise_plan(n_train: int, cfg: RunConfig) -> dict[int, tuple[str, int]]:
    """{train row: (kind, seed)} for round(noise_rate * n_train) rows, kinds drawn uniformly."""
    rng = np.random.default_rng(cfg.data.seed)
    n_noise = int(round(cfg.data.noise_rate * n_train))
    if n_noise == 0 or not cfg.data.noise_kinds:
        return {}
    rows = rng.choice(n_train, size=n_noise, replace=False)
    kinds = rng.integers(len(cfg.data.noise_kinds), size=n_noise)
    seeds = rng.integers(2**63 - 1, size=n_noise)  # one private stream per row: order-independent
    return {
        int(r): (cfg.data.noise_kinds[int(k)], int(s)) for r, k, s in zip(rows, kinds, seeds, strict=True)
    }


def _shuffle_noise(train: datasets.Dataset, plan: dict[int, tuple[str, int]]) -> datasets.Dataset:
    """Prompt -> response rows get another row's response (a wrong mapping, as label noise is);
    plain-text rows get their words shuffled."""
    paired = "response" in train.column_names
    responses = train["response"] if paired else []

    def fn(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        out, out_resp = [], []
        for n, i in enumerate(idx):
            kind, seed = plan.get(i, ("clean", 0))
            text = batch["text"][n]
            resp = batch["response"][n] if paired else None
            if kind == "shuffle":
                rng = np.random.default_rng(seed)
                if paired:
                    j = int(rng.integers(len(responses) - 1))
                    resp = responses[j + (j >= i)]  # any row but i
                    text = batch["prompt"][n] + resp  # doc2code: == format_example(doc_i, code_j)
                else:
                    words = text.split()
                    for _ in range(10):  # a 4-word text keeps its order 1 time in 24: redraw
                        shuffled = " ".join(words[k] for k in rng.permutation(len(words)))
                        if shuffled != " ".join(words):
                            break
                    text = shuffled
            out.append(text)
            out_resp.append(resp)
        return {"text": out, "response": out_resp} if paired else {"text": out}

    return train.map(fn, batched=True, with_indices=True)


def _tokenize(
    ds: datasets.Dataset, tokenizer: Any, seq_len: int, response_only: bool = False
) -> datasets.Dataset:
    """Text -> exactly seq_len ids (bos + text + eos-if-it-fits, right-padded); -100 labels on padding.

    With ``response_only`` the rows are prompt -> response pairs (see :func:`_tokenize_pairs`).
    """
    if response_only:
        return _tokenize_pairs(ds, tokenizer, seq_len)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id

    def fn(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(batch["text"], truncation=True, max_length=seq_len)["input_ids"]
        ids_out, labels_out = [], []
        for ids in enc:
            if eos is not None and len(ids) < seq_len and (not ids or ids[-1] != eos):
                ids = [*ids, eos]  # a truncated example gets no eos: it did not end there
            fill = seq_len - len(ids)
            ids_out.append(ids + [pad] * fill)
            labels_out.append(ids + [-100] * fill)  # masked by position, so pad == eos is safe
        return {"input_ids": ids_out, "labels": labels_out}

    return ds.map(fn, batched=True, remove_columns=ds.column_names)


def _special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text (e.g. ``[bos]``; ``[]`` for GPT-2-like tokenizers)."""
    full = tokenizer("a b")["input_ids"]
    plain = tokenizer("a b", add_special_tokens=False)["input_ids"]
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k]
    return []


def _tokenize_pairs(ds: datasets.Dataset, tokenizer: Any, seq_len: int) -> datasets.Dataset:
    """Prompt -> response rows -> exactly seq_len ids: bos + prompt + response + eos-if-it-fits, padded.

    Prompt and response are tokenized separately and concatenated, so the boundary is exact; labels
    are -100 on the prompt (and its bos) and on padding, the response's ids (and its eos) elsewhere, as
    TRL's SFTTrainer builds its completion mask. A pair longer than seq_len first cuts its prompt, to
    no less than half of seq_len (keeping the prompt's head and its last :data:`PROMPT_TAIL` tokens,
    the cue before the response), then truncates the response, so every row has response tokens.
    """
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    prefix = _special_prefix(tokenizer)

    def fn(batch: dict[str, list]) -> dict[str, list]:
        prompts = tokenizer(batch["prompt"], add_special_tokens=False, verbose=False)["input_ids"]
        responses = tokenizer(batch["response"], add_special_tokens=False, verbose=False)[
            "input_ids"
        ]  # cut below
        ids_out, labels_out = [], []
        for p, r in zip(prompts, responses, strict=True):
            p = prefix + p
            if len(p) + len(r) > seq_len:
                keep = min(len(p), max(seq_len - len(r), seq_len // 2))
                if keep < len(p):
                    tail = min(PROMPT_TAIL, max(keep - len(prefix), 0))
                    p = p[: keep - tail] + p[len(p) - tail :]
                r = r[: seq_len - len(p)]
            elif eos is not None and len(p) + len(r) < seq_len and (not r or r[-1] != eos):
                r = [*r, eos]  # only an untruncated response ends with eos
            fill = seq_len - len(p) - len(r)
            ids_out.append(p + r + [pad] * fill)
            labels_out.append([-100] * len(p) + r + [-100] * fill)
        return {"input_ids": ids_out, "labels": labels_out}

    return ds.map(fn, batched=True, remove_columns=ds.column_names)


def _token_noise(
    train: datasets.Dataset, plan: dict[int, tuple[str, int]], vocab_ids: np.ndarray
) -> datasets.Dataset:
    """Apply corrupt (50-100% of the labelled tokens -> random non-special ids: the response's only under
    ``response_only``) and duplicate; add ``noise``."""

    def corrupt(batch: dict[str, list], idx: list[int]) -> dict[str, list]:
        for n, i in enumerate(idx):
            kind, seed = plan.get(i, ("clean", 0))
            if kind != "corrupt":
                continue
            rng = np.random.default_rng(seed)
            ids, labels = list(batch["input_ids"][n]), batch["labels"][n]
            real = [k for k, lab in enumerate(labels) if lab != -100]
            pos = rng.choice(real, size=math.ceil(rng.uniform(0.5, 1.0) * len(real)), replace=False)
            for p, tok in zip(pos.tolist(), rng.choice(vocab_ids, size=len(pos)).tolist(), strict=True):
                ids[p] = tok
            batch["input_ids"][n] = ids
            batch["labels"][n] = [tok if lab != -100 else -100 for tok, lab in zip(ids, labels, strict=True)]
        return batch

    train = train.map(corrupt, batched=True, with_indices=True)
    clean = [i for i in range(len(train)) if i not in plan]
    source = list(range(len(train)))
    for i, (kind, seed) in plan.items():
        if kind == "duplicate":  # an exact copy of a clean row, replacing row i
            pool = clean or [j for j in range(len(train)) if j != i] or [i]
            source[i] = pool[int(np.random.default_rng(seed).integers(len(pool)))]
    if source != list(range(len(train))):
        train = train.select(source).flatten_indices()
    return train.add_column("noise", [NOISE_CODES[plan[i][0]] if i in plan else 0 for i in range(len(train))])


def _prepare(
    texts: datasets.Dataset, cfg: RunConfig, tokenizer: Any, vocab_ids: np.ndarray
) -> tuple[Any, Any, dict]:
    """Split, inject noise into train, tokenize; returns (train, eval, meta)."""
    train_text, eval_text = _split(texts, cfg)
    plan = _noise_plan(len(train_text), cfg)
    seq_len, response_only = cfg.data.seq_len, cfg.data.response_only
    train = _token_noise(
        _tokenize(_shuffle_noise(train_text, plan), tokenizer, seq_len, response_only), plan, vocab_ids
    )
    eval_ = _tokenize(eval_text, tokenizer, seq_len, response_only)
    eval_ = eval_.add_column("noise", [0] * len(eval_))
    counts = {kind: sum(1 for k, _ in plan.values() if k == kind) for kind in NOISE_KINDS}
    return (
        train,
        eval_,
        {"n_available": len(texts), "noise_counts": {"clean": len(train) - len(plan), **counts}},
    )


def _default_data(
    cfg: RunConfig, tokenizer: Any, manifest: dict[str, Any], base_dir: Path | None, vocab_ids: np.ndarray
) -> tuple[Any, Any, dict]:
    """The ``data.task`` examples; cached with save_to_disk when the tokenizer is the embedded base's."""

    cache = None
    if base_dir is not None:  # the base dir name pins the tokenizer and the corpus
        d = cfg.data
        key = {
            "format": DATA_FORMAT,
            "base": base_dir.name,
            "task": d.task,
            "response_only": d.response_only,
            "seq_len": d.seq_len,
            "max": d.max_examples,
            "eval": d.eval_examples,
            "rate": d.noise_rate,
            "kinds": d.noise_kinds,
            "seed": d.seed,
        }
        cache = default_cache_dir(cfg) / "data" / short_hash(key, 16)
        clean_stale_tmp(cache.parent)  # left by a build killed mid-way
        if (cache / "govgym_data.json").is_file():
            try:
                dd = datasets.load_from_disk(str(cache))
                meta = json.loads((cache / "govgym_data.json").read_text(encoding="utf-8"))
                for split in ("train", "eval"):  # touch every column's buffers: a truncated arrow fails here
                    dd[split].with_format("numpy")[len(dd[split]) - 1]
            except Exception as err:
                raise ConfigError(
                    f"the cached tokenized dataset {str(cache)!r} is damaged ({type(err).__name__}: "
                    f"{str(err)[:200]}); an interrupted copy or a disk error? Delete that folder and it is "
                    "rebuilt on next use."
                ) from err
            return dd["train"], dd["eval"], meta
    examples = tasks.task_examples(manifest, cfg.data.task)
    cols = ("key", "prompt", "response", "text")
    texts = datasets.Dataset.from_dict({k: [e[k] for e in examples] for k in cols})
    train, eval_, meta = _prepare(texts, cfg, tokenizer, vocab_ids)
    if cache is not None:
        tmp = cache.parent / f".tmp-{cache.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        datasets.DatasetDict({"train": train, "eval": eval_}).save_to_disk(str(tmp))
        (tmp / "govgym_data.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, cache)  # atomic; if another process won the race, its copy is identical
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return train, eval_, meta


def _mismatch_info(diff: dict[str, Any] | None) -> dict[str, Any] | None:
    if diff is None or diff["match"]:
        return None
    return {
        **{k: len(diff[k]) for k in ("missing", "changed", "added")},
        "python": diff["python"],
        "examples": {k: diff[k][:5] for k in ("missing", "changed", "added")},
        "summary": corpus.diff_summary(diff),
    }


def load_workload(cfg: RunConfig, progress: bool = True) -> Workload:
    """Build the model, tokenizer and datasets of a run, fully offline.

    Args:
        cfg: The run config (``model``, ``data`` and ``cache_dir`` are used).
        progress: Show progress bars (base pretraining, dataset maps).

    Returns:
        A :class:`Workload` with a NEW model instance loaded from disk on every call, so two runs
        never share weights.

    Raises:
        ConfigError: A local model or dataset cannot be loaded, the text column is missing, or
            ``data.seq_len`` exceeds the model's positions.
    """
    with progress_bars(progress), quiet_libraries():
        return _load_workload(cfg, progress)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Turn off datasets' output and transformers' bars while a workload loads, whatever ``progress`` says.

    Each workload's maps, ``save_to_disk`` and loads print "Map", "Saving the dataset", "Flattening the
    indices", "Generating train split", "Loading weights" and "Writing model shards" bars (and datasets'
    hashing warnings): hundreds of lines under govgym's own bars on a first ``make demo``. transformers'
    warnings stay (a checkpoint whose weights did not all load says so). Both libraries only have
    process-wide switches, so every setting is restored on exit.
    """

    bars = (datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled())
    level = ds_logging.get_verbosity()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            hf_logging.enable_progress_bar()


def _load_workload(cfg: RunConfig, progress: bool) -> Workload:
    base_dir, saved, diff = None, None, None
    if cfg.model.source == "default":
        if cfg.data.seq_len > cfg.model.max_position_embeddings:  # check before a 2-minute build
            raise ConfigError(
                f"data.seq_len: {cfg.data.seq_len} exceeds model.max_position_embeddings="
                f"{cfg.model.max_position_embeddings}; lower one or raise the other."
            )
        base_dir, saved, diff = ensure_base(cfg, progress)
    model_dir = base_dir or Path(cfg.model.source).expanduser()
    model, tokenizer = load_model(model_dir, cached=base_dir is not None)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and cfg.data.seq_len > max_pos:
        raise ConfigError(
            f"data.seq_len: {cfg.data.seq_len} exceeds the max_position_embeddings={max_pos} "
            f"of {str(model_dir)!r}; lower data.seq_len."
        )
    n_vocab = min(len(tokenizer), model.get_input_embeddings().num_embeddings)
    vocab_ids = np.setdiff1d(np.arange(n_vocab), tokenizer.all_special_ids)  # corrupt never draws pad/bos/eos
    manifest = None
    if cfg.data.source == "default":
        manifest = saved or corpus.current_manifest()
        train, eval_, meta = _default_data(cfg, tokenizer, manifest, base_dir, vocab_ids)
    else:
        train, eval_, meta = _prepare(_load_local_dataset(cfg), cfg, tokenizer, vocab_ids)
    base_summary = None
    if base_dir is not None:
        base_summary = json.loads((base_dir / "govgym_base.json").read_text(encoding="utf-8"))
        base_summary = {
            k: base_summary[k] for k in ("n_params", "final_loss", "eval_loss", "init_eval_loss", "seconds")
        }
    info = {
        "model_source": cfg.model.source,
        "model_dir": str(model_dir),
        "base_dir": str(base_dir) if base_dir else None,
        "base": base_summary,
        "n_params": sum(p.numel() for p in model.parameters()),
        "data_source": cfg.data.source,
        "task": cfg.data.task if cfg.data.source == "default" else None,
        "response_only": cfg.data.response_only,
        "text_field": cfg.data.text_field
        if cfg.data.source != "default" and not cfg.data.prompt_field
        else None,
        "seq_len": cfg.data.seq_len,
        "n_train": len(train),
        "n_eval": len(eval_),
        "n_available": meta["n_available"],
        "noise_rate": cfg.data.noise_rate,
        "noise_counts": meta["noise_counts"],
        "noise_codes": dict(NOISE_CODES),
        "manifest_hash": (saved or manifest or {}).get("hash"),
        "manifest_mismatch": _mismatch_info(diff),
        "data_config": asdict(cfg.data),
    }
    return Workload(model=model, tokenizer=tokenizer, train=train, eval=eval_, info=info)
