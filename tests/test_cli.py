"""Every CLI subcommand on a tiny embedded default; bad input gives one clear sentence.

The subcommands run in process (``tests.conftest.run_cli``: a subprocess costs ~9 s of importing torch);
``test_installed_command_exits_2_on_bad_input`` runs the installed ``govgym`` command as a user does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govgym.cli import BY_NAME, COMMANDS, build_parser, parse_args
from govgym.typed import config_keys
from tests.conftest import run_cli

TINY = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "model.vocab_size=512",
    "model.pretrain_steps=20",
    "data.seq_len=48",
    "data.max_examples=96",
    "data.eval_examples=8",
    "optim.total_steps=12",
    "optim.batch_size=4",
    "data.noise_rate=0.25",
]


@pytest.fixture(scope="module")
def cache(shared_cache) -> dict[str, str]:
    return {**os.environ, "GOVGYM_CACHE": str(shared_cache)}


govgym = run_cli  # `govgym ARGS` in process: returncode, stdout, stderr


def test_help_lists_subcommands(cache):
    out = govgym(["--help"], cache).stdout
    for cmd in ("prepare", "run", "demo", "strategies", "prune", "switch"):
        assert cmd in out


def test_installed_command_exits_2_on_bad_input(cache):
    """The one subprocess: the console script pip installed (`govgym`, else `python -m govgym.cli`) turns
    main()'s status into the process's exit status, and a user error is one line, not a traceback."""
    script = Path(sys.executable).with_name("govgym")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "govgym.cli"]
    r = subprocess.run([*cmd, "run", "optim.lr=-1"], capture_output=True, text=True, env=cache, timeout=600)
    assert r.returncode == 2, r.stderr[-3000:]
    assert (
        r.stderr.startswith("govgym run: error:") and "optim.lr" in r.stderr and "Traceback" not in r.stderr
    )


def test_prepare_then_run_writes_results(cache, tmp_path):
    info = govgym(["prepare", *TINY], cache).stdout
    assert "manifest" in info
    govgym(["run", "--out", str(tmp_path), "interval=4", *TINY], cache)
    rows = json.loads((tmp_path / "intervals.json").read_text())["rows"]
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert (tmp_path / "intervals.csv").is_file() and (tmp_path / "curve.png").stat().st_size > 1000
    # the results are not corrupted by a failed rerun into the same folder (reuses this run: one run fewer)
    before = (tmp_path / "intervals.json").read_text()
    govgym(["run", "--out", str(tmp_path), *TINY, "optim.schedule=cosnie"], cache, check=False)
    assert (tmp_path / "intervals.json").read_text() == before
    assert not list(Path(tmp_path).glob("*.tmp*"))


def test_strategies_prune_switch(cache, tmp_path):
    govgym(["strategies", "--out", str(tmp_path / "s"), "steps=2", "only=[full,lora+gc,qlora]", *TINY], cache)
    rows = json.loads((tmp_path / "s" / "strategies.json").read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["full", "lora+gc", "qlora"]
    govgym(["prune", "--out", str(tmp_path / "p"), "warm_steps=4", *TINY], cache)
    assert (tmp_path / "p" / "prune.png").is_file()
    govgym(["switch", "--out", str(tmp_path / "w"), "steps=3", *TINY], cache)
    assert (tmp_path / "w" / "switch.png").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "memory.strategy=lorra"], "memory.strategy"),
        (["run", "optim.lr=-1"], "optim.lr"),
        (["run", "optim.warmup=5"], "Did you mean 'warmup_steps'"),
        (["run", "model.source=/nonexistent/model"], "model.source"),
        (["run", "--config", "/nonexistent.yaml"], "--config"),
        (["prune", "data.noise_rate=0"], "data.noise_rate"),
        (["run", "budget_flops=-5"], "budget_flops"),
        (["run", "--budget-flops", "-5"], "budget_flops"),
        (["run", "intervall=3"], "Did you mean 'interval'"),
        (["strategies", "only=[full,lorra]"], "only[1]"),
        (["collect", "policies=[patiense]"], "Did you mean 'patience'"),
        (["tune", "seeds=0"], "seeds"),
        (["demo", "train_minutes=-1"], "train_minutes"),
    ],
)
def test_bad_input_is_one_sentence_not_a_traceback(cache, args, needle):
    r = govgym(args, cache, check=False)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_bad_model_dir_is_a_clear_error(cache, tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    r = govgym(["run", f"model.source={bad}"], cache, check=False)
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_collect_replay_plot(cache, tmp_path):
    tiny = str(Path(__file__).parent / "data" / "tiny_instances.yaml")
    govgym(
        ["collect", f"instances={tiny}", "episodes=1", "policies=[continue,random]", "--out", str(tmp_path)],
        cache,
    )
    states = sorted((tmp_path / "states").glob("*.json"))
    assert len(states) == 2 and len(list((tmp_path / "traces").glob("*.parquet"))) == 2
    assert "VALID" in govgym(["replay", str(states[0]), f"instances={tiny}"], cache).stdout
    s = json.loads(states[0].read_text())
    s["actions"] = [1] + s["actions"][1:]
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(s))
    r = govgym(["replay", str(bad), f"instances={tiny}"], cache, check=False)
    assert r.returncode == 1 and "INVALID" in r.stdout
    govgym(["plot-traces", str(tmp_path / "traces"), "--out", str(tmp_path / "p.png")], cache)
    assert (tmp_path / "p.png").stat().st_size > 1000
    r = govgym(["replay", str(tmp_path / "missing.json")], cache, check=False)
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- one option style, keys in --help
@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_help_lists_every_config_key_with_its_doc(name):
    """`govgym <cmd> --help` names each key the subcommand takes, with its default and docstring."""
    cmd = BY_NAME[name]
    _, subs = build_parser()
    text = " ".join(subs[name].format_help().split())  # help text re-wrapped: compare as one line
    keys = [k for c in cmd.keys for k in config_keys(c)]
    assert keys
    for key, _, doc in keys:
        assert f" {key}=" in text, key
        assert doc and " ".join(doc.split()) in text, key


def test_every_config_field_has_a_docstring():
    """What --help shows comes from the field docstrings; a field without one would show a blank line."""
    from govgym.efficiency.config import RunConfig
    from govgym.envs.instances import EnvConfig, Instance

    for cls in [*(c for cmd in COMMANDS for c in cmd.keys), RunConfig, EnvConfig, Instance]:
        missing = [k for k, _, doc in config_keys(cls) if not doc]
        assert not missing, f"{cls.__name__}: no docstring under {missing}"


@pytest.mark.parametrize(
    "old, new",
    [
        (["tune", "--seeds", "3", "--workers", "1"], ["tune", "seeds=3", "workers=1"]),
        (["run", "--interval", "4", "--budget-flops", "1e9"], ["run", "interval=4", "budget_flops=1e9"]),
        (["strategies", "--only", "full,lora+gc"], ["strategies", "only=full,lora+gc"]),
        (
            ["collect", "--policy", "patience,zeus", "--split", "test"],
            ["collect", "policies=patience,zeus", "split=test"],
        ),
        (["demo", "--train-minutes", "0.5", "--seeds", "1"], ["demo", "train_minutes=0.5", "seeds=1"]),
        (["train", "--timesteps", "64"], ["train", "timesteps=64"]),
    ],
)
def test_earlier_flag_spellings_mean_the_same_keys(old, new):
    a, b = parse_args(old)[1], parse_args(new)[1]
    assert a == b and a


def test_flags_and_pairs_in_any_order():
    """Pairs after a flag (`--interval 4 seed=1`) used to fail in argparse; they are all collected."""
    args, pairs = parse_args(
        ["run", "optim.lr=0.001", "--out", "x", "--interval", "4", "seed=1", "memory.strategy=lora"]
    )
    assert args.out == "x"
    assert pairs == {"optim": {"lr": 1e-3}, "interval": 4, "seed": 1, "memory": {"strategy": "lora"}}
    with pytest.raises(SystemExit):
        parse_args(["run", "--interval", "4", "stray"])  # neither a flag nor key=value
