"""What a user sees: govgym's own progress bars, not the libraries' per-workload bars under them."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
from transformers.utils import logging as hf_logging

from govgym.efficiency import workload as wl
from govgym.efficiency.config import RunConfig
from govgym.typed import deep_merge, from_dict
from tests.conftest import TINY_EMBEDDED

LIBRARY_LINES = (
    "Map",
    "Saving the dataset",
    "Flattening the indices",
    "Generating train split",
    "Loading weights",
    "Writing model shards",
    "examples/s",
)


def test_loading_a_workload_shows_only_govgym_bars(tmp_path: Path, capfd) -> None:
    # control: the capture sees a datasets bar when one is printed (so an empty capture below means something)
    datasets.Dataset.from_dict({"x": list(range(4))}).map(lambda b: b, batched=True)
    assert "Map" in capfd.readouterr().err

    small = {
        "model": {"pretrain_steps": 10},
        "data": {"max_examples": 32, "eval_examples": 8, "seq_len": 48, "noise_rate": 0.2},
    }
    tiny = deep_merge(deep_merge(TINY_EMBEDDED, small), {"cache_dir": str(tmp_path)})
    wl.load_workload(
        from_dict(RunConfig, tiny), progress=True
    )  # builds base + default data: pretrain, maps, save_to_disk
    (tmp_path / "d.jsonl").write_text(
        "".join(json.dumps({"text": f"def f{i}(): return {i}"}) + "\n" for i in range(40))
    )
    wl.load_workload(
        from_dict(RunConfig, {**tiny, "data": {**tiny["data"], "source": str(tmp_path / "d.jsonl")}}),
        progress=True,
    )
    err = capfd.readouterr().err
    assert "pretraining base model" in err  # govgym's own bar is on
    assert not [line for line in LIBRARY_LINES if line in err], err[-2000:]
    # the libraries' process-wide switches are as they were
    assert datasets.is_progress_bar_enabled() and hf_logging.is_progress_bar_enabled()
    assert datasets.utils.logging.get_verbosity() == datasets.utils.logging.WARNING
