"""``govgym deploy`` on a tiny embedded default: three real Trainer runs, their table and files.

The command runs in process (``tests.conftest.run_cli``; a subprocess costs ~9 s of importing torch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import TINY_EMBEDDED, run_cli

TINY = [
    *(f"model.{k}={v}" for k, v in TINY_EMBEDDED["model"].items()),
    *(f"data.{k}={v}" for k, v in TINY_EMBEDDED["data"].items()),
    "optim.batch_size=8",
    "optim.warmup_steps=1",
]


@pytest.fixture(scope="module")
def env(shared_cache) -> dict[str, str]:
    return {**os.environ, "GOVGYM_CACHE": str(shared_cache)}


def govgym(args: list[str], env: dict[str, str]) -> SimpleNamespace:
    return run_cli(args, env, check=False)


def test_deploy_artifact_vs_fixed_vs_early_stopping(env, tmp_path: Path):
    art = tmp_path / "gov"
    r = govgym(["export", "marginal_gain:kappa=4", "-o", str(art)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "deploy"
    r = govgym(
        [
            "deploy",
            f"governor={art}",
            "budget_epochs=2",
            "interval=2",
            "patience=1",
            "--out",
            str(out),
            *TINY,
        ],
        env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "deploy.json").read_text())
    rows = {row["run"]: row for row in doc["rows"]}
    assert list(rows) == ["governor (gov)", "fixed budget", "EarlyStoppingCallback"]
    for name in rows:
        assert name in r.stdout  # the table
    fixed = rows["fixed budget"]
    # 64 train rows / batch 8 = 8 steps per epoch; 2 epochs = 16 steps: the fixed run spends the budget
    assert doc["meta"]["budget_steps"] == 16 and fixed["stop_step"] == 16
    assert fixed["flops_vs_fixed"] == 1.0 and fixed["flops_used"] >= doc["meta"]["budget_flops"]
    for row in rows.values():
        assert row["flops_used"] <= fixed["flops_used"] + 1 and row["stop_step"] <= 16
        assert row["best_eval_loss"] <= row["final_eval_loss"]
    # the fixed run reaches its own final quality no later than its end
    assert 0 < fixed["flops_to_equal_quality"] <= fixed["flops_used"]
    logs = json.loads((out / "decisions.json").read_text())["runs"]
    assert list(logs) == list(rows)
    for name, decisions in logs.items():
        assert decisions[0]["step"] == 0 and all(d["step"] % 2 == 0 for d in decisions)
        assert decisions[-1]["step"] <= rows[name]["stop_step"]
    assert logs["fixed budget"][-1]["action"] == "truncated"
    assert (out / "deploy.csv").read_text().count("\n") == 4
    assert (out / "deploy.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "governor, needle",
    [("/nonexistent/governor", "governor.json"), ("pateince", "pateince")],
)
def test_deploy_bad_governor_is_one_sentence(env, tmp_path: Path, governor: str, needle: str):
    r = govgym(["deploy", f"governor={governor}", "--out", str(tmp_path), *TINY], env)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("govgym deploy: error:") and needle in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "deploy.csv").exists()


@pytest.mark.slow  # a second full deploy (3 Trainer runs); the fast tier's deploy: the test above
def test_deploy_early_stopping_stops_where_patience_heuristic_does(env, tmp_path: Path):
    """A high constant LR makes eval loss rise early: EarlyStoppingCallback(patience=1) stops before the
    budget, at the same step as the patience heuristic with patience=1, both with the FLOPs counted alike."""
    out = tmp_path / "deploy"
    args = ["deploy", "governor=patience:patience=1", "budget_epochs=3", "interval=2", "patience=1"]
    lr = ["optim.lr=0.05", "optim.schedule=constant"]
    r = govgym([*args, *lr, "--out", str(out), *TINY], env)
    assert r.returncode == 0, r.stderr[-3000:]
    gov, fixed, esc = json.loads((out / "deploy.json").read_text())["rows"]
    assert fixed["stop_step"] == 24 and fixed["ended"] == "truncated"
    assert esc["ended"] == "trainer" and esc["stop_step"] < 24 and gov["ended"] == "stop"
    assert esc["stop_step"] == gov["stop_step"] and esc["flops_used"] == gov["flops_used"]
    assert esc["flops_vs_fixed"] < 1 and esc["best_eval_loss"] < esc["final_eval_loss"]
