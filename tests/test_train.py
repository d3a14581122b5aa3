"""SB3 training: a run killed mid-way resumes from its last checkpoint (model + VecNormalize)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")
ARGS = [
    "algo=maskable_ppo",
    "n_envs=1",
    "n_steps=8",
    "checkpoint_every=8",
    "eval_every=0",
    f"instances={TINY}",
    "memo=",
]


@pytest.mark.slow
def test_training_resumes_after_kill(tmp_path):
    env = {**os.environ, "GOVGYM_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "govgym.cli", "train", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(
        [*cmd, *ARGS, "timesteps=400"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "checkpoints").glob("rl_model_16_steps.zip")):
        time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill, mid-training
    proc.wait()
    from govgym.agents.train import latest_checkpoint

    path, vecnorm, steps = latest_checkpoint(out / "checkpoints")
    assert steps >= 16 and vecnorm is not None and not (out / "final.zip").exists()
    r = subprocess.run(
        [*cmd, "--resume", *ARGS, f"timesteps={steps + 16}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    from sb3_contrib import MaskablePPO

    model = MaskablePPO.load(str(out / "final.zip"))
    assert model.num_timesteps >= steps + 16  # continued the count, not restarted
    assert (out / "vecnormalize.pkl").exists()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    # in process (a subprocess costs ~9 s of importing torch; test_cli.py runs the installed command)
    r = run_cli(
        ["train", "--out", str(tmp_path), "--resume", *ARGS],
        {"GOVGYM_CACHE": str(tmp_path / "c")},
        check=False,
    )
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
