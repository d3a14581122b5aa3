"""CUDA-only checks (deselected by default; `make test-gpu`): real allocator peak and a real cap."""

from __future__ import annotations

import pytest
import torch

from govgym.efficiency.run import FineTuneRun, RunOOM
from tests.conftest import tiny_cfg, tiny_workload

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("strategy", ["full", "lora+gc", "qlora"])
def test_cuda_peak_is_measured_by_the_allocator(strategy):
    run = FineTuneRun(tiny_cfg(device="cuda", memory__strategy=strategy), workload=tiny_workload())
    run.advance(3)
    m = run.last_memory
    assert m.profile_peak > 0 and m.total > 0
    assert 0.5 < m.profile_peak / m.total < 3.0


def test_real_cap_raises_oom_cleanly():
    run = FineTuneRun(
        tiny_cfg(device="cuda"), workload=tiny_workload(n=64, seq=64, vocab=4096, hidden=256, inter=704)
    )
    run.set_cap(1.0)  # 1 MiB: any step must hit the allocator limit
    with pytest.raises(RunOOM, match="cap"):
        run.advance(2)
    run.set_cap(0)
