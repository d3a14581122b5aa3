"""The task of ``govgym outside``: which standard-library package does this function come from?

A sequence-classification task no govgym run resembles (every env task is a causal LM's next-token
loss on SFT or plain text). Rows are the functions and methods (``def``, at least ``min_lines`` lines,
docstring included, exact duplicates removed) of the finetune half of the standard library (the half
the encoder never saw: ``efficiency.corpus.split_of``) that sit inside a package folder; the label is
the package (``asyncio/events.py`` -> ``asyncio``). The ``classes`` packages with the most functions
(at least ``min_per_class`` each) are the classes, each capped at ``max_per_class`` rows (the first by
a hash of the row's key: balanced and stable when other files change). The eval split is a hash of the
key too (the ``eval_fraction`` of each class with the smallest hash: stratified): the same rows on
every machine that shares the files. Built with ``datasets`` ``map``/``filter`` (~2 s).

On CPython 3.11 (finetune half, 222 files): asyncio 506 functions, distutils 254, multiprocessing 209,
email 183, importlib 178, unittest 178, urllib 164, http 152, concurrent 87, xmlrpc 82 (the default
10 classes), xml 78, zoneinfo 38 ...; with 80 per class: 800 rows, 640 train / 160 eval (16 per class).
"""

from __future__ import annotations

import ast
import hashlib
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govgym.errors import ConfigError
from govgym.typed import check_range


@dataclass
class TaskConfig:
    """The classification task: which packages, how many functions each, the eval split, the input length."""

    classes: int = 10
    """Packages to classify: the ones with the most functions (at least min_per_class each)."""
    min_per_class: int = 60
    """A package with fewer functions is not a class."""
    max_per_class: int = 80
    """Rows kept per class (balanced classes; the first by a hash of the key)."""
    eval_fraction: float = 0.2
    """Share of each class held out for evaluation (the rows with the smallest hash of the key)."""
    max_len: int = 128
    """Tokens per function (cls + source + sep; longer ones are cut, shorter padded: every batch costs the same FLOPs)."""
    min_lines: int = 3
    """Shortest function kept (one-line stubs say nothing of their package)."""

    def __post_init__(self) -> None:
        check_range("classes", self.classes, 2, 1000)
        check_range("min_per_class", self.min_per_class, 2, 1_000_000)
        check_range("max_per_class", self.max_per_class, 2, 1_000_000)
        check_range("eval_fraction", self.eval_fraction, 0.0, 0.9, lo_open=True)
        check_range("max_len", self.max_len, 8, 4096)
        check_range("min_lines", self.min_lines, 1, 10_000)


def _h(text: str) -> int:
    return int.from_bytes(
        hashlib.sha256(text.encode()).digest()[:7], "big"
    )  # 56 bits: fits an int64 arrow column


def function_rows(manifest: dict[str, Any], min_lines: int, root: Path | None = None) -> list[dict[str, str]]:
    """``{"key", "package", "text"}`` for every function of the finetune half inside a package folder.

    ``text`` is the function's source as written (dedented, decorators excluded); exact duplicates are
    dropped (the stdlib repeats helpers), so no eval row is also a train row.
    """
    from govgym.efficiency import corpus

    rels = [r for r in corpus.split_files(r for r, _, _ in manifest["files"])["finetune"] if "/" in r]
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for rel, source in corpus.read_recorded(manifest, rels, root).items():
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue  # a file this Python cannot parse (its grammar moved on)
        lines = source.splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno is None:
                continue
            if node.end_lineno - node.lineno + 1 < min_lines:
                continue
            text = textwrap.dedent("\n".join(lines[node.lineno - 1 : node.end_lineno])).strip("\n")
            if text in seen:
                continue
            seen.add(text)
            out.append(
                {"key": f"{rel}::{node.name}:{node.lineno}", "package": rel.split("/")[0], "text": text}
            )
    return out


def build_task(cfg: TaskConfig, tokenizer: Any, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The task's datasets: ``{"train", "eval", "classes", "counts"}`` (train/eval: input_ids, attention_mask, labels).

    Raises:
        ConfigError: fewer than 2 packages have ``min_per_class`` functions, or a split is empty.
    """
    import datasets

    from govgym.efficiency import corpus

    rows = function_rows(manifest or corpus.current_manifest(), cfg.min_lines)
    counts = Counter(r["package"] for r in rows)
    ranked = sorted((c for c in counts if counts[c] >= cfg.min_per_class), key=lambda c: (-counts[c], c))
    classes = ranked[: cfg.classes]
    if len(classes) < 2:
        top = ", ".join(f"{c} {n}" for c, n in counts.most_common(4))
        raise ConfigError(
            f"task.min_per_class: only {len(classes)} package(s) of this standard library have {cfg.min_per_class} "
            f"functions of {cfg.min_lines}+ lines (largest: {top}); lower task.min_per_class (or task.min_lines)."
        )
    label_of = {c: i for i, c in enumerate(classes)}
    with_progress = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a few hundred rows: the bars would outnumber the results
    try:
        ds = datasets.Dataset.from_list(rows).filter(lambda r: r["package"] in label_of)
        ds = ds.map(lambda r: {"rank": _h("rank:" + r["key"]), "held": _h("split:" + r["key"])})
        # the max_per_class rows of each class with the smallest rank: balanced, and stable under edits
        kept: dict[str, list[int]] = {}
        for pkg, rank in zip(ds["package"], ds["rank"]):
            kept.setdefault(pkg, []).append(rank)
        cut = {p: sorted(v)[: cfg.max_per_class][-1] for p, v in kept.items()}
        ds = ds.filter(lambda r: r["rank"] <= cut[r["package"]])
        # the eval rows of each class: its eval_fraction with the smallest split hash (stratified: a
        # split by a global hash left 11-24 eval rows per class of 80, so the eval loss rewarded
        # learning the balanced train prior less than it punished it)
        held_of: dict[str, list[int]] = {}
        for pkg, h in zip(ds["package"], ds["held"]):
            held_of.setdefault(pkg, []).append(h)
        n_eval = {p: max(1, round(cfg.eval_fraction * len(v))) for p, v in held_of.items()}
        held_cut = {p: sorted(v)[n_eval[p] - 1] for p, v in held_of.items()}
        ds = ds.map(
            lambda r: {"labels": label_of[r["package"]], "is_eval": r["held"] <= held_cut[r["package"]]}
        )
        ds = ds.map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=cfg.max_len, padding="max_length"),
            batched=True,
        )
        held = ds.filter(lambda r: r["is_eval"])
        train = ds.filter(lambda r: not r["is_eval"])
    finally:
        if with_progress:
            datasets.enable_progress_bars()
    keep = ["input_ids", "attention_mask", "labels"]
    train, held = (d.remove_columns([c for c in d.column_names if c not in keep]) for d in (train, held))
    if len(train) == 0 or len(held) == 0:
        raise ConfigError(
            f"task.eval_fraction: {cfg.eval_fraction} leaves {len(train)} train and {len(held)} eval rows; "
            "both need rows: move it toward 0.2 or raise task.max_per_class."
        )
    return {"train": train, "eval": held, "classes": classes, "counts": {c: counts[c] for c in classes}}


__all__ = ["TaskConfig", "build_task", "function_rows"]
