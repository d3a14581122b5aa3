"""The bases ``govgym transfer`` runs a governor on: named sizes, model keys, or the user's own model.

A user checks a governor on their model before trusting it with a long run, so ``sizes=[...]`` takes, besides
the named sizes of ``efficiency.basemodel.BASE_SIZES`` (``10m``, ``20m``):

- **model keys** ``h<hidden>-l<layers>-a<heads>`` with optional ``-i<intermediate>`` (default: Llama's ~2.75 x
  hidden, rounded up to a multiple of 8) and ``-p<pretrain steps>`` (default: ``ModelConfig``'s 1,200): the
  embedded Llama at that shape, built and cached offline like the named sizes, e.g. ``h256-l4-a4``
  (written without commas: the CLI's ``sizes=[a,b]`` splits on them);
- **a local Hugging Face model directory** (``save_pretrained`` of a causal LM and its tokenizer): fine-tuned
  as it is on the instances' data, tokenized with its own tokenizer.

Each is checked when the job is built (``TransferJob``), with one sentence naming the entry: a directory
that is not there or has no ``config.json``, a model that is not a causal LM (the governor's losses are a
causal LM's next-token losses), no tokenizer; keys that do not parse or do not fit (hidden divisible by heads).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from govgym.errors import ConfigError

KEYS = re.compile(r"^h(\d+)-l(\d+)-a(\d+)(?:-i(\d+))?(?:-p(\d+))?$")
FORMS = (
    "a named size (10m, 20m), model keys h<hidden>-l<layers>-a<heads>[-i<intermediate>][-p<pretrain steps>] "
    "(e.g. h256-l4-a4), or a local Hugging Face causal-LM directory (with config.json and a tokenizer)"
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def is_path_like(size: str) -> bool:
    """Whether ``size`` names a directory rather than a size or keys (a separator, ``.`` or ``~`` start, or it exists)."""
    return "/" in size or "\\" in size or size.startswith((".", "~")) or Path(size).expanduser().exists()


def key_overrides(size: str, key: str = "size") -> dict[str, Any] | None:
    """The ``model.*`` overrides of a model-keys spec; None when ``size`` is not one; ``ConfigError`` if it does not fit."""
    m = KEYS.match(size)
    if m is None:
        return None
    hidden, layers, heads = (int(m.group(i)) for i in (1, 2, 3))
    inter = int(m.group(4)) if m.group(4) else 8 * math.ceil(2.75 * hidden / 8)
    over: dict[str, Any] = {
        "hidden_size": hidden,
        "num_layers": layers,
        "num_heads": heads,
        "intermediate_size": inter,
    }
    if m.group(5):
        over["pretrain_steps"] = int(m.group(5))
    for name, v in over.items():
        if v < 1:
            raise ConfigError(f"{key}: {size!r} sets {name}={v}; every model key must be >= 1.")
    if hidden % heads:
        raise ConfigError(
            f"{key}: {size!r} has hidden size {hidden}, not divisible by its {heads} heads; pick heads dividing "
            f"the hidden size, e.g. h{hidden}-l{layers}-a{_divisor(hidden, heads)}."
        )
    return over


def _divisor(n: int, near: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - near), d))


def dir_overrides(size: str, key: str = "size") -> dict[str, Any]:
    """``{"source": DIR}`` of a local Hugging Face causal-LM directory, every check passed (see the module docstring)."""
    path = Path(size).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"{key}: {size!r} looks like a path but is not a directory. Expected {FORMS}; save yours with "
            "model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)."
        )
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{key}: {size!r} has no config.json, so it is not a Hugging Face model directory; save one with "
            "model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)."
        )
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # a config.json transformers cannot read: still one sentence
        raise ConfigError(
            f"{key}: {size!r}'s config.json cannot be read by transformers ({type(err).__name__}: {str(err)[:160]})."
        ) from None
    archs_list = list(getattr(cfg, "architectures", None) or [])
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    # the saved architecture decides (a BertModel is no decoder though 'bert' has a causal-LM head class);
    # without one listed, the model type must have a causal-LM class
    ok = (
        any(a in causal for a in archs_list)
        if archs_list
        else cfg.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    )
    if not ok:
        archs = ", ".join(archs_list) or "none listed"
        raise ConfigError(
            f"{key}: {size!r} is a {cfg.model_type!r} model (architectures: {archs}), not a causal language model; "
            "the governor observes next-token losses of a causal LM fine-tune. Pass a decoder (Llama, GPT-2, "
            "Qwen, ...) saved with AutoModelForCausalLM."
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(
            f"{key}: {size!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); the instances' data is "
            "tokenized with the model's own. Save it beside the model: tokenizer.save_pretrained(DIR)."
        )
    return {"source": str(path.resolve())}


def base_overrides(
    size: str, key: str = "size", table: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``model.*`` overrides of any base ``transfer`` takes (see the module docstring); ``ConfigError`` if none."""
    from govgym.efficiency.basemodel import BASE_SIZES, size_overrides

    if not isinstance(size, str) or not size.strip():
        raise ConfigError(f"{key}: expected {FORMS}; got {size!r}.")
    named = table if table is not None else BASE_SIZES
    if size in named:
        return dict(named[size])
    over = key_overrides(size, key)
    if over is not None:
        return over
    if is_path_like(size):
        return dir_overrides(size, key)
    try:
        return size_overrides(size, key)
    except ConfigError as err:
        raise ConfigError(f"{err} Or give model keys or a model directory: {FORMS}.") from None


__all__ = ["FORMS", "base_overrides", "dir_overrides", "is_path_like", "key_overrides"]
