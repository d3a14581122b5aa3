"""The embedded corpus: the Python standard library's own source, recorded file by file.

Every machine that runs govgym has a Python standard library, so its ``*.py`` files are a real corpus
that needs no download. This module lists them deterministically, records them in a *manifest*
(relative path, sha256, size per file, plus the Python version) so that a dataset built from them can
be reproduced and a different machine is detected, and splits them by a hash of the relative path into
two disjoint halves:

* ``pretrain``: raw source, used to train the tokenizer and pretrain the embedded base model;
* ``finetune``: turned into a different distribution, used for fine-tuning: a doc -> code task
  (``<doc> summary`` then ``<code> function without its docstring``) or its inverse, code -> doc
  (``<code> function without its docstring`` then ``<doc> summary``), both prompt -> response pairs
  built from the same functions.

On CPython 3.11 the filtered library is ~435 files / 8.4 MB, split ~50/50 (4.2 MB of raw source is
~1.3M tokens of a 2,048-entry byte-level BPE).
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import logging
import platform
import sysconfig
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
"""Bump when the manifest layout or the file filter changes (it changes every cache key)."""

EXCLUDED_DIRS = frozenset(
    {
        "site-packages",  # third-party code: differs per machine, not "the stdlib"
        "dist-packages",
        "__pycache__",
        "test",  # CPython's test suite: 40 MB of unusual code that would swamp the rest
        "tests",
        "idlelib",  # GUI apps and demos: large, atypical, sometimes absent (no Tk)
        "tkinter",
        "turtledemo",
        "lib2to3",  # deprecated; fixers and grammar pickles
        "encodings",  # ~120 generated charmap tables: numbers, not code
        "pydoc_data",  # one 700 KB string literal of help text
        "ensurepip",  # bundled wheels, not code
        "__phello__",  # frozen-module test fixtures
    }
)
"""Directory names skipped anywhere under the stdlib root."""

EXCLUDED_PREFIXES = ("_sysconfigdata", "config-")
"""File / top-level directory prefixes skipped: build-machine specific (paths, compiler flags)."""

PRETRAIN_CHAR_CAP = 4_000_000
"""Characters of raw source used for pretraining: ~1.26M tokens, one epoch of 1,200 steps x 1,024 tokens."""

DOC_CHAR_CAP = 300
"""Longest docstring summary kept in a doc -> code example; longer ones are cut at a word boundary."""


def stdlib_root() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def _relpath(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root).as_posix()


def stdlib_files(root: Path | None = None) -> list[Path]:
    """List the standard library's ``*.py`` files used as the corpus.

    Args:
        root: The stdlib directory; defaults to :func:`stdlib_root`.

    Returns:
        Absolute paths sorted by their POSIX relative path, so the order is the same on every
        machine with the same library. Directories in :data:`EXCLUDED_DIRS` and build-specific files
        (:data:`EXCLUDED_PREFIXES`) are left out.
    """
    root = (root or stdlib_root()).resolve()
    keep: list[tuple[str, Path]] = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & EXCLUDED_DIRS or rel.parts[0].startswith(EXCLUDED_PREFIXES):
            continue
        if rel.name.startswith(EXCLUDED_PREFIXES) or not path.is_file():
            continue
        keep.append((rel.as_posix(), path))
    return [p for _, p in sorted(keep)]


def make_manifest(files: Sequence[Path], root: Path | None = None) -> dict[str, Any]:
    """Record a corpus: relative path, sha256 and size of each file, plus the Python version.

    Args:
        files: Files under ``root`` (usually :func:`stdlib_files`).
        root: The directory the relative paths are taken from; defaults to :func:`stdlib_root`.

    Returns:
        A JSON-able dict ``{"format", "python", "root", "files": [[rel, sha256, size], ...],
        "hash"}``, where ``hash`` covers the paths and contents only (not the Python version or the
        root, which may differ on machines with an identical library).
    """
    root = (root or stdlib_root()).resolve()
    rows = []
    for path in files:
        data = Path(path).read_bytes()
        rows.append([_relpath(Path(path), root), hashlib.sha256(data).hexdigest(), len(data)])
    rows.sort()
    manifest = {
        "format": MANIFEST_FORMAT,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "root": str(root),
        "files": rows,
    }
    manifest["hash"] = manifest_hash(manifest)
    return manifest


_CURRENT: dict[str, dict[str, Any]] = {}


def current_manifest(refresh: bool = False) -> dict[str, Any]:
    """The manifest of this machine's standard library.

    Hashing ~8 MB takes ~0.5 s, and every ``load_workload`` needs it, so it is computed once per
    process (the library does not change under a running interpreter); ``refresh=True`` recomputes.
    """
    root = stdlib_root()
    if refresh or str(root) not in _CURRENT:
        _CURRENT[str(root)] = make_manifest(stdlib_files(root), root)
    return copy.deepcopy(_CURRENT[str(root)])


def manifest_hash(manifest: dict[str, Any]) -> str:
    """sha256 over the manifest's ``(relpath, sha256)`` rows and format version."""
    h = hashlib.sha256(f"govgym-manifest-v{manifest.get('format', MANIFEST_FORMAT)}\n".encode())
    for rel, digest, _size in manifest["files"]:
        h.update(f"{rel}\t{digest}\n".encode())
    return h.hexdigest()


def manifest_diff(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Compare a saved manifest with the current one.

    Args:
        saved: The manifest stored with a cached artifact.
        current: This machine's manifest (:func:`current_manifest`).

    Returns:
        ``{"missing": [...], "changed": [...], "added": [...], "python": [saved, current],
        "match": bool}``: relative paths missing here, present with different contents, and new here.
        ``match`` is True when no file differs (the Python version alone does not matter).
    """
    old = {rel: digest for rel, digest, _ in saved["files"]}
    new = {rel: digest for rel, digest, _ in current["files"]}
    missing = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    changed = sorted(rel for rel in set(old) & set(new) if old[rel] != new[rel])
    return {
        "missing": missing,
        "changed": changed,
        "added": added,
        "python": [saved.get("python"), current.get("python")],
        "match": not (missing or changed or added),
    }


def diff_summary(diff: dict[str, Any], examples: int = 3) -> str:
    """One line describing a :func:`manifest_diff`: counts and a few example paths per kind."""
    if diff["match"]:
        return "stdlib matches the recorded manifest"
    parts = []
    for kind in ("missing", "changed", "added"):
        paths = diff[kind]
        if paths:
            more = f", ... (+{len(paths) - examples})" if len(paths) > examples else ""
            parts.append(f"{len(paths)} {kind} ({', '.join(paths[:examples])}{more})")
    saved_py, current_py = diff["python"]
    return f"stdlib differs from the recorded manifest (Python {saved_py} -> {current_py}): " + "; ".join(
        parts
    )


def split_of(relpath: str) -> str:
    """``"pretrain"`` or ``"finetune"``: the first byte of sha256(relpath), even or odd.

    Hashing the path (not its position in a list) keeps every file's half fixed when other files
    are added or removed, so two machines agree on all files they share.
    """
    return "pretrain" if hashlib.sha256(relpath.encode()).digest()[0] % 2 == 0 else "finetune"


def split_files(relpaths: Iterable[str]) -> dict[str, list[str]]:
    """Split relative paths into the disjoint ``pretrain`` and ``finetune`` halves (each sorted)."""
    out: dict[str, list[str]] = {"pretrain": [], "finetune": []}
    for rel in sorted(relpaths):
        out[split_of(rel)].append(rel)
    return out


def read_recorded(
    manifest: dict[str, Any], relpaths: Iterable[str], root: Path | None = None
) -> dict[str, str]:
    """Read files listed in ``manifest`` whose current contents still match the recorded sha256.

    Files that are missing or changed on this machine are skipped (``manifest_diff`` reports them),
    so a dataset built from a saved manifest never silently mixes in different source.

    Returns:
        ``{relpath: text}`` in the order of ``relpaths``.
    """
    root = (root or stdlib_root()).resolve()
    recorded = {rel: digest for rel, digest, _ in manifest["files"]}
    out: dict[str, str] = {}
    for rel in relpaths:
        path = root / rel
        if rel not in recorded or not path.is_file():
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != recorded[rel]:
            continue
        out[rel] = data.decode("utf-8", errors="replace")
    return out


def pretrain_texts(
    manifest: dict[str, Any], root: Path | None = None, char_cap: int = PRETRAIN_CHAR_CAP
) -> list[str]:
    """Raw source of the pretrain half, in a fixed hash order, until ``char_cap`` characters.

    The order is by sha256 of the path (not alphabetical) so that the cap cuts a random-looking
    sample of modules instead of everything after ``a``-``m``.
    """
    rels = split_files(rel for rel, _, _ in manifest["files"])["pretrain"]
    rels.sort(key=lambda r: hashlib.sha256(r.encode()).hexdigest())
    texts, total = [], 0
    for text in read_recorded(manifest, rels, root).values():
        if total >= char_cap:
            break
        texts.append(text[: char_cap - total])
        total += len(texts[-1])
    return texts


TASKS = ("doc2code", "code2doc")
"""Fine-tuning tasks built from the finetune half: doc -> code (the default) and code -> doc."""


def format_example(doc: str, code: str) -> str:
    """The fine-tuning task format: a docstring summary, then the function without its docstring."""
    return f"<doc> {doc}\n<code> {code}"


def prompt_response(doc: str, code: str, task: str = "doc2code") -> tuple[str, str]:
    """Split one function into the task's (prompt, response); ``prompt + response`` is the example text.

    The cut sits before the space that opens the response (``"<doc> ...\n<code>"`` + ``" def f..."``),
    so a byte-level BPE that glues a leading space to the next word tokenizes the two halves as it
    tokenizes the whole. For ``doc2code``, ``prompt + response == format_example(doc, code)``.

    Args:
        doc: The docstring summary.
        code: The function without its docstring.
        task: ``doc2code`` (prompt = summary, response = code) or ``code2doc`` (the inverse).
    """
    if task == "doc2code":
        return f"<doc> {doc}\n<code>", f" {code}"
    if task == "code2doc":
        return f"<code> {code}\n<doc>", f" {doc}"
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _summary(doc: str) -> str:
    """First paragraph of a cleaned docstring on one line, capped at DOC_CHAR_CAP characters."""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    if len(first) > DOC_CHAR_CAP:
        first = first[:DOC_CHAR_CAP].rsplit(" ", 1)[0] + " ..."
    return first


def _functions(
    tree: ast.AST, prefix: str = ""
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualname, node) for every function and method, depth first in source order."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.stmt, ast.excepthandler, ast.match_case)):
            continue  # defs only live in statement lists: skipping expressions is 5x faster
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _doc_code(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, str] | None:
    doc = ast.get_docstring(node, clean=True)
    if not doc or len(node.body) < 2 or node.end_lineno is None:
        return None  # no docstring, or nothing but a docstring (abstract stubs)
    doc_node = node.body[0]
    if doc_node.lineno <= node.lineno or doc_node.end_lineno is None:
        return None  # docstring on the def line: cannot cut it out by lines
    start, end = node.lineno - 1, node.end_lineno
    after = lines[doc_node.end_lineno : end]
    while after and not after[0].strip():
        after = after[1:]  # the blank line that usually follows a docstring would open every body
    keep = lines[start : doc_node.lineno - 1] + after
    code = textwrap.dedent("\n".join(keep)).strip("\n")
    summary = _summary(doc)
    if not summary or not code.strip():
        return None
    return summary, code.rstrip()


def task_examples(
    manifest: dict[str, Any], task: str = "doc2code", root: Path | None = None
) -> list[dict[str, str]]:
    """The examples of a fine-tuning task: :func:`doc_code_examples` with ``prompt``/``response`` added.

    Both tasks use the same functions (same keys, same order), so a split by key puts every function
    on the same side for either task. ``text`` is ``prompt + response`` (for ``doc2code`` exactly the
    ``text`` of :func:`doc_code_examples`).
    """
    out = []
    for e in doc_code_examples(manifest, root):
        prompt, response = prompt_response(e["doc"], e["code"], task)
        out.append({**e, "prompt": prompt, "response": response, "text": prompt + response})
    return out


def doc_code_examples(manifest: dict[str, Any], root: Path | None = None) -> list[dict[str, str]]:
    """Doc -> code examples from the finetune half: one per function/method with a docstring.

    Args:
        manifest: The recorded corpus; only its finetune files that still match are read.
        root: The stdlib directory; defaults to :func:`stdlib_root`.

    Returns:
        Dicts ``{"key", "doc", "code", "text"}`` in a fixed order (file path, then source order),
        with exact duplicate texts removed (the stdlib repeats some helpers, e.g. in ``_pyio`` and
        ``_pydecimal``), so held-out examples never leak into training. ~2,460 on CPython 3.11.
        :func:`task_examples` turns them into the prompt -> response pairs of either task.
    """
    rels = split_files(rel for rel, _, _ in manifest["files"])["finetune"]
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for rel, source in read_recorded(manifest, rels, root).items():
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            logger.debug("skipping %s: does not parse on this Python", rel)
            continue
        lines = source.splitlines()
        for qualname, node in _functions(tree):
            pair = _doc_code(lines, node)
            if pair is None:
                continue
            text = format_example(*pair)
            if text in seen:
                continue
            seen.add(text)
            out.append(
                {"key": f"{rel}::{qualname}:{node.lineno}", "doc": pair[0], "code": pair[1], "text": text}
            )
    return out


def save_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Write a manifest as indented JSON (one file row per line keeps diffs of it readable)."""
    Path(path).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest written by :func:`save_manifest`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
