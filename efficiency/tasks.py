"""The fine-tuning tasks of the generated world, built offline from the finetune half of the stdlib.

:mod:`govgym.efficiency.corpus` builds the two tasks of FineTune-v0/v1 (``doc2code``, ``code2doc``);
this module adds five whose learning curves differ from theirs and from each other's, so that a
governor sees more than one shape of curve (:data:`WORLD_TASKS`):

* ``body2name`` (SFT): a function with its name blanked (``def _(...)``) -> the name. A response of
  1-5 tokens: the loss falls fast, then overfits small sets quickly.
* ``sig2doc`` (SFT): the ``def`` line alone -> the docstring's summary. Little to go on: a high floor.
* ``nextline`` (SFT): the first k lines of a function -> line k+1 (k drawn per function from a hash of
  its key). Short code responses, a different statistic from whole bodies.
* ``docprose`` (plain LM, loss on every token): full docstrings of >= 200 characters (module, class and
  function docstrings): English prose, far from the raw code the base was pretrained on.
* ``comments`` (plain LM, loss on every token): runs of >= 3 ``#`` comment lines (>= 120 characters),
  joined into one paragraph: terse technical prose.

Every builder returns the rows :func:`govgym.efficiency.corpus.task_examples` returns (``key``,
``prompt``, ``response``, ``text`` = prompt + response), in a fixed order with exact duplicates removed.
Plain tasks have ``prompt == ""``, so ``data.response_only`` changes nothing for them: the loss is on
every token either way. The source is the Python standard library (PSF licence).
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path
from typing import Any

from govgym.efficiency import corpus

WORLD_TASKS = ("body2name", "sig2doc", "nextline", "docprose", "comments")
"""Tasks this module adds to corpus.TASKS."""
ALL_TASKS = (*corpus.TASKS, *WORLD_TASKS)
"""Every task ``data.task`` accepts."""
PLAIN_TASKS = ("docprose", "comments")
"""Tasks without a prompt: plain continuation, loss on all tokens."""
PROSE_MIN_CHARS = 200
"""Shortest docstring kept by ``docprose`` (a one-line summary is not prose)."""
PROSE_MAX_CHARS = 1500
"""Longest docstring text kept by ``docprose`` (cut at a word boundary; seq_len truncates anyway)."""
COMMENT_MIN_LINES, COMMENT_MIN_CHARS = 3, 120
"""A ``comments`` example: at least this many consecutive comment lines and characters."""


def _h(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _dedup(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["text"] in seen or not r["response"].strip():
            continue
        seen.add(r["text"])
        out.append(r)
    return out


def _row(key: str, prompt: str, response: str) -> dict[str, str]:
    return {"key": key, "prompt": prompt, "response": response, "text": prompt + response}


def _def_header(code: str) -> tuple[list[str], list[str]] | None:
    """(header lines up to the one ending the signature with ':', body lines); None if not found."""
    lines = code.split("\n")
    for i, line in enumerate(lines):
        if line.rstrip().endswith(":") and not line.lstrip().startswith("@"):
            return lines[: i + 1], lines[i + 1 :]
    return None


def _body2name(manifest: dict[str, Any], root: Path | None) -> list[dict[str, str]]:
    out = []
    for e in corpus.doc_code_examples(manifest, root):
        name = e["key"].rsplit("::", 1)[1].rsplit(":", 1)[0].rsplit(".", 1)[-1]
        if name.startswith("__") or name == "<lambda>":
            continue  # dunders are guessed from the class protocol, not the body
        blanked, n = re.subn(rf"\bdef\s+{re.escape(name)}\s*\(", "def _(", e["code"], count=1)
        if not n:
            continue
        out.append(_row(e["key"], f"<code> {blanked}\n<name>", f" {name}"))
    return out


def _sig2doc(manifest: dict[str, Any], root: Path | None) -> list[dict[str, str]]:
    out = []
    for e in corpus.doc_code_examples(manifest, root):
        parts = _def_header(e["code"])
        if parts is None:
            continue
        header = "\n".join(ln for ln in parts[0] if not ln.lstrip().startswith("@"))
        out.append(_row(e["key"], f"<sig> {header}\n<doc>", f" {e['doc']}"))
    return out


def _nextline(manifest: dict[str, Any], root: Path | None) -> list[dict[str, str]]:
    out = []
    for e in corpus.doc_code_examples(manifest, root):
        lines = [ln for ln in e["code"].split("\n") if ln.strip()]
        if len(lines) < 4:
            continue
        k = 2 + _h(e["key"]) % (len(lines) - 2)  # 2 .. n-1 lines of context, fixed per function
        out.append(_row(e["key"], "<code> " + "\n".join(lines[:k]) + "\n<next>", " " + lines[k].strip()))
    return out


def _docprose(manifest: dict[str, Any], root: Path | None) -> list[dict[str, str]]:
    out = []
    rels = corpus.split_files(rel for rel, _, _ in manifest["files"])["finetune"]
    for rel, source in corpus.read_recorded(manifest, rels, root).items():
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node, clean=True)
            if not doc or len(doc) < PROSE_MIN_CHARS:
                continue
            if len(doc) > PROSE_MAX_CHARS:
                doc = doc[:PROSE_MAX_CHARS].rsplit(" ", 1)[0]
            name = getattr(node, "name", "<module>")
            out.append(_row(f"{rel}::{name}:{getattr(node, 'lineno', 0)}", "", doc))
    return out


def _comments(manifest: dict[str, Any], root: Path | None) -> list[dict[str, str]]:
    out = []
    rels = corpus.split_files(rel for rel, _, _ in manifest["files"])["finetune"]
    for rel, source in corpus.read_recorded(manifest, rels, root).items():
        block: list[str] = []
        start = 0
        for i, line in enumerate([*source.split("\n"), ""]):
            s = line.strip()
            if s.startswith("#") and not s.startswith(("#!", "# -*-")):
                if not block:
                    start = i + 1
                block.append(s.lstrip("#").strip())
                continue
            text = " ".join(w for w in block if w)
            if len(block) >= COMMENT_MIN_LINES and len(text) >= COMMENT_MIN_CHARS:
                out.append(_row(f"{rel}::#{start}", "", text))
            block = []
    return out


_BUILDERS = {
    "body2name": _body2name,
    "sig2doc": _sig2doc,
    "nextline": _nextline,
    "docprose": _docprose,
    "comments": _comments,
}


_CACHE: dict[tuple[str, str, str], list[dict[str, str]]] = {}


def task_examples(manifest: dict[str, Any], task: str, root: Path | None = None) -> list[dict[str, str]]:
    """The examples of any task of :data:`ALL_TASKS` (rows ``key``/``prompt``/``response``/``text``).

    Parsing the finetune half takes ~3 s per task on 2 busy cores and a corpus collection loads hundreds
    of workloads in one process, so the rows are kept per (manifest hash, task, root) for the process
    (the caller must not change them).

    Raises:
        ValueError: ``task`` is not one of :data:`ALL_TASKS`.
    """
    if task not in ALL_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(ALL_TASKS)}")
    key = (str(manifest.get("hash")), task, str(root))
    if key not in _CACHE:
        if task in corpus.TASKS:
            _CACHE[key] = corpus.task_examples(manifest, task, root)
        else:
            _CACHE[key] = _dedup(_BUILDERS[task](manifest, root))
    return _CACHE[key]


__all__ = ["ALL_TASKS", "PLAIN_TASKS", "WORLD_TASKS", "task_examples"]
