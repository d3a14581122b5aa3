"""Fast model v2: task- and base-free inputs, mechanics of every split, an ensemble, sim-to-real per held-out split.

Tiny real runs: a generated-world-like set of tiny bases (Llama, GPT-NeoX; GPT-2 only in test-c), step trees
of real episodes of the train split and of each held-out split, saved in a tmp memo, never mocks.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

import govgym  # noqa: F401  (registers the envs)
from govgym.typed import ConfigError

TINY_MODEL = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 512,
    "pretrain_steps": 20,
}


def tiny_world(path: Path, cache: Path) -> Path:
    """Three train instances (two tasks, two architectures) and one of each held-out split:
    test-a (a new draw), test-b (a task never in training), test-c (an architecture never in training)."""
    from govgym.efficiency.bases import LORA_TARGETS

    def inst(name: str, arch: str, task: str, seed: int, lr: float = 1e-3, **kw) -> dict:
        run = {
            "model": {"arch": arch, **TINY_MODEL},
            "memory": {"lora_targets": LORA_TARGETS[arch]},
            "data": {"task": task, "seed": seed, "response_only": task != "docprose"},
            "optim": {"lr": lr, "lora_lr": 6 * lr},
        }
        return {
            "name": name,
            "lam": 0.1,
            "seed": seed,
            "budget_epochs": 1.0,
            "run": run,
            "family": "noisy",
            **kw,
        }

    data = {
        "run": {
            "cache_dir": str(cache),
            "data": {"seq_len": 48, "max_examples": 24, "eval_examples": 4, "noise_rate": 0.2},
            "optim": {"batch_size": 4, "warmup_steps": 1},
        },
        "env": {
            "version": 1,
            "interval_steps": 2,
            "switch_targets": ["full", "lora"],
            "reprune_scorer": "recorded",
        },
        "train": [
            inst("tw-neox", "gpt_neox", "body2name", 1),
            inst("tw-llama", "llama", "docprose", 2, lr=3e-3),
            inst("tw-llama2", "llama", "body2name", 4, lr=5e-4),
        ],
        "test": [
            inst("tw-a", "llama", "body2name", 5, holdout="a"),
            inst("tw-b", "gpt_neox", "sig2doc", 3, holdout="b"),
            inst("tw-c", "gpt2", "docprose", 6, holdout="c"),
        ],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny world, real step trees of every split, and a v2 fit with 3 members on the train trees only."""
    import torch

    from govgym.agents.levermap import ScriptPolicy
    from govgym.agents.rollout import run_episode
    from govgym.envs.fastfit import FitConfig, fit_fast
    from govgym.envs.finetune_env import FineTuneEnv
    from govgym.envs.memo import EpisodeTree, memo_folder, save_tree

    d = tmp_path_factory.mktemp("fastv2")
    path = str(tiny_world(d / "tiny_world.yaml", d / "cache"))
    memo = d / "memo"
    folder = memo_folder(memo, path, torch.get_num_threads())
    folder.mkdir(parents=True)
    # actions: 0 continue, 1 reprune_hardest, 2 reprune_easiest, 3 switch:full, 4 switch:lora, 5 stop
    plays = {"train": {"tw-neox": [{}, {1: 1}, {1: 4}], "tw-llama": [{}, {1: 4}], "tw-llama2": [{}, {1: 2}]}}
    plays |= {f"test-{h}": {f"tw-{h}": [{}, {1: 4}]} for h in "abc"}
    for split, insts in plays.items():
        env = FineTuneEnv(path, split=split, wall_time_info=False)
        for name, scripts in insts.items():
            tree = EpisodeTree(env, name, 0)
            for sc in scripts:
                run_episode(tree, ScriptPolicy(sc), "script")
            save_tree(tree, folder)
        env.close()
    fm, report = fit_fast(FitConfig(instances=path, memo=str(memo), iterations=150, members=3))
    saved = fm.save(d / "fast_v2.json")
    return {"path": path, "memo": memo, "fm": fm, "report": report, "saved": saved, "dir": d}


def test_v2_model_simulates_every_split_with_measured_mechanics(world: dict) -> None:
    """Held-out splits (a new draw, an unseen task, an unseen architecture) run in the fast env with FLOPs, peaks
    and E_0 measured by the probe: budget fractions and E_0 as the real held-out runs had them."""
    from govgym.agents.sim2real import real_paths, replay
    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.fastmodel import INPUTS_V2
    from govgym.envs.instances import load_instances

    fm, iset = world["fm"], load_instances(world["path"])
    assert fm.inputs == INPUTS_V2 and fm.members == 3
    assert world["report"]["instances"] == ["tw-llama", "tw-llama2", "tw-neox"]  # held-out trees never read
    assert set(fm.mechanics["e0_instance"]) == {"tw-llama", "tw-llama2", "tw-neox"}
    assert world["report"]["mechanics_check"]["budget_frac_max_abs_err"] < 0.01
    for split in ("test-a", "test-b", "test-c"):
        env = FineTuneFastEnv(iset, split=split, model=fm, noise=False)
        paths = real_paths(iset, str(world["memo"]), split=split)
        assert len(paths) == 2, split
        for p in paths:
            f = replay(env, p)
            np.testing.assert_allclose(f["budget_frac"], p["budget_frac"], atol=0.01)
        # E_0: one evaluation of the base per (task, base), measured before any fit saw it; an instance's own
        # eval split (drawn by its data seed) moves it by ~0.5% here and 2-3% on the corpus
        obs, info = env.reset(options={"instance": paths[0]["instance"], "episode_seed": 0})
        from govgym.envs.memo import load_nodes

        tree = next(world["memo"].rglob(f"{paths[0]['instance']}-0.tree"))
        assert info["e0"] == pytest.approx(float(load_nodes(tree)[()].info["eval_loss"]), rel=0.03)
    # the descriptors differ where the instances do: SFT vs all tokens, lr multiple, base size
    st = {n: p.static for n, p in FineTuneFastEnv(iset, split="train", model=fm).plans.items()}
    assert st["tw-llama"].sft == 0.0 and st["tw-neox"].sft == 1.0
    assert st["tw-llama"].lr_mult / st["tw-llama2"].lr_mult == pytest.approx(6.0)
    assert st["tw-llama"].params != st["tw-neox"].params > 0


def test_ensemble_mean_disagreement_and_penalty(world: dict) -> None:
    """predict = the members' mean; member 0 is the single model of members=1; info carries the disagreement;
    penalty subtracts penalty x disagreement from the reward and nothing else."""
    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.fastfit import FitConfig, fit_fast
    from govgym.envs.instances import load_instances

    fm, iset = world["fm"], load_instances(world["path"])
    one, _ = fit_fast(FitConfig(instances=world["path"], memo=str(world["memo"]), iterations=150))
    assert one.members == 1 and not one.more
    for (w1, b1), (w3, b3) in zip(one.layers, fm.layers):
        np.testing.assert_array_equal(w1, w3)
        np.testing.assert_array_equal(b1, b3)
    x = np.random.default_rng(0).normal(fm.x_mean, fm.x_std, size=(6, len(fm.inputs)))
    each = fm.predict_members(x)
    assert each.shape == (3, 6, 5) and not np.allclose(each[0], each[1])
    np.testing.assert_allclose(fm.predict(x), each.mean(0), rtol=1e-12)
    np.testing.assert_allclose(fm.disagreement(x), each[:, :, 0].std(0), rtol=1e-12)
    np.testing.assert_allclose(one.predict(x), one.predict_members(x)[0], rtol=0, atol=0)
    assert one.disagreement(x[0]) == 0.0

    plain = FineTuneFastEnv(iset, split="test-c", model=fm, noise=False)
    pess = FineTuneFastEnv(iset, split="test-c", model=fm, noise=False, penalty=2.0)
    for env in (plain, pess):
        env.reset(options={"instance": "tw-c", "episode_seed": 0})
    for a in (0, 4, 0):
        o1, r1, *_, i1 = plain.step(a)
        o2, r2, *_, i2 = pess.step(a)
        np.testing.assert_array_equal(o1, o2)
        assert i1["disagreement"] == i2["disagreement"] > 0
        assert r2 == pytest.approx(r1 - 2.0 * i1["disagreement"], abs=1e-12)
    for bad in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ConfigError, match="penalty"):
            FineTuneFastEnv(iset, split="test-c", model=fm, penalty=bad)
    FineTuneFastEnv(iset, split="train", model=fm, penalty=np.float32(0.5))  # numpy scalars are numbers


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """``src`` with its JSON body edited and its content hash recomputed (integrity is not validation)."""
    from govgym.efficiency import safefile
    from govgym.envs.fastmodel import FAST_FORMAT, _file_version

    v = _file_version(src)
    _, body, _ = safefile.read(src, FAST_FORMAT, v, "fast model")
    edit(body)
    return safefile.write(dst, FAST_FORMAT, v, body)


def test_model_files_v1_and_v2_load_and_edits_are_refused(world: dict, tmp_path: Path) -> None:
    from govgym.efficiency import safefile
    from govgym.envs.fastmodel import INPUTS, default_model_path, load_model

    packaged = default_model_path()
    assert json.loads(packaged.read_bytes().split(b"\n", 1)[0])["version"] == 1
    v1 = load_model(packaged)
    assert v1.inputs == INPUTS and v1.members == 1
    back = load_model(world["saved"])
    assert back.inputs == world["fm"].inputs and back.members == 3
    x = np.tile(back.x_mean, (2, 1))
    np.testing.assert_array_equal(back.predict(x), world["fm"].predict(x))

    def member_shape(b):
        b["members"][0][0][0] = safefile.pack(np.zeros((3, 3)))

    def bad_inputs(b):
        b["inputs"] = list(INPUTS)  # v1's list with v2's arrays

    def e0_negative(b):
        b["mechanics"]["e0_instance"]["tw-neox"] = -1.0

    def params_missing(b):
        b["mechanics"].pop("params")

    for edit, match in [
        (member_shape, r"members\[0\]\[0\].weight"),
        (bad_inputs, "x_mean|inputs"),
        (e0_negative, r"e0_instance\['tw-neox'\]"),
        (params_missing, "params"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_model(_rewrite(world["saved"], tmp_path / f"{edit.__name__}.json", edit))

    def v1_with_members(b):
        b["members"] = []

    with pytest.raises(ConfigError, match="format-1"):
        load_model(_rewrite(packaged, tmp_path / "v1m.json", v1_with_members))


def test_sim2real_on_each_held_out_split_and_breadth_curve(world: dict, tmp_path: Path) -> None:
    """`govgym sim2real split=test-b|test-c` from the held-out trees alone; the error-vs-instances curve."""
    from govgym.cli import main

    for split in ("test-b", "test-c"):
        out = tmp_path / split
        argv = ["sim2real", f"instances={world['path']}", f"model={world['saved']}", f"memo={world['memo']}"]
        extra = ["eval=", "agents=[]", f"split={split}", "--no-progress", "--out", str(out)]
        if split == "test-c":
            extra = ["traces=[1,2]", "curve=instances", "fit_seeds=1", *extra]
        assert main([*argv, *extra]) == 0
        s = json.loads((out / "sim2real.json").read_text())
        assert s["split"] == split and s["paths"] == 2 and s["steps"] >= 4
        assert 0 <= s["eval_rel_err_mean"] < 0.5 and s["budget_frac_err_mean"] < 0.01
    assert [c["instances"] for c in s["curve"]] == [1, 2] and s["curve_unit"] == "instances"
    assert (out / "sim2real.png").stat().st_size > 1000


def test_randomized_episodes_keep_the_base_instance_mechanics(world: dict) -> None:
    """Domain randomization on a v2 model keeps the drawn base's task, workload and E_0 (v1's draws name
    v1's tasks, whose costs a v2 world does not have)."""
    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.instances import load_instances

    env = FineTuneFastEnv(load_instances(world["path"]), split="train", model=world["fm"], randomize=1.0)
    tasks = {p.static.task for p in env.plans.values()}
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert info["family"] == "random" and env.plan.static.task in tasks
        assert env.plan.e0 == pytest.approx(replace(env.plan.static).e0)
        done = False
        while not done:
            *_, term, trunc, info = env.step(0)
            done = term or trunc
