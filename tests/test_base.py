"""The shared base and the one-of-each helpers: errors, atomic writes, strict JSON, Strategy, Reading.from_run."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from govgym.efficiency.signals import Reading, SignalTracker
from govgym.efficiency.strategy import BASES, Strategy
from govgym.errors import USER_ERRORS, ConfigError, GovgymError, RunError, StrategyError, did_you_mean
from govgym.results import atomic_path, atomic_write, format_table, write_json, write_rows


def test_one_error_base_class():
    """Every user error is a GovgymError (what the CLI catches); ConfigError stays a ValueError."""
    for cls in (ConfigError, RunError, StrategyError):
        assert issubclass(cls, GovgymError)
    assert issubclass(ConfigError, ValueError)
    from govgym.efficiency.memory import StrategyError as memory_strategy_error
    from govgym.efficiency.run import RunError as run_error
    from govgym.efficiency.run import RunOOM
    from govgym.typed import ConfigError as typed_config_error

    # the old import paths name the same classes (one definition, in the base)
    assert (typed_config_error, run_error, memory_strategy_error) == (ConfigError, RunError, StrategyError)
    assert issubclass(RunOOM, GovgymError)
    assert issubclass(GovgymError, USER_ERRORS) and FileNotFoundError in USER_ERRORS


def test_did_you_mean():
    assert did_you_mean("lorra", BASES) == " Did you mean 'lora'?"
    assert did_you_mean("zzzzzz", BASES) == ""


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    p = atomic_write(tmp_path / "sub" / "a.json", "old")
    assert p.read_text() == "old"
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert p.read_text() == "old"  # a failed write never touches the file
    atomic_write(p, b"new")
    assert p.read_bytes() == b"new"
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.json"]  # no temp left behind


def test_result_json_is_strict(tmp_path):
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": (2,)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None], "c": [2]}
    write_rows(tmp_path, "t", [{"k": 1, "v": float("nan")}], {"m": float("-inf")})
    data = json.loads(
        (tmp_path / "t.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}")
    )
    assert data == {"meta": {"m": None}, "rows": [{"k": 1, "v": None}]}
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "k,v"
    assert format_table([{"k": 1, "v": 0.123456}]).splitlines()[2].split() == ["1", "0.1235"]


def test_strategy_is_one_value_type():
    a, b = Strategy.parse("lora+gc+adam8"), Strategy.parse(" lora + adam8 + gc ")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert (a.base, a.adam8, a.gc, a.name, str(a)) == ("lora", True, True, "lora+adam8+gc", "lora+adam8+gc")
    assert Strategy.parse(a) is a and Strategy.parse("full") == Strategy()
    assert [Strategy.parse(b).base for b in BASES] == list(BASES)
    for bad, needle in [
        ("lorra", "Did you mean 'lora'"),
        ("lora+gcc", "Did you mean 'gc'"),
        ("", "must start with"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            Strategy.parse(bad)
    with pytest.raises(ConfigError):
        Strategy(base="bf16")


def test_strategy_and_signals_import_no_torch():
    """The strategy type and the observation function load without torch (deployment, config validation)."""
    code = (
        "import sys, govgym.efficiency.strategy, govgym.efficiency.signals, govgym.efficiency.config, govgym.errors, "
        "govgym.results, govgym.typed; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_observation_strategy_features_follow_the_type():
    """The one-hot and modifier flags come from Strategy, so every spelling of a strategy observes alike."""
    from govgym.efficiency.signals import FEATURE_NAMES

    def obs(strategy: str) -> np.ndarray:
        t = SignalTracker()
        t.reset(2.0, 0.0)
        return t.observe(Reading(1e9, 1e10, 1.9, 1.8, 1.0, 0.1, 8.0, 8, 10.0, 0.0, strategy, 1.0, 0.5, 0.3))

    F = {n: i for i, n in enumerate(FEATURE_NAMES)}
    o = obs("qlora+gc+adam8")
    assert np.array_equal(o, obs("qlora+adam8+gc"))
    assert [o[F[f"strategy_{b}"]] for b in BASES] == [0, 0, 1, 0]
    assert o[F["strategy_gc"]] == 1 and o[F["strategy_adam8"]] == 1
    with pytest.raises(ConfigError):
        obs("lorra")  # an unknown strategy is an error, not an all-zero one-hot


def test_reading_from_run(make_run):
    """The one Reading builder (the env and `govgym run` both use it) maps a real run's figures."""
    run = make_run()
    e0 = run.evaluate()
    r0 = Reading.from_run(run, e0, None, budget=1e12, lam=0.3, mem_fallback_mb=7.0)
    assert (r0.train_loss, r0.grad_norm, r0.lr_frac, r0.lam, r0.budget) == (e0, 0.0, 0.0, 0.3, 1e12)
    assert math.isnan(r0.grad_noise_scale) and r0.strategy == run.strategy.name
    assert r0.mem_peak_mb == (run.last_memory.peak / 2**20 if run.last_memory.total else 7.0)
    stats = run.advance(4)
    e = run.evaluate()
    r = Reading.from_run(run, e, stats, budget=1e12, lam=0.0)
    assert (r.eval_loss, r.train_loss, r.grad_norm, r.grad_norm_std) == (
        e,
        stats.train_loss,
        stats.grad_norm,
        stats.grad_norm_std,
    )
    assert (
        r.flops_used == run.flops_total
        and r.batch_size == run.cfg.optim.batch_size
        and r.cap_mb == run.cap_mb
    )
    assert r.lr_frac == stats.lr / run.lr and r.kept_fraction == run.kept_fraction
    assert r.mem_peak_mb == run.last_memory.peak / 2**20 > 0
