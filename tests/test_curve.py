"""The learned curve predictor (issue 20): its targets, a fit on real step trees, the file's checks, the policy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from govgym.agents.curvepred import QUANTILES, features, load_curve_model
from govgym.agents.curvetrain import CurveFitConfig, fit_curve, path_rows
from govgym.agents.heuristics import make_policy
from govgym.envs.memo import StepOutcome
from govgym.typed import ConfigError
from tests.test_world import tiny_world

NAMES = ["continue", "stop"]


def _obs(used: float, y: float) -> np.ndarray:
    from govgym.efficiency.signals import FEATURE_NAMES

    o = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    o[FEATURE_NAMES.index("budget_left")] = 1 - used
    o[FEATURE_NAMES.index("eval_ratio")] = y
    return o


def test_path_rows_targets() -> None:
    """z = ln(E_final / E_t) and V = the best cumulative reward ahead, along the fixed path only."""
    evals = [4.0, 3.0, 2.5, 2.4, 2.45]
    rewards = [0.2, 0.05, -0.01, -0.03]
    nodes = {(): StepOutcome(_obs(0.0, 1.0), 0.0, False, False, {"eval_loss": evals[0]}, None)}
    prefix: tuple[int, ...] = ()
    for t in range(1, 5):
        prefix = (*prefix, 0)
        nodes[prefix] = StepOutcome(
            _obs(t / 4, evals[t] / 4), rewards[t - 1], False, t == 4, {"eval_loss": evals[t]}, None
        )
    nodes[(1,)] = StepOutcome(
        _obs(0.25, 0.1), 9.0, True, False, {"eval_loss": 0.4}, None
    )  # a stop: not the path
    xs, zs, vs = path_rows(nodes)
    assert len(xs) == 4
    assert zs == pytest.approx([math.log(2.45 / e) for e in evals[1:]])
    assert vs == pytest.approx([0.05, 0.0, 0.0, 0.0])  # after interval 1: stopping after interval 2 is best
    # an unfinished fixed path gives no rows
    del nodes[(0, 0, 0, 0)]
    assert path_rows(nodes) == ([], [], [])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from govgym.envs.memo import MemoFineTuneEnv

    d = tmp_path_factory.mktemp("curve")
    world = tiny_world(d / "tiny_world.yaml", d / "cache")
    env = MemoFineTuneEnv(str(world), seeds=[0, 1], memo=str(d / "memo"))
    for name in ("tw-neox", "tw-llama"):
        for seed in (0, 1):
            env.reset(options={"instance": name, "episode_seed": seed})
            while True:
                *_, term, trunc, _ = env.step(0)
                if term or trunc:
                    break
    model, report = fit_curve(CurveFitConfig(str(world), str(d / "memo"), hidden=8, iterations=50))
    path = model.save(d / "curve.json")
    return model, report, path


def test_fit_on_real_trees_and_round_trip(fitted) -> None:
    model, report, path = fitted
    assert report["instances"] == 2 and report["rows"] >= 4
    for cov in report["oof_coverage_conformal"].values():
        assert 0.0 <= cov <= 1.0
    assert report["oof_r2_v"] <= 1.0 and report["oof_r2_z_median"] <= 1.0  # finite skill scores
    back = load_curve_model(path)
    x = np.stack([features([_obs(0.0, 1.0), _obs(0.3, 0.8)]), features([_obs(0.0, 1.0), _obs(0.5, 0.7)])])
    q1, v1 = model.predict(x)
    q2, v2 = back.predict(x)
    assert np.array_equal(q1, q2) and np.array_equal(v1, v2)
    assert q1.shape == (2, len(QUANTILES)) and np.all(np.diff(q1, axis=1) >= 0) and np.all(v1 >= 0)


def test_policy_on_both_objectives(fitted) -> None:
    _, _, path = fitted
    for tol in (None, 0.005):
        pol = make_policy("learned_curve", NAMES, model=str(path), min_used=1.0)  # never before the end
        o = _obs(0.0, 1.0)
        for used in (0.0, 0.3, 0.6):
            o = _obs(used, 1.0 - used / 2)
            obs = o if tol is None else np.append(o, np.float32(tol))
            a, _ = pol.predict(obs)
            assert int(a) == 0
    # tau above every prediction: the price rule stops at the first decision with an interval behind it
    pol = make_policy("learned_curve", NAMES, model=str(path), tau=1e9)
    assert int(pol.predict(_obs(0.0, 1.0), episode_start=True)[0]) == 0
    assert int(pol.predict(_obs(0.2, 0.9))[0]) == 1


def test_bad_model_and_knobs_are_one_clear_error(fitted, tmp_path: Path) -> None:
    _, _, path = fitted
    with pytest.raises(ConfigError, match="alpha"):
        make_policy("learned_curve", NAMES, model=str(path), alpha=0.3)
    with pytest.raises(ConfigError, match="not a file"):
        make_policy("learned_curve", NAMES, model=str(tmp_path / "none.json"))
    bad = tmp_path / "edited.json"
    raw = path.read_bytes()
    i = raw.index(b'"x_mean"')
    bad.write_bytes(raw[:i] + raw[i:].replace(b"0", b"1", 1))  # one digit changed: the hash fails
    with pytest.raises(ConfigError):
        load_curve_model(bad)
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        make_policy("learned_curve", NAMES, model=str(bad))
    assert path.read_bytes() == before
