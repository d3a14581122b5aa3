"""FineTuneEnv over real tiny runs: API contract, determinism, replay, failure paths, traces."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import govgym  # noqa: F401  (registers govgym/FineTune-v0)
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances
from govgym.envs.recording import TraceRecorder, load_traces, replay
from govgym.typed import ConfigError

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GOVGYM_CACHE", str(tmp_path_factory.getbasetemp() / "envcache"))


def make(split: str = "train") -> FineTuneEnv:
    return FineTuneEnv(TINY, split=split)


def test_gym_make_and_both_env_checkers():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = gym.make("govgym/FineTune-v0", instances=TINY)  # the defaults, as a user calls it
    gym_check(env.unwrapped)
    sb3_check(FineTuneEnv(TINY), warn=True)


def episode(env: FineTuneEnv, actions: list[int], instance: str, seed: int):
    obs, info = env.reset(seed=seed, options={"instance": instance})
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.stack(out), np.array(rewards), info


def test_same_instance_seed_actions_is_bit_identical():
    env = make()
    acts = [0, 1, 5, 2, 0, 3]  # continue, drop-hardest, switch:qlora+gc, drop-easiest, continue, switch:full
    o1, r1, _ = episode(env, acts, "t-free", 7)
    o2, r2, _ = episode(make(), acts, "t-free", 7)
    assert np.array_equal(o1, o2) and np.array_equal(r1, r2)


def test_replay_validates_and_detects_tampering(tmp_path):
    env = make()
    episode(env, [0, 4, 1, 0], "t-free", 3)  # continue, switch:lora, drop-hardest, continue
    state = json.loads(json.dumps(env.state()))
    assert replay(state, TINY)["valid"]
    state["actions"][1] = 5  # switch to qlora+gc instead of lora
    report = replay(state, TINY)
    assert not report["valid"] and report["mismatches"]


def test_reward_sums_to_improvement_minus_priced_compute():
    env = make()
    env.reset(seed=0, options={"instance": "t-free"})
    at_reset = env.run.flops_total  # the E_0 eval, spent before the first decision
    total, done = 0.0, False
    while not done:
        _, r, term, trunc, info = env.step(0)
        total, done = total + r, term or trunc
    lam = env.instance.lam
    expected = (info["e0"] - info["eval_loss"]) / info["e0"] - lam * (info["flops_used"] - at_reset) / info[
        "budget"
    ]
    assert abs(total - expected) < 1e-6 and trunc and info["budget_frac"] >= 1.0


def test_oom_under_cap_ends_cleanly_and_mask_knows():
    env = make()
    env.reset(seed=0, options={"instance": "t-oom"})
    mask = env.action_masks()
    names = env.action_names
    assert not mask[names.index("switch:full")]  # in use
    obs, r, term, trunc, info = env.step(0)
    assert term and not trunc and info["error"].startswith("oom") and r <= -1.0
    # switching first to what fits avoids it
    env.reset(seed=0, options={"instance": "t-oom"})
    assert env.action_masks()[names.index("switch:lora")]
    obs, r, term, trunc, info = env.step(names.index("switch:lora"))
    assert not term and "error" not in info


def test_cap_schedule_changes_the_cap_mid_episode():
    env = make()
    env.reset(seed=0, options={"instance": "t-squeeze"})
    caps = []
    for _ in range(4):
        _, _, term, trunc, info = env.step(0)
        caps.append(info["cap_mb"])
        if term or trunc:
            break
    assert caps[0] == 1.5 or 1.1 in caps
    assert 1.1 in caps


def test_nan_run_ends_with_error_not_exception():
    env = make("test")
    env.reset(seed=0, options={"instance": "t-nan"})
    for _ in range(10):
        _, r, term, trunc, info = env.step(0)
        if term or trunc:
            break
    assert term and info["error"].startswith("diverged")


def test_invalid_action_is_a_noop_with_info():
    env = make()
    env.reset(seed=0, options={"instance": "t-free"})
    names = env.action_names
    _, _, term, _, info = env.step(names.index("switch:full"))  # already full
    assert info["invalid_action"] == "switch:full" and info["strategy"] == "full" and not term
    with pytest.raises(ValueError):
        env.step(99)


def test_bad_instance_field_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        Path(TINY)
        .read_text()
        .replace("start_strategy: full, lam: 0.2, seed: 1", "start_strategy: fulll, lam: 0.2, seed: 1")
    )
    with pytest.raises(ConfigError, match="t-free.start_strategy"):
        load_instances(bad)
    bad.write_text(
        Path(TINY)
        .read_text()
        .replace("budget_tflops: 0.0006, cap_mb: 0,", "budget_tflop: 0.0006, cap_mb: 0,", 1)
    )
    with pytest.raises(ConfigError, match="budget_tflops"):
        load_instances(bad)
    with pytest.raises(ConfigError, match="t-fre"):
        make().reset(options={"instance": "t-fre"})


def test_trace_recorder_is_append_safe(tmp_path):
    env = TraceRecorder(make(), tmp_path, policy="test")
    for seed in (0, 1):
        env.reset(seed=seed, options={"instance": "t-free"})
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(0)
            done = term or trunc
    env.reset(seed=2, options={"instance": "t-free"})
    env.step(0)  # a crash here would lose only this unfinished episode
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) == 2 and not list(tmp_path.glob(".*tmp"))
    ds = load_traces(tmp_path)
    assert set(ds["policy"]) == {"test"} and len(ds[0]["obs"]) == 20


def test_vectorized_envs():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv(
        [partial(FineTuneEnv, TINY), partial(FineTuneEnv, TINY)], start_method="spawn"
    )  # fork after torch threads start is unsafe
    try:
        obs = venv.reset()
        assert obs.shape == (2, 20)
        obs, rew, done, info = venv.step(np.array([0, 0]))
        assert rew.shape == (2,) and np.isfinite(obs).all()
    finally:
        venv.close()
