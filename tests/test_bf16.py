"""Issue 19 item 4: under bf16 autocast (``bf16=True`` on CPU) the FLOP counts and the observation are right.

FLOPs are counted by shapes (``FlopCounterMode``), so a bf16 run's step and evaluation FLOPs equal the
fp32 run's; the observation is finite and close to fp32's (losses differ by bf16 rounding only), and the
two runs decide at the same steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from transformers import Trainer

from govgym.agents.heuristics import make_policy
from govgym.deploy.callback import GovernorCallback
from tests.conftest import pattern_data, tiny_llama
from tests.test_callback import _args


def run_flops(tmp_path: Path, bf16: bool) -> dict:
    """An 8-step run (K = 4) of the tiny Llama; its decision log."""
    data = pattern_data(32, 16, 64, seed=0).remove_columns("noise")
    held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
    log = tmp_path / "decisions.json"
    cb = GovernorCallback(
        make_policy("fixed_budget", ["continue", "stop"]), budget_steps=12, interval_steps=4, log_path=log
    )
    args = _args(tmp_path, max_steps=8, bf16=bf16)
    Trainer(
        tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64),
        args,
        train_dataset=data,
        eval_dataset=held,
        callbacks=[cb],
    ).train()
    return json.loads(log.read_text())


def test_bf16_autocast_counts_the_same_flops_and_observes_alike(tmp_path):
    fp32, bf16 = run_flops(tmp_path / "fp32", False), run_flops(tmp_path / "bf16", True)
    assert bf16["step_flops"] == fp32["step_flops"] and bf16["eval_flops"] == fp32["eval_flops"]
    assert bf16["flops"] == fp32["flops"]
    steps = [d["step"] for d in fp32["decisions"]]
    assert [d["step"] for d in bf16["decisions"]] == steps == [0, 4, 8]
    for a, b in zip(fp32["decisions"], bf16["decisions"]):
        assert all(math.isfinite(x) for x in b["obs"])
        assert b["budget_frac"] == a["budget_frac"]
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=0.02)  # bf16 rounding of the logits
        assert b["obs"] == pytest.approx(a["obs"], rel=0.1, abs=0.05)
