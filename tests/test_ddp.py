"""Issue 19 item 4: two processes (``torchrun --nproc_per_node 2``, CPU, gloo) take one decision, log once.

The run (``tests/ddp_script.py``): each rank's decisions, observations and FLOP counts are equal; the
observation's batch is the global one (4 per device x 2 processes); FLOPs are global (2 x one process's
measured step); only rank 0 wrote its decision log.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_take_the_same_decisions_and_rank0_writes_the_log(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(ROOT / "tests" / "ddp_script.py"),
        str(tmp_path),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    a, b = ranks
    assert a["world"] == b["world"] == 2 and a["batch_size"] == b["batch_size"] == 4 * 2
    assert a["decisions"] == b["decisions"] and len(a["decisions"]) >= 2
    assert a["obs"] == b["obs"] and a["flops"] == b["flops"]
    assert (tmp_path / "decisions_rank0.json").is_file() and not (tmp_path / "decisions_rank1.json").exists()
    log = json.loads((tmp_path / "decisions_rank0.json").read_text())
    assert [(d["step"], d["action"]) for d in log["decisions"]] == [tuple(x[:2]) for x in a["decisions"]]
    # global FLOPs: 2 x the step one process measures on the same per-device batch
    from tests.test_bf16 import run_flops

    one = run_flops(tmp_path / "one", bf16=False)
    assert a["step_flops"]["full"] == 2 * one["step_flops"]["full"]
