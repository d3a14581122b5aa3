"""TRL's SFTTrainer with the packaged default governor, decisions in TensorBoard (issue 19's must-show).

Run:  python examples/sft_default_governor.py OUT_DIR      (~20 s on 2 CPU cores; needs trl and tensorboard)

A tiny Llama (2 layers, hidden 32) and a word-level tokenizer built in memory, prompt-completion data of
word progressions (4 words of prompt, 8 of completion); 64 train rows, 16 held out; batch 4, 24 steps at
most. The one governor line is ``GovernorCallback("default", budget_steps=24, interval_steps=4)``. Prints
the decision log and the ``train/governor/*`` scalars read back from TensorBoard's event file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from govgym.deploy.callback import GovernorCallback

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/sft_default")
words = [f"w{i}" for i in range(40)]
vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def rows(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n):
        s, d = int(rng.integers(0, 40)), int(rng.integers(1, 4))
        seq = [words[(s + d * j) % 40] for j in range(12)]
        data.append({"prompt": " ".join(seq[:4]), "completion": " " + " ".join(seq[4:])})
    return Dataset.from_list(data)


torch.manual_seed(0)
model = LlamaForCausalLM(
    LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
)
args = SFTConfig(
    output_dir=str(out),
    max_steps=24,
    per_device_train_batch_size=4,
    per_device_eval_batch_size=8,
    learning_rate=3e-3,
    report_to=["tensorboard"],
    use_cpu=True,
    save_strategy="no",
    seed=0,
    max_length=32,
    disable_tqdm=True,
)
governor = GovernorCallback("default", budget_steps=24, interval_steps=4, log_path=out / "decisions.json")
trainer = SFTTrainer(
    model=model,
    args=args,
    train_dataset=rows(64, 0),
    eval_dataset=rows(16, 1),
    processing_class=tok,
    callbacks=[governor],
)
trainer.train()

log = json.loads((out / "decisions.json").read_text())
shipped = getattr(governor.governor, "policy", governor.governor)  # a learned default runs behind the shield
print(f"\ngovernor: {log['governor']} ({shipped.meta['provenance']['policy']}), ended: {log['ended']}")
print("step  action     budget_frac  eval_loss  train_loss  strategy")
for d in log["decisions"]:
    print(
        f"{d['step']:>4}  {d['action']:<9}  {d['budget_frac']:>11.3f}  {d['eval_loss']:>9.4f}  "
        f"{d['train_loss']:>10.4f}  {d['strategy']}"
    )

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

print("\nTensorBoard scalars (train/governor/*, step: value):")
for f in sorted(out.rglob("events.out.tfevents.*")):
    acc = EventAccumulator(str(f))
    acc.Reload()
    for tag in sorted(t for t in acc.Tags()["scalars"] if "governor/" in t and "/obs/" not in t):
        print(f"  {tag}: " + ", ".join(f"{e.step}: {e.value:.4g}" for e in acc.Scalars(tag)))
    obs = sorted(t for t in acc.Tags()["scalars"] if "/obs/" in t)
    print(
        f"  + {len(obs)} observation features as train/governor/obs/<feature>, e.g. "
        + "; ".join(
            f"{t.rsplit('/', 1)[1]} " + ", ".join(f"{e.step}: {e.value:.3g}" for e in acc.Scalars(t))
            for t in obs[:2]
        )
    )
