"""Typed configs for one fine-tuning run: one dataclass per concern, validated on construction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govgym.efficiency.strategy import Strategy
from govgym.efficiency.tasks import ALL_TASKS
from govgym.typed import ConfigError, check_choice, check_range, deep_merge, from_dict, load_yaml

NOISE_KINDS = ("corrupt", "shuffle", "duplicate")
ARCHS = ("llama", "gpt_neox", "gpt2")
"""Decoder families the embedded base can be built as (``efficiency.basemodel``)."""


@dataclass
class ModelConfig:
    """Which base model to fine-tune."""

    source: str = "default"
    """'default' (the embedded tiny Llama, pretrained here and cached) or a local HF model directory."""
    arch: str = "llama"
    """Embedded default only: llama | gpt_neox | gpt2 (the decoder family built and pretrained here)."""
    hidden_size: int = 128
    """Embedded default only: width. 128 -> ~1.1M params with the other defaults."""
    num_layers: int = 4
    """Embedded default only: decoder layers."""
    num_heads: int = 4
    """Embedded default only: attention heads (hidden_size must divide by it)."""
    intermediate_size: int = 352
    """Embedded default only: MLP width (~2.75x hidden, Llama's ratio)."""
    vocab_size: int = 2048
    """Embedded default only: BPE vocabulary trained on the pretraining corpus."""
    max_position_embeddings: int = 256
    """Embedded default only: longest sequence the model accepts."""
    pretrain_steps: int = 1200
    """Embedded default only: base-model pretraining steps (8 x 128 tokens each; ~2 min on 2 cores)."""
    pretrain_lr: float = 3e-3
    """Embedded default only: pretraining peak learning rate."""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ConfigError(
                "model.source: got an empty string. Use 'default' for the embedded model or the path of a "
                "local Hugging Face model directory (with config.json)."
            )
        if self.source != "default":
            p = Path(self.source).expanduser()
            if not p.is_dir():
                raise ConfigError(
                    f"model.source: {self.source!r} is not a directory. Use 'default' for the embedded "
                    "model or the path of a local Hugging Face model directory (with config.json)."
                )
            if not (p / "config.json").is_file():
                raise ConfigError(
                    f"model.source: {self.source!r} has no config.json, so it is not a Hugging Face model "
                    "directory. Save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
                )
        for name in (
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
            "pretrain_steps",
        ):
            check_range(f"model.{name}", getattr(self, name), 1)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size: {self.hidden_size} is not divisible by model.num_heads={self.num_heads}."
            )
        check_choice("model.arch", self.arch, ARCHS)
        check_range("model.vocab_size", self.vocab_size, 300)
        check_range("model.pretrain_lr", self.pretrain_lr, 0.0, 1.0, lo_open=True)


@dataclass
class DataConfig:
    """Which data to fine-tune on and how much of it is noise."""

    source: str = "default"
    """'default' (a task built from the stdlib half not used for pretraining, see ``task``) or a local
    dataset: a json/jsonl/txt/parquet/arrow file, a folder of them, or a datasets.save_to_disk folder."""
    task: str = "doc2code"
    """Default source only: doc2code (docstring summary -> function), code2doc (function -> summary), or
    one of the world's tasks (``efficiency.tasks.WORLD_TASKS``: body2name, sig2doc, nextline, docprose,
    comments)."""
    response_only: bool = False
    """SFT on prompt -> response data as TRL's SFTTrainer does it: the loss (train and eval) covers the
    response tokens only (labels -100 on the prompt). False: every token is a target."""
    text_field: str = "text"
    """Column holding the text, for local datasets."""
    prompt_field: str = ""
    """Local datasets: column holding the prompt ('' = plain text data). Set with response_field."""
    response_field: str = ""
    """Local datasets: column holding the response (completion); the example is prompt + response."""
    seq_len: int = 128
    """Tokens per example (truncate / pad)."""
    max_examples: int = 2000
    """Cap on fine-tuning examples (before noise duplication)."""
    eval_examples: int = 64
    """Clean held-out examples used by evaluate()."""
    noise_rate: float = 0.2
    """Fraction of training examples replaced by noise (0 = clean; the default workload's 0.2 = 20%)."""
    noise_kinds: list[str] = field(default_factory=lambda: list(NOISE_KINDS))
    """Kinds of injected noise, drawn uniformly: corrupt (random labelled tokens: the response's under
    response_only), shuffle (a prompt paired with another row's response / plain text's words shuffled),
    duplicate (copies of other examples)."""
    seed: int = 0
    """Seed of the split and the noise injection (independent of the run seed)."""

    def __post_init__(self) -> None:
        if not self.source.strip():
            # Path("") is the current folder: an empty source would train on every data file under it.
            raise ConfigError(
                "data.source: got an empty string. Use 'default' or the path of a local dataset "
                "(json/jsonl/txt/parquet/arrow file, a folder of them, or a save_to_disk folder)."
            )
        if self.source != "default" and not Path(self.source).expanduser().exists():
            raise ConfigError(
                f"data.source: {self.source!r} does not exist. Use 'default' or the path of a local dataset "
                "(json/jsonl/txt/parquet/arrow file, a folder of them, or a save_to_disk folder)."
            )
        if not self.text_field.strip():
            raise ConfigError(
                "data.text_field: got an empty string; name the column holding the text, e.g. text."
            )
        check_choice("data.task", self.task, ALL_TASKS)
        if not isinstance(self.response_only, bool):
            raise ConfigError(f"data.response_only: expected true or false, got {self.response_only!r}.")
        if bool(self.prompt_field.strip()) != bool(self.response_field.strip()):
            have, lack = (
                ("prompt_field", "response_field")
                if self.prompt_field.strip()
                else ("response_field", "prompt_field")
            )
            raise ConfigError(
                f"data.{have}: set to {getattr(self, have)!r} but data.{lack} is empty; prompt-completion "
                f"data needs both columns. Set data.{lack} too, or clear data.{have} for plain text."
            )
        paired = bool(self.prompt_field.strip())
        if paired and self.source == "default":
            raise ConfigError(
                f"data.prompt_field: {self.prompt_field!r} is for a local dataset, but data.source is "
                "'default' (its columns are fixed by data.task). Clear both fields or point data.source "
                "at a local dataset."
            )
        if self.response_only and self.source != "default" and not paired:
            raise ConfigError(
                f"data.response_only: true needs prompt-completion data, but the local data.source "
                f"{self.source!r} is read as plain text (data.text_field). Set data.prompt_field and "
                "data.response_field to its prompt and response columns, or set data.response_only false."
            )
        check_range("data.seq_len", self.seq_len, 8, 8192)
        check_range("data.max_examples", self.max_examples, 16)
        check_range("data.eval_examples", self.eval_examples, 1)
        check_range("data.noise_rate", self.noise_rate, 0.0, 0.9)
        check_range("data.seed", self.seed, 0, 2**63 - 1)
        for i, kind in enumerate(self.noise_kinds):
            check_choice(f"data.noise_kinds[{i}]", kind, NOISE_KINDS)
        if self.noise_rate > 0 and not self.noise_kinds:
            raise ConfigError("data.noise_kinds: empty while data.noise_rate > 0; name at least one kind.")


@dataclass
class OptimConfig:
    """Optimizer, schedule and batch."""

    lr: float = 1e-3
    """Peak learning rate for full fine-tuning."""
    lora_lr: float = 4e-3
    """Peak learning rate while an adapter strategy (lora/qlora/int8) is active: adapters want ~4x more."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (0 disables clipping)."""
    warmup_steps: int = 10
    """Linear warmup steps."""
    schedule: str = "cosine"
    """LR schedule after warmup: cosine | linear | constant (transformers.get_scheduler names)."""
    total_steps: int = 400
    """Schedule horizon in optimizer steps (the budget's worth of steps; a governor may stop earlier)."""
    schedule_step_flops: float = 0.0
    """0: the schedule advances one step per optimizer step. > 0: it advances by training FLOPs spent /
    this (the measured FLOPs of one step of the start strategy, set by govgym/FineTune-v1), so a run
    that switches to a cheaper strategy moves along the planned schedule by compute, not step count."""
    batch_size: int = 8
    """Examples per optimizer step (8 x 128 tokens = 1,024 tokens/step by default)."""

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, 0.0, lo_open=True)  # 0 trains nothing and divides the LR fraction
        check_range("optim.lora_lr", self.lora_lr, 0.0, lo_open=True)
        check_range("optim.weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("optim.beta1", self.beta1, 0.0, 0.999999)
        check_range("optim.beta2", self.beta2, 0.0, 0.999999)
        check_range("optim.max_grad_norm", self.max_grad_norm, 0.0)
        check_range("optim.warmup_steps", self.warmup_steps, 0)
        check_range("optim.total_steps", self.total_steps, 1)
        check_range("optim.schedule_step_flops", self.schedule_step_flops, 0.0)
        check_range("optim.batch_size", self.batch_size, 1)
        check_choice("optim.schedule", self.schedule, ("cosine", "linear", "constant"))


@dataclass
class MemoryConfig:
    """Memory strategy and cap."""

    strategy: str = "full"
    """Start strategy: full | lora | qlora | int8, optionally '+adam8' (8-bit AdamW, bitsandbytes) and/or
    '+gc' (gradient checkpointing), e.g. 'lora+gc' or 'full+adam8+gc'."""
    lora_rank: int = 8
    """LoRA rank r: higher = more memory and capacity."""
    lora_alpha: int = 16
    """LoRA scaling alpha (update scaled by alpha/r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA path (0 keeps runs bit-reproducible and switches continuous)."""
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Module names that get adapters (and that qlora/int8 quantize)."""
    cap_mb: float = 0.0
    """Memory cap in MiB (0 = none). Virtual on CPU (measured peak vs cap); a real allocator cap on CUDA."""
    measure_every: int = 0
    """Re-measure memory every N optimizer steps (0 = once per strategy and batch shape, then cached)."""

    def __post_init__(self) -> None:
        try:
            Strategy.parse(self.strategy)
        except ValueError as err:
            raise ConfigError(f"memory.strategy: {err}") from None
        check_range("memory.lora_rank", self.lora_rank, 1)
        check_range("memory.lora_alpha", self.lora_alpha, 1)
        check_range("memory.lora_dropout", self.lora_dropout, 0.0, 0.9)
        check_range("memory.cap_mb", self.cap_mb, 0.0)
        check_range("memory.measure_every", self.measure_every, 0)


@dataclass
class RunConfig:
    """One fine-tuning run: model, data, optimizer, memory, seed."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Base model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Fine-tuning data."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    """Memory strategy and cap."""
    seed: int = 0
    """Run seed: model init of adapters, data order, dropout."""
    device: str = "cpu"
    """cpu | cuda | auto."""
    cache_dir: str = ""
    """Where the embedded base model and tokenized data are cached ('' = $GOVGYM_CACHE or ~/.cache/govgym)."""

    def __post_init__(self) -> None:
        check_choice("device", self.device, ("cpu", "cuda", "auto"))
        check_range("seed", self.seed, 0, 2**63 - 1)
        if self.device == "cuda":
            import torch  # config validation stays torch-free otherwise

            if not torch.cuda.is_available():
                raise ConfigError(
                    "device: 'cuda' was asked for but torch sees no CUDA device; use device=cpu or auto."
                )

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Load a RunConfig from YAML (optionally under a top-level ``run:`` key) plus overrides.

        Keys the file leaves out take the dataclass defaults, which equal ``configs/default.yaml``
        (a test keeps the two identical), so an empty file is the default run.

        Raises:
            ConfigError: a key beside ``run:`` (it would be silently ignored), or any bad field.
        """

        data = load_yaml(path)
        if "run" in data:
            stray = [k for k in data if k != "run"]
            if stray:
                raise ConfigError(
                    f"config file {str(path)!r}: top-level key {stray[0]!r} sits beside 'run:' and would be "
                    f"ignored; move it under 'run:' (e.g. run: {{{stray[0]}: ...}}) or drop the 'run:' level."
                )
            data = data["run"] if data["run"] is not None else {}
            if not isinstance(data, dict):
                raise ConfigError(
                    f"config file {str(path)!r}: 'run:' must hold a mapping of RunConfig fields, got {data!r}."
                )
        return from_dict(cls, deep_merge(data, overrides or {}))


def default_cache_dir(cfg: RunConfig) -> Path:
    """The cache folder for built base models and tokenized datasets."""

    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("GOVGYM_CACHE", Path.home() / ".cache" / "govgym")).expanduser()
