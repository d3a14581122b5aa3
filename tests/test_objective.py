"""The equal-quality objective (issue 20, item 3): its definition, the env wrapper as ``gym.make`` builds it
(gymnasium's check_env), the reference (the fixed-budget run) in the real, memo and fast envs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from govgym.efficiency.objective import Objective, equal_quality_return, violated
from govgym.typed import ConfigError
from tests.test_world import tiny_world


@pytest.mark.parametrize(
    "kind,tol,match",
    [
        ("quality", 0.005, "not an objective"),
        ("equal_quality", 0.0, "tolerance"),
        ("equal_quality", -0.01, "tolerance"),
        ("equal_quality", float("nan"), "tolerance"),
        ("equal_quality", True, "tolerance"),
        ("equal_quality", 0.9, "tolerance"),
        ("equal_quality", "0.005", "tolerance"),
    ],
)
def test_bad_objective_is_one_clear_error(kind, tol, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Objective(kind, tol)


def test_equal_quality_return() -> None:
    assert not violated(1.004, 1.0, 0.005) and violated(1.006, 1.0, 0.005)
    assert violated(0.9, 1.0, 0.005, error="oom: ...") and violated(math.nan, 1.0, 0.005)
    assert equal_quality_return(0.4, 1.004, 1.0, 0.005) == pytest.approx(0.6)
    assert equal_quality_return(0.4, 1.006, 1.0, 0.005) == pytest.approx(-0.4)
    assert (
        equal_quality_return(1.0, 1.0, 1.0, 0.005) == 0.0
    )  # the fixed run: meets its own target, saves nothing


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world_eq")
    return tiny_world(d / "tiny_world.yaml", d / "cache")


def _episode(env, actions_fn, seed=0, instance="tw-neox"):
    obs, info = env.reset(options={"instance": instance, "episode_seed": seed})
    rewards, infos, t = [], [], 0
    while True:
        obs, r, term, trunc, info = env.step(actions_fn(t))
        rewards.append(r)
        infos.append(info)
        t += 1
        if term or trunc:
            return obs, rewards, infos


def test_equal_quality_env_as_make_builds_it(world: Path) -> None:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import govgym  # noqa: F401  (registers the envs)

    env = gym.make("govgym/FineTune-v2", instances=str(world), objective="equal_quality", tolerance=0.01)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (21,) and obs[20] == pytest.approx(0.01)
    assert env.observation_space.contains(obs)

    # the fixed run: meets its own target, saves nothing, R = 0 (the steps sum to it)
    obs, rewards, infos = _episode(env, lambda t: 0)
    last = infos[-1]
    assert last["violated"] is False and last["reference_eval"] == pytest.approx(last["eval_loss"])
    assert sum(rewards) == pytest.approx(last["eq_return"], abs=1e-9) and last["eq_return"] == pytest.approx(
        0.0, abs=1e-6
    )
    fixed_final = last["reference_eval"]

    # stop after one interval: the reference is replayed from a reset, exactly the fixed run's final eval
    stop = env.unwrapped.action_names.index("stop")
    env.unwrapped.__dict__.pop("_fixed_finals", None)  # no cache: make it replay
    obs, rewards, infos = _episode(env, lambda t: 0 if t == 0 else stop)
    last = infos[-1]
    assert last["reference_eval"] == fixed_final
    frac = last["budget_frac"]
    v = last["eval_loss"] > 1.01 * fixed_final
    assert last["violated"] == v and sum(rewards) == pytest.approx((1 - frac) - v, abs=1e-9)
    # the episode's own state was restored after the replay: its log is the short episode's
    assert len(env.unwrapped.log["actions"]) == 2
    env.close()


def test_price_objective_is_unchanged(world: Path) -> None:
    import gymnasium as gym

    import govgym  # noqa: F401

    env = gym.make("govgym/FineTune-v2", instances=str(world))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (20,) and type(env.unwrapped).__name__ == "FineTuneV2Env"
    with pytest.raises(ConfigError, match="tolerance"):
        gym.make("govgym/FineTune-v2", instances=str(world), objective="equal_quality", tolerance=2.0)


def test_memo_env_reference_is_the_trees_fixed_path(world: Path) -> None:
    from govgym.envs.memo import MemoFineTuneEnv
    from govgym.envs.objective import EqualQuality

    env = EqualQuality(MemoFineTuneEnv(str(world), seeds=[0]), tolerance=0.005)
    _, _, infos = _episode(env, lambda t: 0)
    ref = infos[-1]["reference_eval"]
    stop = env.unwrapped.action_names.index("stop")
    real = env.unwrapped.stats()["real_steps"]
    _, rewards, infos = _episode(env, lambda t: stop)  # stop at once: the fixed path is already in the memo
    assert env.unwrapped.stats()["real_steps"] == real  # a stop is derived; the fixed path is not run again
    assert infos[-1]["reference_eval"] == ref and infos[-1]["violated"] is True
    assert sum(rewards) == pytest.approx(infos[-1]["eq_return"], abs=1e-9)


def test_fast_env_reference_resimulates_the_same_stream() -> None:
    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.objective import EqualQuality

    base = FineTuneFastEnv()
    name = base.pool[0].name
    env = EqualQuality(base, tolerance=0.005)
    _, _, infos = _episode(env, lambda t: 0, seed=7, instance=name)
    fixed = infos[-1]["eval_loss"]
    stop = base.action_names.index("stop")
    _, rewards, infos = _episode(env, lambda t: 0 if t < 2 else stop, seed=7, instance=name)
    assert infos[-1]["reference_eval"] == pytest.approx(fixed, rel=1e-12)
    assert sum(rewards) == pytest.approx(infos[-1]["eq_return"], abs=1e-9)
    # the wrapper left the episode where it ended: the same step count as the short episode
    assert base.done and np.isfinite(infos[-1]["eval_loss"])


def test_paired_bootstrap_by_instance() -> None:
    """The leaderboard's CI: a planted difference is found, pairs are matched per (instance, seed)."""
    from govgym.agents.scoring import paired_bootstrap

    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        shift = rng.normal() * 0.5  # instances differ a lot; the pairing removes it
        for s in range(3):
            for pol, mean in (("a", 1.0), ("b", 0.9)):
                rows.append(
                    {
                        "policy": pol,
                        "instance": f"i{i}",
                        "episode_seed": s,
                        "return": shift + mean + rng.normal() * 0.02,
                    }
                )
    ci = paired_bootstrap(rows, "a", "b")
    assert ci["pairs"] == 30 and ci["instances"] == 10 and 0.0 < ci["lo"] < 0.1 < ci["hi"]
    back = paired_bootstrap(rows, "b", "a")
    assert back["diff"] == pytest.approx(-ci["diff"]) and back["hi"] < 0
    assert math.isnan(paired_bootstrap(rows, "a", "missing")["diff"])
