"""Issue 19 item 3: a governor in TRL's ``SFTTrainer`` (prompt-completion and plain-text data).

``GovernorCallback("default")`` (the packaged governor) in a plain ``SFTTrainer``; ``governed(SFTTrainer)``
with reprune, base switches and the noise scale, as ``GovernedTrainer`` has them. Tiny real models and a
word-level tokenizer built in memory (offline).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from govgym.deploy.callback import GovernorCallback
from govgym.deploy.trainer import GovernedMixin, governed
from govgym.errors import ConfigError
from tests.conftest import tiny_llama
from tests.test_callback import Scripted

trl = pytest.importorskip("trl")

WORDS = [f"w{i}" for i in range(40)]


def word_tokenizer():
    """A whitespace word-level tokenizer over WORDS (+ pad, eos, unk): 43 ids, fits the tiny Llama's 64."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def sft_rows(n: int, seed: int, kind: str) -> list[dict[str, str]]:
    """Arithmetic word progressions: 4 words of prompt, 8 of completion (or the 12 as one text)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        s, d = int(rng.integers(0, 40)), int(rng.integers(1, 4))
        seq = [WORDS[(s + d * j) % 40] for j in range(12)]
        prompt, completion = " ".join(seq[:4]), " " + " ".join(seq[4:])
        rows.append(
            {"text": prompt + completion} if kind == "text" else {"prompt": prompt, "completion": completion}
        )
    return rows


def sft_trainer(tmp_path: Path, kind: str, callbacks: list, cls=None, max_steps: int = 12, **over):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    kw = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        max_length=32,
    )
    kw.update(over)
    return (cls or SFTTrainer)(
        model=tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64),
        args=SFTConfig(**kw),
        train_dataset=Dataset.from_list(sft_rows(64, 0, kind)),
        eval_dataset=Dataset.from_list(sft_rows(16, 1, kind)),
        processing_class=word_tokenizer(),
        callbacks=callbacks,
    )


@pytest.mark.parametrize("kind", ["prompt-completion", pytest.param("text", marks=pytest.mark.slow)])
def test_packaged_default_governs_an_sft_trainer(tmp_path, kind):
    log = tmp_path / "decisions.json"
    cb = GovernorCallback("default", budget_steps=12, interval_steps=4, log_path=log)
    trainer = sft_trainer(tmp_path, kind, [cb])
    trainer.train()
    out = json.loads(log.read_text())
    rows = out["decisions"]
    assert [r["step"] for r in rows] == [0, 4, 8, 12][: len(rows)] and len(rows) >= 2
    assert all(math.isfinite(r["eval_loss"]) for r in rows)
    assert math.isfinite(rows[1]["train_loss"])  # the SFT loss reached the observation through on_log
    assert (
        rows[0]["strategy"] == "full+gc"
    )  # SFTConfig turns gradient checkpointing on by default: read as such
    assert out["step_flops"]["full+gc"] > 0 and out["eval_flops"] > 0
    assert cb.governor.policy.meta["provenance"]["shipped_as"] == "default" and cb.report.trainer is trainer
    assert [h["governor/action"] for h in trainer.state.log_history if "governor/action" in h] == [
        r["action"] for r in rows
    ]


def test_governed_sft_trainer_reprunes_switches_and_reads_the_noise_scale(tmp_path):
    from trl import SFTTrainer

    cls = governed(SFTTrainer)
    assert issubclass(cls, GovernedMixin) and issubclass(cls, SFTTrainer) and governed(cls) is cls
    assert governed(SFTTrainer) is cls  # one class per trainer class
    names = ["continue", "reprune_hardest", "switch:lora", "switch:full", "stop"]
    gov = Scripted(names, ["continue", "reprune_hardest", "switch:lora", "switch:full"])
    log = tmp_path / "decisions.json"
    cb = GovernorCallback(gov, budget_steps=40, interval_steps=4, log_path=log, reprune_fraction=0.25)
    t = sft_trainer(
        tmp_path,
        "prompt-completion",
        [cb],
        cls=cls,
        max_steps=16,
        max_grad_norm=1.0,
        gradient_checkpointing=False,
    )
    t.train()
    rows = json.loads(log.read_text())["decisions"]
    assert [r["action"] for r in rows[:4]] == ["continue", "reprune_hardest", "switch:lora", "switch:full"]
    assert [r["strategy"] for r in rows[:5]] == ["full", "full", "full", "lora", "full"]  # gc off below
    assert [e["event"] for e in t.events] == ["reprune_hardest", "switch_full_to_lora", "switch_lora_to_full"]
    assert t.kept_fraction == pytest.approx(
        0.75, abs=0.02
    )  # 16 of 64 rows seen by step 4: all of them dropped
    assert np.isfinite(t.example_loss).sum() >= 16  # per-example losses recorded from SFT's own loss call
    assert all(math.isfinite(r["grad_noise_scale"]) for r in rows[1:])  # pre-clip gradients read


def test_governed_refuses_what_is_not_a_trainer():
    with pytest.raises(ConfigError, match="Trainer subclass"):
        governed(dict)


def test_the_example_runs_as_a_user_runs_it(tmp_path):
    """``python examples/sft_default_governor.py OUT`` in a fresh process: exit 0, the shipped policy named."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, str(root / "examples" / "sft_default_governor.py"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(mbrl_p0), ended:" in r.stdout and "train/governor/" in r.stdout
