"""Issue 19 item 2: decisions are logged like metrics (``deploy/report.py``).

A real tiny Trainer run with ``report_to=["tensorboard"]``: the event file TensorBoard's callback writes
holds the governor's scalars at the decision steps, equal to the decision log's; ``log_history`` has
them once per decision; the callback's own ``on_log`` does not take them for training logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import Trainer

from govgym.agents.heuristics import make_policy
from govgym.deploy.callback import GovernorCallback
from govgym.deploy.report import TrainerLog, find_trainer
from govgym.efficiency.signals import FEATURE_NAMES
from tests.conftest import pattern_data, tiny_llama
from tests.test_callback import _args


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every TensorBoard event file under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for f in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def _run(tmp_path: Path, trainer_cls=Trainer) -> tuple[Trainer, dict]:
    pytest.importorskip("tensorboard")
    data = pattern_data(32, 16, 64, seed=0).remove_columns("noise")
    held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
    log = tmp_path / "decisions.json"
    cb = GovernorCallback(
        make_policy("patience", ["continue", "stop"]), budget_steps=12, interval_steps=4, log_path=log
    )
    args = _args(tmp_path, max_steps=12, report_to=["tensorboard"])
    trainer = trainer_cls(
        tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64),
        args,
        train_dataset=data,
        eval_dataset=held,
        callbacks=[cb],
    )
    trainer.train()
    assert cb.report.trainer is trainer
    return trainer, json.loads(log.read_text())


def test_decisions_reach_tensorboard_at_the_decision_steps(tmp_path):
    trainer, log = _run(tmp_path)
    tb = scalars(tmp_path / "out")
    steps = [d["step"] for d in log["decisions"]]
    assert steps[:3] == [0, 4, 8]
    for tag, key in (
        ("train/governor/budget_frac", "budget_frac"),
        ("train/governor/eval_loss", "eval_loss"),
    ):
        assert sorted(tb[tag]) == steps, tag
        for d in log["decisions"]:
            assert tb[tag][d["step"]] == pytest.approx(d[key], rel=1e-6)
    for i, name in enumerate(FEATURE_NAMES):  # the whole observation, feature by feature
        tag = f"train/governor/obs/{name}"
        assert tb[tag][4] == pytest.approx(log["decisions"][1]["obs"][i], rel=1e-5, abs=1e-6), name
    chosen = [d["step"] for d in log["decisions"] if d["action"] in log["action_names"]]  # not 'truncated'
    assert sorted(tb["train/governor/action_index"]) == chosen and len(chosen) >= 3
    hist = [h for h in trainer.state.log_history if "governor/action" in h]
    assert [h["step"] for h in hist] == steps  # once per decision, through trainer.log
    assert [h["governor/action"] for h in hist] == [d["action"] for d in log["decisions"]]
    assert tb["train/loss"]  # the Trainer's own metrics are still there


def test_without_a_trainer_on_the_stack_the_history_gets_them_and_one_warning(caplog):
    """A custom loop driving the callback: no Trainer found, the decision goes to log_history only."""
    from transformers import TrainerState

    assert find_trainer() is None
    report, state = TrainerLog(), TrainerState()
    report.find()
    report.log(state, {"governor/action": "continue"})
    report.log(state, {"governor/action": "stop"})
    assert [h["governor/action"] for h in state.log_history] == ["continue", "stop"]
    assert report._warned
