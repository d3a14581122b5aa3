"""``govgym outside``: a governor judged on a BERT classifier no govgym run resembles (issue 20, split d).

Tiny real models throughout: an encoder 32 wide, 1 layer, vocabulary 300, pretrained by masked LM for
4 steps on the real stdlib corpus (cached in a temp folder), fine-tuned on 3 real stdlib packages for
4 steps per run; one seed. Never a mock of the training run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from govgym.agents.bootstrap import paired_bootstrap
from govgym.deploy.outside import OutsideJob, outside
from govgym.deploy.outside_base import META, EncoderConfig, ensure_encoder
from govgym.errors import ConfigError
from govgym.typed import from_dict

TINY = {
    "governors": ["marginal_gain", "patience:patience=1,threshold=0.5", "learned_curve:alpha=0.5"],
    "objective": "equal_quality",
    "seeds": 1,
    "budget_epochs": 1.0,
    "batch_size": 8,
    "interval": 2,
    "resamples": 200,
    "encoder": {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 300,
        "max_len": 32,
        "pretrain_steps": 4,
        "pretrain_batch": 4,
    },
    "task": {"classes": 3, "min_per_class": 20, "max_per_class": 12, "max_len": 32},
}
"""~29 train rows of 3 packages, batch 8: 4 steps, K = 2 (evaluations at 0, 2, 4)."""

RUN_COLUMNS = [
    "policy",
    "seed",
    "final_eval",
    "final_vs_fixed",
    "within_tol",
    "flops_used",
    "flops_vs_fixed",
    "flops_to_quality",
    "quality_flops_vs_fixed",
    "accuracy",
    "best_eval",
    "stop_step",
    "ended",
    "prefix_ok",
    "shield_fired",
    "seconds",
]
SUMMARY_COLUMNS = [
    "policy",
    "runs",
    "flops_vs_fixed",
    "final_vs_fixed",
    "worst_final_vs_fixed",
    "within_tol",
    "quality_flops_vs_fixed",
    "reached",
    "final_eval",
    "accuracy",
    "stop_step",
    "prefix_ok",
    "shield_fired",
]


def _job(cache: Path, **over) -> OutsideJob:
    data = json.loads(json.dumps(TINY))
    data["encoder"]["cache_dir"] = str(cache)
    data.update(over)
    return from_dict(OutsideJob, data)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outside")
    job = _job(tmp / "cache")
    tables = outside(job, tmp / "out", progress=False)
    return job, tables, tmp


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_end_to_end_tables_and_files(ran):
    job, tables, tmp = ran
    out = tmp / "out"
    for name in ("outside", "outside_runs", "outside_paired"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.json").is_file()
    assert (out / "outside.png").stat().st_size > 1000
    runs = _csv(out / "outside_runs.csv")
    assert list(runs[0]) == RUN_COLUMNS
    assert list(_csv(out / "outside.csv")[0]) == SUMMARY_COLUMNS
    assert [r["policy"] for r in runs] == [
        "fixed",
        "early_stopping",
        "marginal_gain",
        "patience:patience=1,threshold=0.5",
        "learned_curve:alpha=0.5",
    ]
    # the learned governor runs behind the shield (its vetoes counted), the hand-written rules do not
    assert [r["shield_fired"] for r in runs][:4] == ["-"] * 4 and runs[4]["shield_fired"].isdigit()
    fixed = tables["runs"][0]
    assert fixed["flops_vs_fixed"] == 1.0 and fixed["final_vs_fixed"] == 1.0 and fixed["within_tol"]
    assert fixed["stop_step"] == 4 and fixed["flops_used"] > 0
    # every run is the fixed run up to its stop: the same seed, data and batch order (a stop is the only lever)
    assert all(r["prefix_ok"] for r in tables["runs"])
    # a patience of 1 with a 0.5 threshold stops at its first chance: fewer FLOPs than the fixed budget
    stopper = tables["runs"][3]
    assert stopper["stop_step"] < 4 and stopper["flops_vs_fixed"] < 1.0
    assert stopper["ended"] == "stop"
    paired = {(r["policy"], r["vs"]) for r in tables["paired"]}
    assert paired == {
        ("early_stopping", "fixed"),
        ("marginal_gain", "fixed"),
        ("marginal_gain", "early_stopping"),
        ("patience:patience=1,threshold=0.5", "fixed"),
        ("patience:patience=1,threshold=0.5", "early_stopping"),
        ("learned_curve:alpha=0.5", "fixed"),
        ("learned_curve:alpha=0.5", "early_stopping"),
    }
    meta = json.loads((out / "outside.json").read_text())["meta"]
    assert len(meta["classes"]) == 3 and meta["interval_steps"] == 2 and meta["budget_steps"] == 4
    assert meta["encoder"]["n_params"] > 0


def test_encoder_is_cached_and_checked(ran):
    job, _, tmp = ran
    path = ensure_encoder(job.encoder, progress=False)  # built by the run: found, not rebuilt
    assert path.parent == tmp / "cache" / "encoder" and len(list(path.parent.glob("*-*"))) == 1
    meta = json.loads((path / META).read_text())
    assert meta["eval_mlm_loss"] > 0 and meta["tokens_seen"] == 4 * 4 * 32
    meta["recipe"]["hidden_size"] = 64  # edited: its recipe no longer matches the folder's name
    (path / META).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="delete the folder"):
        ensure_encoder(job.encoder, progress=False)
    meta["recipe"]["hidden_size"] = 32
    (path / META).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("seeds", 0, "seeds: got 0"),
        ("tolerance", float("nan"), "tolerance: got nan"),
        ("governors", [], "governors: empty"),
    ],
)
def test_bad_config_value_is_one_clear_error(tmp_path, key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        _job(tmp_path, **{key: value})


def test_bad_nested_value_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.max_len: 64 tokens exceed the encoder's 32 positions"):
        _job(tmp_path, task={**TINY["task"], "max_len": 64})
    with pytest.raises(ConfigError, match=r"encoder\.num_heads: 3 does not divide"):
        EncoderConfig(hidden_size=32, num_heads=3)


def test_cli_refuses_a_bad_value_before_any_work(tmp_path, capsys):
    """`govgym outside seeds=-1`: one sentence on stderr, exit 2, no traceback, nothing built or written.

    In-process through ``main`` (the subprocess smoke of every subcommand's --help is test_cli's): a
    fresh interpreter spends ~9 s of CPU importing the CLI, which the shared machine stretched past 10 min.
    """
    from govgym.cli import main

    assert main(["outside", "seeds=-1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "govgym outside: error: seeds: got -1; must lie in [1, 1000]."
    assert not (tmp_path / "o").exists()


def test_paired_bootstrap():
    same = paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same == {"mean": 0.0, "lo": 0.0, "hi": 0.0, "n": 3}
    shifted = paired_bootstrap([1.1, 2.1, 3.1, 4.1], [1.0, 2.0, 3.0, 4.0])
    assert shifted["lo"] == pytest.approx(0.1) and shifted["hi"] == pytest.approx(0.1)
    noisy = paired_bootstrap([0.5, -0.2, 0.9, 0.1, 0.3], resamples=2000)
    assert noisy["lo"] < noisy["mean"] < noisy["hi"] and noisy["mean"] == pytest.approx(0.32)
    assert noisy == paired_bootstrap([0.5, -0.2, 0.9, 0.1, 0.3], resamples=2000)  # seeded: reproducible
    assert paired_bootstrap([float("nan"), 1.0], [0.0, 0.0])["n"] == 1
    with pytest.raises(ConfigError, match="one pair per seed"):
        paired_bootstrap([1.0, 2.0], [1.0])
