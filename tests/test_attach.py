"""Issue 19 item 1: a GovernorCallback works the same whichever way it is attached (bad-inputs round 2, T1–T3).

``Trainer(..., callbacks=[cb])`` calls ``on_init_end``; ``trainer.add_callback(cb)`` after the Trainer is
built does not. The TrainingArguments adjustments then happen at ``on_train_begin`` (with the Trainer's
step counts recomputed), so both runs decide at the same steps and take the same decisions; the FLOP
counter measures the E_0 evaluation only, never a training step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
from torch.utils.flop_counter import FlopCounterMode
from transformers import Trainer, TrainerCallback

from govgym.agents.heuristics import make_policy
from govgym.deploy.callback import GovernorCallback
from govgym.errors import ConfigError
from tests.conftest import pattern_data
from tests.test_callback import _args, tiny_llama

NAMES = ["continue", "stop"]


class CounterProbe(TrainerCallback):
    """Records, at every step's begin and end, whether a FlopCounterMode is active."""

    def __init__(self) -> None:
        self.counted: list[int] = []

    def _check(self, state) -> None:
        if any(isinstance(m, FlopCounterMode) for m in _get_current_dispatch_mode_stack()):
            self.counted.append(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self._check(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._check(state)


def _run(tmp_path: Path, attach: str, **over) -> tuple[dict, CounterProbe]:
    data = pattern_data(32, 16, 64, seed=0).remove_columns("noise")
    held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
    model = tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64)
    log = tmp_path / attach / "decisions.json"
    cb = GovernorCallback(make_policy("patience", NAMES), budget_steps=12, interval_steps=4, log_path=log)
    probe = CounterProbe()
    args = _args(tmp_path / attach, max_steps=12, **over)
    if attach == "constructor":
        trainer = Trainer(model, args, train_dataset=data, eval_dataset=held, callbacks=[cb, probe])
    else:
        trainer = Trainer(model, args, train_dataset=data, eval_dataset=held)
        trainer.add_callback(cb)
        trainer.add_callback(probe)
    trainer.train()
    return json.loads(log.read_text()), probe


@pytest.mark.parametrize(
    "row, over",
    [
        ("T1 eval off", {}),
        (
            "T2 eval_steps=2, logging_steps=500",
            {"eval_strategy": "steps", "eval_steps": 2, "logging_steps": 500},
        ),
    ],
)
def test_add_callback_decides_as_the_constructor_path(tmp_path, row, over):
    a, probe_a = _run(tmp_path, "constructor", **over)
    b, probe_b = _run(tmp_path, "add_callback", **over)
    steps = [d["step"] for d in a["decisions"]]
    assert steps == [0, 4, 8, 12][: len(steps)] and len(steps) >= 3
    for x, y in zip(a["decisions"], b["decisions"], strict=True):
        assert (x["step"], x["action"]) == (y["step"], y["action"])
        assert x["obs"] == pytest.approx(y["obs"], rel=1e-5, abs=1e-6)  # E_0 present, lr/grad features read
    assert a["flops"] == b["flops"] and a["eval_flops"] == b["eval_flops"]
    assert probe_a.counted == [] and probe_b.counted == []  # no step runs under the FLOP counter


def test_add_callback_refuses_an_epoch_evaluation_with_the_constructor_sentence(tmp_path):
    """T3: eval_strategy='epoch' is the constructor path's one-sentence ConfigError, not a TypeError."""
    for attach in ("constructor", "add_callback"):
        with pytest.raises(ConfigError, match="eval_strategy='steps' with eval_steps dividing 4") as err:
            _run(tmp_path, attach, eval_strategy="epoch")
        assert "\n" not in str(err.value)
