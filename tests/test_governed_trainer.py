"""GovernedTrainer: per-example losses from the training passes, reprune through its own sampler, governed reprunes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from govgym.deploy.callback import GovernorCallback
from govgym.deploy.trainer import INDEX_COLUMN, GovernedTrainer, KeptSampler
from govgym.errors import ConfigError
from tests.conftest import pattern_data, tiny_llama
from tests.test_callback import Scripted, _args

VOCAB, SEQ = 64, 16


def _model():
    return tiny_llama(vocab=VOCAB, hidden=32, layers=2, heads=2, inter=64)


def _data(n: int = 32, noise_rate: float = 0.25, seed: int = 0):
    return pattern_data(n, SEQ, VOCAB, noise_rate=noise_rate, seed=seed)


def _own_losses(model, data) -> np.ndarray:
    """The model's own loss on each example alone (its mean over the example's label tokens)."""
    model.eval()
    with torch.no_grad():
        out = [
            float(model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss)
            for r in data
        ]
    return np.asarray(out, dtype=np.float32)


def test_recorded_losses_are_the_models_per_example_losses(tmp_path: Path):
    """With lr=0 the model is fixed: every recorded loss equals the model's own loss on that example."""
    data = _data()
    t = GovernedTrainer(
        _model(), _args(tmp_path, max_steps=10, learning_rate=0.0, warmup_steps=0), train_dataset=data
    )
    t.train()
    seen = np.isfinite(t.example_loss)
    assert seen.sum() == 32  # 10 steps x 4 rows > one pass over 32 rows
    own = _own_losses(t.model, data)
    np.testing.assert_allclose(t.example_loss[seen], own[seen], rtol=1e-5, atol=1e-5)
    assert INDEX_COLUMN not in data.column_names  # the user's dataset is not changed


def test_optimized_loss_is_unchanged_by_recording(tmp_path: Path):
    """The same sampler in a plain Trainer logs the same losses and grad norms: recording changes no gradient."""
    from transformers import Trainer

    class SameOrder(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return KeptSampler(len(self.train_dataset), self.args.seed)

    logs = []
    for cls in (SameOrder, GovernedTrainer):
        t = cls(_model(), _args(tmp_path, max_steps=6, logging_steps=1), train_dataset=_data())
        t.train()
        logs.append([(r["loss"], r["grad_norm"]) for r in t.state.log_history if "loss" in r])
    assert len(logs[0]) == 6
    np.testing.assert_allclose(np.asarray(logs[1]), np.asarray(logs[0]), rtol=1e-6)


def test_reprune_hardest_drops_noise_and_next_epoch_uses_kept_set(tmp_path: Path):
    from transformers import TrainerCallback

    data = _data(n=40, noise_rate=0.2, seed=3)
    n_noise = int(np.sum(data["noise"]))
    assert 4 <= n_noise <= 14
    drawn: dict[int, list[int]] = {}

    class Recording(GovernedTrainer):
        def compute_loss(self, model, inputs, *a, **kw):
            drawn.setdefault(int(self.state.epoch or 0), []).extend(inputs[INDEX_COLUMN].tolist())
            return super().compute_loss(model, inputs, *a, **kw)

    class RepruneAt(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kw):
            if round(state.epoch) == 6:
                trainer.reprune(0.2, "hardest")

    trainer = Recording(
        _model(),
        _args(tmp_path, max_steps=-1, num_train_epochs=7, learning_rate=1e-2),
        train_dataset=data,
        callbacks=[RepruneAt()],
    )
    trainer.train()
    (ev,) = trainer.events
    assert ev["event"] == "reprune_hardest" and ev["dropped"] == 8 and ev["kept"] == 32
    noise = np.asarray(data["noise"])
    dropped = np.asarray(ev["dropped_indices"])
    assert noise[dropped].mean() >= 0.75, (noise[dropped], n_noise)  # mostly the injected noise rows
    # the epoch after the reprune draws only kept rows, as many as an epoch had
    last = drawn[max(drawn)]
    assert len(last) == 40 and not set(last) & set(dropped.tolist())
    assert set(last) == set(trainer.kept_indices.tolist())
    assert any(r.get("event") == "reprune_hardest" for r in trainer.state.log_history)


def test_reprune_errors_and_unseen_rows_kept(tmp_path: Path):
    t = GovernedTrainer(_model(), _args(tmp_path, max_steps=1), train_dataset=_data())
    with pytest.raises(ConfigError, match="mode must be one of"):
        t.reprune(0.2, "random")
    with pytest.raises(ConfigError, match=r"fraction must be a number in \(0, 1\)"):
        t.reprune(1.5)
    ev = t.reprune(0.5)  # nothing recorded yet: nothing to rank, nothing dropped
    assert ev["dropped"] == 0 and t.kept_fraction == 1.0
    with pytest.raises(ConfigError, match="already has a column 'govgym_index'"):
        GovernedTrainer(_model(), _args(tmp_path), train_dataset=_data().add_column(INDEX_COLUMN, [0] * 32))


def test_governor_callback_reprunes_inside_governed_trainer(tmp_path: Path):
    names = ["continue", "reprune_hardest", "reprune_easiest", "stop"]
    gov = Scripted(names, ["continue", "continue", "reprune_hardest"])
    log = tmp_path / "decisions.json"
    cb = GovernorCallback(gov, budget_steps=30, interval_steps=5, log_path=log, reprune_fraction=0.25)
    held = pattern_data(8, SEQ, VOCAB, seed=1).remove_columns("noise")
    t = GovernedTrainer(
        _model(), _args(tmp_path, max_steps=20), train_dataset=_data(), eval_dataset=held, callbacks=[cb]
    )
    assert cb.trainer is t
    t.train()
    assert gov.seen[0] == [True, True, True, True]  # reprunes unmasked inside a GovernedTrainer
    rows = json.loads(log.read_text())["decisions"]
    assert [r["action"] for r in rows[:3]] == ["continue", "continue", "reprune_hardest"]
    assert rows[2]["trainer_event"]["dropped"] == 8 and rows[2]["trainer_event"]["kept"] == 24
    assert t.kept_fraction == 0.75 and len(t.events) == 1 and t.events[0]["step"] == 10
    assert json.loads(log.read_text())["trainer_events"] == t.events
    # the observation after the reprune sees the kept fraction (the env's kept_fraction feature)
    from govgym.efficiency.signals import FEATURE_NAMES

    kept = FEATURE_NAMES.index("data_kept")
    assert rows[2]["obs"][kept] == 1.0 and rows[3]["obs"][kept] == pytest.approx(0.75)


def test_plain_trainer_masks_reprune(tmp_path: Path):
    from transformers import Trainer

    names = ["continue", "reprune_hardest", "reprune_easiest", "stop"]
    gov = Scripted(names, [])
    cb = GovernorCallback(gov, budget_steps=10, interval_steps=5)
    held = pattern_data(8, SEQ, VOCAB, seed=1).remove_columns("noise")
    data = _data().remove_columns("noise")
    Trainer(
        _model(), _args(tmp_path, max_steps=5), train_dataset=data, eval_dataset=held, callbacks=[cb]
    ).train()
    assert gov.seen[0] == [True, False, False, True]


def test_switch_full_lora_full_in_place(tmp_path: Path):
    """full -> lora at step 4 -> full at step 8: the optimizer follows the trainable set, the base is frozen
    while LoRA trains, the LR schedule keeps its position, and the merged model keeps the adapters' learning."""
    from transformers import TrainerCallback

    seen: dict[str, object] = {}

    def q_weight():  # the frozen base weight of one adapted layer (under LoRA)
        (w,) = [
            p
            for n, p in trainer.model.named_parameters()
            if n.endswith("layers.0.self_attn.q_proj.base_layer.weight")
        ]
        return w.detach().clone()

    class Switch(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 4:
                seen["full_params"] = sum(p.numel() for p in trainer.model.parameters())
                trainer.switch_base("lora")
                opt = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
                seen["opt_is_trainable"] = opt == {
                    id(p) for p in trainer.model.parameters() if p.requires_grad
                }
                seen["q4"] = q_weight()
            elif state.global_step == 8:
                seen["q8"] = q_weight()
                seen["eval_lora"] = float(_eval(trainer.model))
                trainer.switch_base("full")
                seen["eval_full"] = float(_eval(trainer.model))

    held = pattern_data(8, SEQ, VOCAB, seed=1)

    def _eval(m):
        with torch.no_grad():
            return m(input_ids=torch.tensor(held["input_ids"]), labels=torch.tensor(held["labels"])).loss

    args = _args(tmp_path, max_steps=12, logging_steps=1)
    trainer = GovernedTrainer(_model(), args, train_dataset=_data(), callbacks=[Switch()])
    trainer.train()
    lora_ev, full_ev = trainer.events
    assert lora_ev["event"] == "switch_full_to_lora" and full_ev["event"] == "switch_lora_to_full"
    assert 0 < lora_ev["trainable_after"] < lora_ev["trainable_before"] / 2  # r=8 on a 32-wide model
    assert full_ev["trainable_after"] == seen["full_params"]
    assert seen["opt_is_trainable"]
    assert torch.equal(seen["q4"], seen["q8"])  # the base did not train under LoRA
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert not lora_b  # merged and unloaded
    assert seen["eval_full"] == pytest.approx(seen["eval_lora"], rel=1e-5)  # merged = base + adapters
    assert trainer.base == "full" and not hasattr(trainer.model, "peft_config")
    # the LR schedule is the one of a run without switches
    plain = GovernedTrainer(_model(), _args(tmp_path, max_steps=12, logging_steps=1), train_dataset=_data())
    plain.train()
    lrs = [[r["learning_rate"] for r in t.state.log_history if "loss" in r] for t in (trainer, plain)]
    assert len(lrs[0]) == 12 and lrs[0] == pytest.approx(lrs[1])
    assert all(np.isfinite(r["loss"]) for r in trainer.state.log_history if "loss" in r)


def test_governor_callback_switches_base_inside_governed_trainer(tmp_path: Path):
    names = ["continue", "stop", "switch:lora", "switch:full"]
    gov = Scripted(names, ["continue", "switch:lora", "switch:full"])
    log = tmp_path / "decisions.json"
    cb = GovernorCallback(gov, budget_steps=40, interval_steps=4, log_path=log)
    held = pattern_data(8, SEQ, VOCAB, seed=1).remove_columns("noise")
    t = GovernedTrainer(
        _model(), _args(tmp_path, max_steps=16), train_dataset=_data(), eval_dataset=held, callbacks=[cb]
    )
    t.train()
    assert gov.seen[0] == [True, True, True, False]  # full: switch to LoRA allowed, to full not
    assert gov.seen[2] == [True, True, False, True]  # LoRA: the reverse
    out = json.loads(log.read_text())
    rows = out["decisions"]
    assert [r["action"] for r in rows[:3]] == ["continue", "switch:lora", "switch:full"]
    assert [r["strategy"] for r in rows[:4]] == ["full", "full", "lora", "full"]
    assert rows[1]["trainer_event"]["event"] == "switch_full_to_lora"
    assert out["step_flops"]["lora"] < out["step_flops"]["full"]  # measured again for the new strategy
    assert [e["event"] for e in t.events] == ["switch_full_to_lora", "switch_lora_to_full"]
    assert t.base == "full"
    # a plain Trainer cannot switch the base: masked
    from transformers import Trainer

    gov2 = Scripted(names, [])
    cb2 = GovernorCallback(gov2, budget_steps=8, interval_steps=4)
    Trainer(
        _model(),
        _args(tmp_path, max_steps=4),
        train_dataset=_data().remove_columns("noise"),
        eval_dataset=held,
        callbacks=[cb2],
    ).train()
    assert gov2.seen[0] == [True, True, False, False]


def test_classification_losses_are_per_row_cross_entropy(tmp_path: Path):
    """Sequence classification: the recorded loss of a row is the model's own loss on that row alone."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=3,
        pad_token_id=0,
    )
    model = LlamaForSequenceClassification(cfg)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, VOCAB, (16, SEQ))
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": rng.integers(0, 3, 16).tolist()})
    t = GovernedTrainer(
        model, _args(tmp_path, max_steps=4, learning_rate=0.0, warmup_steps=0), train_dataset=data
    )
    t.train()
    assert np.isfinite(t.example_loss).all()
    model.eval()
    with torch.no_grad():
        own = [
            float(model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss)
            for r in data
        ]
    np.testing.assert_allclose(t.example_loss, own, rtol=1e-5, atol=1e-5)


def test_imports_and_switches_without_gymnasium_or_sb3(tmp_path: Path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('gymnasium', 'stable_baselines3', 'sb3_contrib'): sys.modules[m] = None\n"
        "from govgym.deploy.trainer import GovernedTrainer\n"
        "from transformers import TrainingArguments\n"
        "from tests.conftest import pattern_data, tiny_llama\n"
        f"args = TrainingArguments(output_dir={str(tmp_path)!r}, use_cpu=True, report_to=[])\n"
        "t = GovernedTrainer(tiny_llama(vocab=64), args, train_dataset=pattern_data(8, 8, 64))\n"
        "assert t.switch_base('lora')['event'] == 'switch_full_to_lora'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_reprune_mid_epoch_takes_effect_at_the_next_step(tmp_path: Path):
    from transformers import TrainerCallback

    drawn: list[tuple[int, list[int]]] = []

    class Recording(GovernedTrainer):
        def compute_loss(self, model, inputs, *a, **kw):
            drawn.append((self.state.global_step, inputs[INDEX_COLUMN].tolist()))
            return super().compute_loss(model, inputs, *a, **kw)

    class RepruneAt5(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                t.reprune(0.5, "easiest")

    t = Recording(_model(), _args(tmp_path, max_steps=10), train_dataset=_data(), callbacks=[RepruneAt5()])
    t.train()
    dropped = set(t.events[0]["dropped_indices"])
    assert len(dropped) == 16
    assert any(set(idx) & dropped for s, idx in drawn if s < 5)  # they were being trained on
    assert not any(set(idx) & dropped for s, idx in drawn if s >= 5)  # from the next step on, never


# ---------------------------------------------------------------------- resume from a Trainer checkpoint
RESUME_NAMES = ["continue", "stop", "reprune_hardest", "switch:lora", "switch:full", "switch:qlora"]
NAMES_CS = ["continue", "stop"]


def _governed(tmp_path: Path, script: list[str], *, k: int = 3, halt_at: int | None = None, **over):
    """A governed 12-step run (K=3, a checkpoint every 7 steps, clipping on); ``halt_at`` interrupts it."""
    from transformers import TrainerCallback

    gov = Scripted(RESUME_NAMES, script)
    cb = GovernorCallback(
        gov, budget_steps=40, interval_steps=k, log_path=tmp_path / "d.json", reprune_fraction=0.25
    )
    held = pattern_data(8, SEQ, VOCAB, seed=1).remove_columns("noise")
    kw = dict(max_steps=12, save_strategy="steps", save_steps=7, logging_steps=1, max_grad_norm=0.2)
    kw.update(over)
    t = GovernedTrainer(
        _model(), _args(tmp_path, **kw), train_dataset=_data(), eval_dataset=held, callbacks=[cb]
    )

    class Halt(TrainerCallback):  # a kill right after the checkpoint
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == halt_at:
                control.should_training_stop = True

    if halt_at is not None:
        t.add_callback(Halt())
    return t, cb


def test_resume_restores_governor_and_trainer_state_exactly(tmp_path: Path):
    """Interrupted at checkpoint-7 and resumed, a governed run makes the same decisions as the uninterrupted run.

    Checkpoint-7 is mid-interval (K=3: the noise interval and the logs of step 7 are in progress),
    mid-epoch (8 steps per epoch: the loader drew step 8's batch already), after a switch to LoRA
    (the base trained fully for 3 steps is not what the script loads) and a reprune. Compared, all
    exact: every decision row (step, FLOPs used, budget fraction, eval and train loss, action, strategy,
    noise scale, observation, mask), the kept set, every per-example loss and its step, the trainer's
    events, the final eval loss. (A resume with both restores disabled differs from step 9 on.)
    """
    script = ["continue", "switch:lora", "reprune_hardest", "continue"]
    whole, _ = _governed(tmp_path / "a", script)
    whole.train()
    cut, _ = _governed(tmp_path / "b", script, halt_at=7)
    cut.train()
    ckpt = tmp_path / "b" / "out" / "checkpoint-7"
    saved = json.loads((ckpt / "trainer_state.json").read_text())["stateful_callbacks"]
    json.dumps(saved, allow_nan=False)  # strict JSON: nothing pickled, no NaN literals
    assert saved["GovernedTrainerState"]["attributes"]["saved"]["base"] == "lora"
    assert (ckpt / "govgym_trainer.safetensors").is_file()  # base weights under the adapters, noise sums
    resumed, cb = _governed(tmp_path / "b", script)
    resumed.train(resume_from_checkpoint=str(ckpt))
    a = json.loads((tmp_path / "a" / "d.json").read_text())
    b = json.loads((tmp_path / "b" / "d.json").read_text())
    assert [r["action"] for r in a["decisions"]] == script + ["continue"]
    assert b["decisions"] == a["decisions"]
    assert a["decisions"][3]["grad_noise_scale"] > 0  # the interval across the checkpoint is estimated
    assert b["flops"] == a["flops"] and b["flops_restart"] == a["eval_flops"] > 0  # the resume's E re-run
    assert resumed.base == "lora" and resumed.events == whole.events
    np.testing.assert_array_equal(resumed.kept_indices, whole.kept_indices)
    np.testing.assert_array_equal(resumed.example_loss, whole.example_loss)
    np.testing.assert_array_equal(resumed.example_step, whole.example_step)
    ev = [[r["eval_loss"] for r in t.state.log_history if "eval_loss" in r][-1] for t in (whole, resumed)]
    assert ev[0] == ev[1]


def test_resume_refuses_a_quantized_checkpoint_and_rebuilt_object_governor(tmp_path: Path):
    """A checkpoint saved under QLoRA cannot be rebuilt exactly: refused with a sentence. A governor
    object cannot be rebuilt by restore_callback_states_from_checkpoint=True: refused likewise."""
    cut, _ = _governed(tmp_path, ["continue", "switch:qlora"], k=2, halt_at=2, save_steps=2, max_steps=4)
    cut.train()
    ckpt = str(tmp_path / "out" / "checkpoint-2")
    again, _ = _governed(tmp_path, [], k=2, max_steps=4)
    with pytest.raises(ConfigError, match="switched to qlora .* cannot be rebuilt exactly"):
        again.train(resume_from_checkpoint=ckpt)
    plain, _ = _governed(tmp_path / "p", [], k=2, halt_at=2, save_steps=2, max_steps=4)
    plain.train()
    rebuilt, _ = _governed(tmp_path / "p", [], k=2, max_steps=4, restore_callback_states_from_checkpoint=True)
    with pytest.raises(ConfigError, match="restore_callback_states_from_checkpoint=False"):
        rebuilt.train(resume_from_checkpoint=True)


# ---------------------------------------------------------------------- QLoRA / int8 switches
def test_governor_switches_to_qlora_and_int8_in_place(tmp_path: Path):
    """full -> qlora -> int8 -> full, each in place by the governor: bitsandbytes layers on the targets, the
    optimizer over the adapters only, FLOPs measured per strategy, the function kept across each switch."""
    import bitsandbytes as bnb

    names = ["continue", "stop", "switch:full", "switch:qlora", "switch:int8"]
    gov = Scripted(names, ["switch:qlora", "switch:int8", "switch:full"])
    log = tmp_path / "d.json"
    cb = GovernorCallback(gov, budget_steps=40, interval_steps=2, log_path=log)
    held = pattern_data(8, SEQ, VOCAB, seed=1).remove_columns("noise")
    seen: dict[str, object] = {}
    from transformers import TrainerCallback

    class Look(TrainerCallback):  # after the decision at step 2 (under qlora since step 0)
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 1:
                m = t.model
                seen["nf4"] = sum(isinstance(x, bnb.nn.Linear4bit) for x in m.modules())
                opt = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
                seen["opt"] = opt == {id(p) for p in m.parameters() if p.requires_grad}
                seen["lora_only"] = all("lora_" in n for n, p in m.named_parameters() if p.requires_grad)

    t = GovernedTrainer(
        _model(),
        _args(tmp_path, max_steps=6),
        train_dataset=_data(),
        eval_dataset=held,
        callbacks=[cb, Look()],
    )
    t.train()
    out = json.loads(log.read_text())
    rows = out["decisions"]
    assert [r["action"] for r in rows[:3]] == ["switch:qlora", "switch:int8", "switch:full"]
    assert [r["strategy"] for r in rows] == ["full", "qlora", "int8", "full"]
    assert gov.seen[0] == [True, True, False, True, True]  # every base reachable inside a GovernedTrainer
    assert [e["event"] for e in t.events] == [
        "switch_full_to_qlora",
        "switch_qlora_to_int8",
        "switch_int8_to_full",
    ]
    assert seen == {"nf4": 14, "opt": True, "lora_only": True}  # the 7 projections (MemoryConfig) x 2 layers
    assert set(out["step_flops"]) == {"full", "qlora", "int8"}
    assert t.base == "full" and not any(isinstance(x, bnb.nn.Linear8bitLt) for x in t.model.modules())
    # quantizing changes the function by rounding only: the eval loss moves little at each switch
    ev = [r["eval_loss"] for r in rows]
    assert all(np.isfinite(ev)) and max(abs(a - b) for a, b in zip(ev, ev[1:])) < 0.1
    with pytest.raises(ConfigError, match="one of .*'qlora', 'int8'"):
        t.switch_base("lora8")


# ---------------------------------------------------------------------- gradient noise scale
def test_noise_scale_matches_the_envs_definition_under_clipping(tmp_path: Path):
    """B_simple in the decision log = the env's estimate (efficiency.run.noise_estimates, EMA 0.5 of |G|²
    and tr Σ) recomputed here from the pre-clip gradients, which the test rebuilds from the clipped ones
    the optimizer sees (clipping is on and active: pre = clipped · (|g| + 1e-6) / max_norm)."""
    from transformers import TrainerCallback

    from govgym.efficiency.run import noise_estimates
    from govgym.efficiency.signals import FEATURE_NAMES

    max_norm, k, bs = 0.05, 3, 4
    grads: list[list[torch.Tensor]] = []
    norms: list[float] = []

    class Record(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            grads.append([p.grad.detach().clone() for p in model.parameters() if p.requires_grad])

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "grad_norm" in logs:
                norms.append(float(logs["grad_norm"]))

    log = tmp_path / "d.json"
    cb = GovernorCallback(Scripted(NAMES_CS, []), budget_steps=40, interval_steps=k, log_path=log)
    held = pattern_data(8, SEQ, VOCAB, seed=1).remove_columns("noise")
    t = GovernedTrainer(
        _model(),
        _args(tmp_path, max_steps=9, logging_steps=1, max_grad_norm=max_norm),
        train_dataset=_data(),
        eval_dataset=held,
        callbacks=[cb, Record()],
    )
    t.train()
    assert min(norms) > max_norm  # clipping acted on every step
    pre = [[g * ((n + 1e-6) / max_norm) for g in gs] for gs, n in zip(grads, norms)]
    want, ema = [float("nan")], None  # step 0: no interval
    for s in range(0, len(pre), k):
        small = float(np.mean(np.asarray(norms[s : s + k], dtype=np.float32) ** 2))
        total = [sum(x) for x in zip(*pre[s : s + k])]
        big = float(sum((g.float() ** 2).sum() for g in total)) / k**2
        g2, trace = noise_estimates(small, big, bs, k * bs)
        ema = (g2, trace) if ema is None else (0.5 * ema[0] + 0.5 * g2, 0.5 * ema[1] + 0.5 * trace)
        want.append(max(ema[1], 0.0) / ema[0] if ema[0] > 0 else float("nan"))
    rows = json.loads(log.read_text())["decisions"]
    got = [r["grad_noise_scale"] for r in rows]
    assert got[0] is None and len(got) == 4
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-4)
    i = FEATURE_NAMES.index("log_noise_scale")
    assert all(r["obs"][i] != 0 for r in rows[1:])
    # a plain Trainer has no pre-clip gradients to give: the feature reads 0 there
    from transformers import Trainer

    cb2 = GovernorCallback(
        Scripted(NAMES_CS, []), budget_steps=40, interval_steps=k, log_path=tmp_path / "p.json"
    )
    Trainer(
        _model(),
        _args(tmp_path, max_steps=3, logging_steps=1),
        train_dataset=_data().remove_columns("noise"),
        eval_dataset=held,
        callbacks=[cb2],
    ).train()
    assert [r["obs"][i] for r in json.loads((tmp_path / "p.json").read_text())["decisions"]] == [0.0, 0.0]
