"""Loading a local fine-tuning dataset (``data.source`` a path): one concern, files -> text rows.

Reads json/jsonl/txt/parquet/arrow/csv files, a folder of them, or a ``save_to_disk`` folder, and
reduces them to a ``text`` + ``key`` dataset (plus ``prompt`` / ``response`` for prompt -> response
pairs); every failure is a ConfigError naming the file and the fix. Moved verbatim out of
:mod:`govgym.efficiency.workload` (which re-exports these names) to keep that module under the
project's line limit.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import datasets

from govgym.efficiency.config import RunConfig, default_cache_dir
from govgym.errors import did_you_mean
from govgym.typed import ConfigError

DATA_EXTENSIONS = {
    ".json": "json",
    ".jsonl": "json",
    ".txt": "text",
    ".text": "text",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
}


def _load_local_dataset(cfg: RunConfig) -> datasets.Dataset:
    """A local dataset reduced to columns ``text`` and ``key`` (row index), plus ``prompt`` and
    ``response`` (``text`` = prompt + response) when ``data.prompt_field`` is set; errors -> ConfigError."""

    path, field = Path(cfg.data.source).expanduser(), cfg.data.text_field
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")  # written by save_to_disk
    fix = (
        "Give data.source a json/jsonl/txt/parquet/arrow/csv file, a folder of files of one of these "
        "types, or a folder written by Dataset.save_to_disk."
    )
    try:
        if path.is_dir() and any((path / m).is_file() for m in markers):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else ds[sorted(ds)[0]]
        else:
            files = (
                [path]
                if path.is_file()
                else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_EXTENSIONS)
            )
            builders = {DATA_EXTENSIONS.get(p.suffix.lower()) for p in files}
            if not files or None in builders or len(builders) > 1:
                raise ConfigError(
                    f"data.source: {str(path)!r} holds no single supported file type "
                    f"(found {sorted(p.suffix for p in files) or 'no data files'}). {fix}"
                )
            builder = builders.pop()
            if builder in ("json", "text", "csv"):
                if not any([_check_text_file(f, fix) for f in files]):  # every file checked
                    raise ConfigError(
                        f"data.source: {str(path)!r} has no rows: "
                        f"{'the file is' if len(files) == 1 else f'all {len(files)} files are'} empty. {fix}"
                    )
            ds = datasets.load_dataset(
                builder,
                data_files=[str(p) for p in files],
                split="train",
                cache_dir=str(default_cache_dir(cfg) / "hf_datasets"),
            )
    except ConfigError:
        raise
    except Exception as err:  # a parse error deep in pyarrow is still a bad data.source
        raise ConfigError(f"data.source: could not load {str(path)!r} ({_root_cause(err)}). {fix}") from err
    if len(ds) == 0:
        raise ConfigError(f"data.source: {str(path)!r} has no rows. {fix}")
    if cfg.data.prompt_field.strip():
        return _pairs(ds, cfg, path)
    if field not in ds.column_names:
        hint = did_you_mean(field, ds.column_names)
        raise ConfigError(
            f"data.text_field: {field!r} is not a column of {str(path)!r}; its columns are "
            f"{', '.join(ds.column_names)}.{hint} Set data.text_field to the text column."
        )
    if getattr(ds.features[field], "dtype", None) not in ("string", "large_string"):
        raise ConfigError(
            f"data.text_field: column {field!r} of {str(path)!r} holds {ds.features[field]}, "
            "not strings; name a text column."
        )
    ds = ds.select_columns([field])
    ds = ds.rename_column(field, "text") if field != "text" else ds
    ds = ds.filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True)
    return ds.map(lambda b, idx: {"key": [str(i) for i in idx]}, batched=True, with_indices=True)


def _pairs(ds: datasets.Dataset, cfg: RunConfig, path: Path) -> datasets.Dataset:
    """Prompt-completion rows: columns ``prompt``, ``response``, ``text`` and ``key``; blank responses dropped."""

    for name in ("prompt_field", "response_field"):
        col = getattr(cfg.data, name)
        if col not in ds.column_names:
            hint = did_you_mean(col, ds.column_names)
            raise ConfigError(
                f"data.{name}: {col!r} is not a column of {str(path)!r}; its columns are "
                f"{', '.join(ds.column_names)}.{hint} Set data.{name} to the "
                f"{name.split('_')[0]} column."
            )
        if getattr(ds.features[col], "dtype", None) not in ("string", "large_string"):
            raise ConfigError(
                f"data.{name}: column {col!r} of {str(path)!r} holds {ds.features[col]}, not strings; "
                "name a text column."
            )
    prompt, response = cfg.data.prompt_field, cfg.data.response_field
    rows = ds.map(
        lambda b: {
            "prompt": [p or "" for p in b[prompt]],
            "response": [r or "" for r in b[response]],
            "text": [(p or "") + (r or "") for p, r in zip(b[prompt], b[response], strict=True)],
        },
        batched=True,
        remove_columns=ds.column_names,
    )
    rows = rows.filter(lambda b: [bool(r.strip()) for r in b["response"]], batched=True)
    if len(rows) == 0:
        raise ConfigError(
            f"data.response_field: every row of {str(path)!r} has an empty {response!r}; name the column "
            "that holds the responses."
        )
    return rows.map(lambda b, idx: {"key": [str(i) for i in idx]}, batched=True, with_indices=True)


def _check_text_file(f: Path, fix: str) -> bool:
    """ConfigError naming ``f`` unless it is UTF-8 text (what the json/text/csv builders read).

    Returns:
        Whether ``f`` holds anything but whitespace.
    """

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, content = 0, False
    with f.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            if b"\0" in chunk:
                raise ConfigError(
                    f"data.source: {str(f)!r} is a binary file (a NUL byte at offset {offset + chunk.index(bytes(1))}), "
                    f"not {f.suffix} text. {fix}"
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                bad = chunk[err.start : err.start + 4]
                raise ConfigError(
                    f"data.source: {str(f)!r} is not UTF-8 text (byte {bad[:1].hex()} at offset {offset + err.start} "
                    f"cannot start or continue a UTF-8 character; Latin-1 or Windows-1252?). Re-save it as UTF-8, "
                    f"e.g. iconv -f latin1 -t utf-8 {f.name} > {f.stem}-utf8{f.suffix}."
                ) from None
            offset += len(chunk)
            content = content or bool(chunk.strip())
    return content


def _root_cause(err: BaseException) -> str:
    """``Type: message`` of the innermost cause (datasets wraps parse errors in DatasetGenerationError)."""
    seen = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    inner = seen[-1]
    text = f"{type(inner).__name__}: {str(inner)[:300]}".rstrip(": ")
    if isinstance(inner, StopIteration) or not str(inner).strip():
        text = f"{type(seen[0]).__name__}: {str(seen[0])[:300]}"
    return text
