"""Fork points (env snapshot/restore) and the exact step memo, on the tiny real instance set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(autouse=True)
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv("GOVGYM_CACHE", str(shared_cache))  # the session's tiny base and data (conftest)


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
    acts = [
        0,
        env.action_names.index("switch:lora"),
        0,
        env.action_names.index("reprune_hardest"),
        0,
        0,
        0,
        0,
    ]
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
    assert (
        after["real_steps"] == before["real_steps"]
        and after["memo_hits"] == before["memo_hits"] + len(second) - 1
    )
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
    (path,) = (tmp_path / "memo").rglob("t-free-0.tree")
    from govgym.envs.memo import load_nodes

    saved, live = load_nodes(path), first.trees[("t-free", 0)].nodes
    assert saved.keys() == live.keys()
    for k, node in live.items():  # float32 observations, masks and infos come back exactly
        back = saved[k]
        assert (
            back.obs.dtype == np.float32
            and np.array_equal(back.obs, node.obs)
            and np.array_equal(back.mask, node.mask)
        )
        assert (back.reward, back.terminated, back.truncated, back.info) == (
            node.reward,
            node.terminated,
            node.truncated,
            node.info,
        )
    second = MemoFineTuneEnv(TINY, seeds=[0], memo=str(tmp_path / "memo"))  # a new process, say, after a kill
    assert episode(second) == a and second.stats()["real_steps"] == 0


def test_hindsight_labels_pick_the_best_explored_branch():
    from govgym.agents.pretrain import tree_labels
    from govgym.envs.memo import StepOutcome

    def node(r, term=False, trunc=False):
        return StepOutcome(np.zeros(3, np.float32) + r, r, term, trunc, {}, np.ones(4, bool))

    # actions: 0 continue, 1 switch, 3 stop. Continue pays 0.1 then -0.2; switching pays -0.05 then 0.3.
    nodes = {
        (): node(0),
        (0,): node(0.1),
        (0, 0): node(-0.2),
        (1,): node(-0.05),
        (1, 0): node(0.3, trunc=True),
        (0, 3): node(0.0, term=True),
    }
    labels = {round(float(o[0]), 3): (a, v) for o, _, a, v in tree_labels(nodes, stop=3)}
    assert labels[0.0] == (1, pytest.approx(0.25))  # switch beats continue (0.1 + max(0, -0.2))
    assert labels[0.1] == (3, 0.0)  # after one continue, stopping beats going on
    assert len(labels) == 3  # leaves nobody continued from carry no label


def test_behaviour_cloning_fits_the_demonstrations():
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from govgym.agents.pretrain import Demonstrations, behaviour_clone
    from govgym.envs.memo import MemoFineTuneEnv

    venv = VecNormalize(DummyVecEnv([lambda: MemoFineTuneEnv(TINY, seeds=[0])]), norm_reward=False)
    model = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(200, venv.observation_space.shape[0])).astype(np.float32)
    acts = np.where(obs[:, 0] > 0, 0, venv.action_space.n - 1)  # continue if feature 0 is high, else stop
    masks = np.ones((200, venv.action_space.n), bool)
    stats = behaviour_clone(model, venv, Demonstrations(obs, masks, acts, obs[:, 0].clip(0), 1), epochs=60)
    assert stats["agreement"] > 0.95 and stats["samples"] == 200
    assert np.allclose(
        venv.obs_rms.mean, obs.mean(0), atol=1e-6
    )  # normalization comes from the demonstrations


def test_a_stop_is_derived_from_its_parent_exactly():
    """A stop runs nothing: the tree derives it from the node before it, equal to the real env's stop."""
    from govgym.envs.finetune_env import FineTuneEnv
    from govgym.envs.memo import EpisodeTree, _keep

    env = FineTuneEnv(TINY, wall_time_info=False)
    stop = env.action_names.index("stop")
    tree = EpisodeTree(env, "t-squeeze", 2)
    lora = env.action_names.index("switch:lora")
    path = [0, lora, 0, 0]
    prefix: tuple[int, ...] = ()
    for a in path:
        node = tree.step(prefix, a)
        prefix = (*prefix, a)
        if node.terminated or node.truncated:
            break
    real = tree.real_steps
    for n in range(len(prefix) + 1):
        derived = tree.step(prefix[:n], stop)
        assert tree.real_steps == real  # nothing ran
        env.reset(options={"instance": "t-squeeze", "episode_seed": 2})
        for a in prefix[:n]:
            env.step(a)
        obs, r, term, trunc, info = env.step(stop)
        assert np.array_equal(derived.obs, obs) and derived.obs.dtype == obs.dtype
        assert (derived.reward, derived.terminated, derived.truncated) == (r, term, trunc)
        assert derived.info == _keep(info)
        assert np.array_equal(derived.mask, env.action_masks())


def test_a_memo_saved_at_another_thread_count_is_named_not_silently_missed(tmp_path):
    """`tune workers=1` on 2 cores reads the -t2 namespace; trees a workers=2 run saved under -t1 would be run
    again for real without a word. Now a warning names the namespace that holds them and the workers that reads it."""
    import warnings

    from govgym.envs.memo import stray_memo_warning

    saved, wanted = tmp_path / "instances_v2-abc123-t1", tmp_path / "instances_v2-abc123-t2"
    saved.mkdir()
    units = [("x", 0), ("x", 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stray_memo_warning(wanted, 1, units) == ""  # nothing saved anywhere: nothing to say
        (saved / "other-0.tree").write_text("{}")
        assert stray_memo_warning(wanted, 1, units) == ""  # trees of other units only: nothing to reuse
    (saved / "x-0.tree").write_text("{}")
    with pytest.warns(UserWarning, match="instances_v2-abc123-t1") as rec:
        msg = stray_memo_warning(wanted, 1, units)
    assert "run again for real" in msg and "1 torch threads" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stray_memo_warning(saved, 2, units) == ""  # reading the namespace that holds them: silent
