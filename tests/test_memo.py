"""Fork points (env snapshot/restore) and the exact step memo, on the tiny real instance set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVGYM_CACHE", str(tmp_path / "cache"))


def _episode(env, actions, fork_at=None):
    env.reset(options={"instance": "t-squeeze", "episode_seed": 2})
    out = []
    for t, a in enumerate(actions):
        if t == fork_at:
            snap = env.snapshot()
            env.step(env.action_names.index("switch:qlora+gc"))  # wander off on another path ...
            env.reset(options={"instance": "t-free", "episode_seed": 9})  # ... and another instance
            env.step(0)
            env.restore(snap)
        obs, r, term, trunc, info = env.step(a)
        out.append((obs.tolist(), r, info.get("error")))
        if term or trunc:
            break
    return out


def test_restore_continues_bit_identically_across_switches_and_instances():
    from govgym.envs.finetune_env import FineTuneEnv

    env = FineTuneEnv(TINY, wall_time_info=False)
    acts = [0, env.action_names.index("switch:lora"), 0, env.action_names.index("reprune_hardest"), 0, 0, 0, 0]
    whole = _episode(env, acts)
    assert len(whole) >= 4  # the reprune's scoring pass spends much of the tiny budget
    assert _episode(env, acts, fork_at=2) == whole
    assert _episode(env, acts, fork_at=3) == whole


def test_tree_branches_from_fork_points_not_from_scratch():
    from govgym.envs.finetune_env import FineTuneEnv
    from govgym.envs.memo import EpisodeTree

    env = FineTuneEnv(TINY, wall_time_info=False)
    tree = EpisodeTree(env, "t-free", 0, max_snapshots=32)
    prefix: tuple[int, ...] = ()
    node = tree.root()
    while not (node.terminated or node.truncated):
        node = tree.step(prefix, 0)
        prefix = (*prefix, 0)
    spine = len(prefix)
    other = EpisodeTree(env, "t-squeeze", 0)  # moves the shared live env elsewhere
    other.step((), 0)
    node = tree.step(prefix[:3], env.action_names.index("switch:lora"))  # branch off mid-spine
    assert tree.real_steps == spine + 1 and tree.replayed_steps == 0  # restored, not replayed
    again = tree.step(prefix[:3], env.action_names.index("switch:lora"))
    assert again is node and tree.memo_hits == 1


def test_memo_env_passes_checkers_and_answers_repeats_from_memory():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    from govgym.envs.memo import MemoFineTuneEnv

    env = MemoFineTuneEnv(TINY, split="train", seeds=[0, 1])
    gym_check(env, skip_render_check=True)
    sb3_check(env, warn=True)

    def episode():
        obs, _ = env.reset(options={"instance": "t-free", "episode_seed": 1})
        seen, done = [obs], False
        while not done:
            obs, r, term, trunc, info = env.step(0)
            seen.append(obs)
            done = term or trunc
        return seen, info

    first, info1 = episode()
    before = env.stats()
    second, info2 = episode()
    after = env.stats()
    assert after["real_steps"] == before["real_steps"] and after["memo_hits"] == before["memo_hits"] + len(second) - 1
    assert info1 == info2
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert env.action_masks().dtype == bool


def test_memo_env_saves_and_reloads_its_trees(tmp_path):
    from govgym.envs.memo import MemoFineTuneEnv

    def episode(env):
        env.reset(options={"instance": "t-free", "episode_seed": 0})
        rewards, done = [], False
        while not done:
            _, r, term, trunc, _ = env.step(0)
            rewards.append(r)
            done = term or trunc
        return rewards

    first = MemoFineTuneEnv(TINY, seeds=[0], memo=str(tmp_path / "memo"))
    a = episode(first)
    assert len(list((tmp_path / "memo").rglob("t-free-0.pkl"))) == 1
    second = MemoFineTuneEnv(TINY, seeds=[0], memo=str(tmp_path / "memo"))  # a new process, say, after a kill
    assert episode(second) == a and second.stats()["real_steps"] == 0
