"""govgym/FineTuneFast-v1: fitted from real step trees of tiny runs, checked against them; the packaged model."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import govgym  # noqa: F401  (registers the envs)
from govgym.typed import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY_V1 = str(Path(__file__).parent / "data" / "tiny_instances_v1.yaml")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Real episodes of the tiny train instances (fixed runs, a reprune, switches, an OOM) saved as step trees,
    then a fast model fitted on them."""
    import torch

    from govgym.agents.harness import task_env
    from govgym.agents.levermap import ScriptPolicy
    from govgym.agents.rollout import run_episode
    from govgym.envs.fastfit import FitConfig, fit_fast
    from govgym.envs.memo import EpisodeTree, memo_folder, save_tree

    mp = pytest.MonkeyPatch()
    mp.setenv("GOVGYM_CACHE", str(tmp_path_factory.getbasetemp() / "envcache"))
    memo = tmp_path_factory.mktemp("memo")
    folder = memo_folder(memo, TINY_V1, torch.get_num_threads())
    folder.mkdir(parents=True)
    env = task_env(TINY_V1, "train")
    # actions: 1 reprune_hardest, 4 switch:lora, 5 switch:qlora+gc (see the tiny set's switch_targets)
    scripts = {"v-epochs": [{}, {2: 1}, {2: 4}, {2: 5}], "v-cap": [{}, {1: 4}], "v-tflops": [{}]}
    for inst, plays in scripts.items():
        tree = EpisodeTree(env, inst, 0)
        for sc in plays:
            run_episode(tree, ScriptPolicy(sc), "script")
        save_tree(tree, folder)
    fm, report = fit_fast(FitConfig(instances=TINY_V1, memo=str(memo), iterations=200))
    path = fm.save(tmp_path_factory.mktemp("fast") / "fast_model.json")
    yield {"fm": fm, "report": report, "path": path, "memo": memo}
    mp.undo()


def test_mechanics_replay_the_real_runs(fitted: dict) -> None:
    """Budget fractions, LR schedule (advanced by FLOPs across switches) and OOMs as the real env had them."""
    from govgym.agents.sim2real import real_paths, replay
    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.instances import load_instances

    chk = fitted["report"]["mechanics_check"]
    assert chk["transitions"] > 15 and chk["fixed_length_mismatches"] == 0
    assert chk["lr_frac_max_abs_err"] < 1e-6
    assert chk["budget_frac_max_abs_err"] < 0.01
    iset = load_instances(TINY_V1)
    env = FineTuneFastEnv(iset, split="train", model=fitted["fm"], noise=False)
    paths = real_paths(iset, str(fitted["memo"]), split="train")
    assert any(any(a in (3, 4, 5) for a in p["actions"]) for p in paths)  # switches are among them
    for p in paths:
        f = replay(env, p)
        assert len(f["budget_frac"]) == len(p["budget_frac"]), p["actions"]
        np.testing.assert_allclose(f["budget_frac"], p["budget_frac"], atol=0.01)
        assert f["error"].startswith("oom") == p["error"].startswith("oom"), p["actions"]


def test_check_env_as_make_builds_it_and_episodes_are_deterministic(fitted: dict) -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("govgym/FineTuneFast-v1", instances=TINY_V1, model=str(fitted["path"]))
    check_env(env.unwrapped, skip_render_check=True)

    def episode() -> list:
        out = []
        obs, _ = env.reset(options={"instance": "v-epochs", "episode_seed": 3})
        out.append(obs)
        while True:
            obs, r, term, trunc, _ = env.step(0)
            out += [obs, r]
            if term or trunc:
                return out

    a, b = episode(), episode()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_masks_follow_the_cap_and_data_kept(fitted: dict) -> None:
    from govgym.envs.fast_env import FineTuneFastEnv

    env = FineTuneFastEnv(TINY_V1, split="train", model=fitted["fm"])
    env.reset(options={"instance": "v-epochs", "episode_seed": 0})
    m = env.action_masks()
    assert m[1] and m[2] and not m[3] and m[4]  # full is in force: no switch to full
    f = env.ecfg.reprune_fraction
    env.step(1)  # drop-hardest
    assert env.state.kept == pytest.approx(1 - f) and env.state.dropped_hardest == pytest.approx(f)
    env.state.kept = 0.51  # 0.51 x (1 - f) < min_kept_fraction 0.5: both reprunes masked
    assert not env.action_masks()[1] and not env.action_masks()[2]
    env.reset(options={"instance": "v-cap", "episode_seed": 0})
    env.cap = 1e-3  # below every measured peak
    assert not env.action_masks()[3:6].any()


def test_model_files_are_checked(fitted: dict, tmp_path: Path) -> None:
    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.fastmodel import load_model

    bad = tmp_path / "edited.json"
    data = bytearray(Path(fitted["path"]).read_bytes())
    data[-20] = ord("7") if data[-20] != ord("7") else ord("8")
    bad.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="hash|sha256|checksum"):
        load_model(bad)
    with pytest.raises(ConfigError, match="not a file"):
        load_model(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="fit-fast instances="):  # a model of another set's base run
        FineTuneFastEnv(None, model=fitted["fm"])


def test_packaged_model_runs_the_packaged_instances() -> None:
    """The shipped configs/fast_v1.json: fitted on FineTune-v1's train split only, loads, passes check_env."""
    from gymnasium.utils.env_checker import check_env

    from govgym.envs.instances import load_instances

    env = gym.make("govgym/FineTuneFast-v1", split="test")
    check_env(env.unwrapped, skip_render_check=True)
    fm = env.unwrapped.fm
    held_out = {i.name for i in load_instances().test}
    assert fm.provenance["instances"] and not held_out & set(fm.provenance["instances"])
    obs, _ = env.reset(seed=0)
    done, n = False, 0
    while not done:
        obs, r, term, trunc, info = env.step(0)
        done, n = term or trunc, n + 1
    assert 3 <= n <= 40 and 0.5 < info["eval_loss"] / info["e0"] < 1.0


def test_train_on_the_fast_backend_from_the_cli(fitted: dict, tmp_path: Path) -> None:
    from govgym.cli import main

    code = main(
        [
            "train",
            "env=fast",
            f"fast_model={fitted['path']}",
            f"instances={TINY_V1}",
            "timesteps=512",
            "n_envs=4",
            "n_steps=64",
            "batch_size=128",
            "eval_every=0",
            "--no-progress",
            "--out",
            str(tmp_path / "agent"),
        ]
    )
    assert code == 0
    import json

    meta = json.loads((tmp_path / "agent" / "agent.json").read_text())
    assert meta["env_id"] == "govgym/FineTuneFast-v1" and meta["env_steps"] >= 512


def test_a_stop_only_agent_trains_and_acts_only_by_continue_or_stop(fitted: dict, tmp_path: Path) -> None:
    """``levers=false``: MaskablePPO trains under the env's mask and {continue, stop}; agent.json records
    the set and the loaded agent never picks a lever, even when the caller's mask allows every action."""
    import json

    import numpy as np

    from govgym.agents.agentfile import AgentPolicy
    from govgym.cli import main
    from govgym.envs.allowed import AllowedActions
    from govgym.envs.fast_env import FineTuneFastEnv

    out = tmp_path / "stop_only"
    args = ["train", "env=fast", f"fast_model={fitted['path']}", f"instances={TINY_V1}", "timesteps=256"]
    args += ["n_envs=2", "n_steps=64", "eval_every=0", "levers=false", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    meta = json.loads((out / "agent.json").read_text())
    assert meta["allowed_actions"] == ["continue", "stop"]
    agent = AgentPolicy(out)
    env = FineTuneFastEnv(TINY_V1, split="train", model=fitted["fm"])
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, size=(64, len(agent.mean))).astype(np.float32)
    acts, _ = agent.predict(obs, deterministic=False, action_masks=np.ones((64, agent.n_actions), dtype=bool))
    assert set(np.asarray(acts).tolist()) <= {0, agent.n_actions - 1}
    wrapped = AllowedActions(env)
    wrapped.reset(seed=0)
    assert wrapped.action_masks().tolist() == [True] + [False] * (agent.n_actions - 2) + [True]
    with pytest.raises(ValueError, match="not allowed"):
        wrapped.step(1)
    assert main(["train", "env=fast", "levers=false", "algo=dqn", "--out", str(tmp_path / "d")]) == 2
    # judged under equal quality, the price-trained agent is given its 20 features (its shield reads the 21st)
    ev = [
        "evaluate",
        f"instances={TINY_V1}",
        "objective=equal_quality",
        "seeds=1",
        "max_instances=1",
        "workers=1",
    ]
    ev += [
        "memo=",
        "policies=[fixed_budget]",
        "--agent",
        f"so={out}",
        "--no-progress",
        "--out",
        str(tmp_path / "eq"),
    ]
    assert main(ev) == 0
    board = json.loads((tmp_path / "eq" / "leaderboard.json").read_text())["rows"]
    assert {"so", "so+shield"} <= {b["policy"] for b in board}
    # exported, it stays stop-only: governor.json carries the set and the numpy governor applies it
    from govgym.deploy.artifact import load_governor

    assert main(["export", str(out), "-o", str(tmp_path / "exported"), f"instances={TINY_V1}"]) == 0
    gov = load_governor(tmp_path / "exported")
    assert gov.meta["allowed_actions"] == ["continue", "stop"]
    acts, _ = gov.predict(obs, action_masks=np.ones((64, gov.n_actions), dtype=bool))
    assert set(np.asarray(acts).tolist()) <= {0, gov.n_actions - 1}


def test_fit_fast_without_trees_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from govgym.cli import main

    assert main(["fit-fast", f"instances={TINY_V1}", f"memo={tmp_path}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "govgym map split=train" in err and "Traceback" not in err
    assert main(["train", "env=real", "randomize=0.5", "--out", str(tmp_path / "t")]) == 2
    assert "env=fast" in capsys.readouterr().err


def test_demo_trains_by_rl_on_the_fast_backend_then_evaluates_on_real_held_out_runs(
    fitted: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The main job end to end on the tiny v1 set: stop-only RL on its fast model (the shipped default's
    recipe), the exported artifact, then real held-out runs."""
    import json

    from govgym.cli import main
    from govgym.deploy.artifact import load_governor

    code = main(
        [
            "demo",
            "--out",
            str(tmp_path),
            f"instances={TINY_V1}",
            f"fast_model={fitted['path']}",
            "split=test",
            "max_instances=0",
            f"knobs={ROOT / 'configs' / 'heuristics_v1.yaml'}",
            "timesteps=2048",
            "seeds=1",
            "workers=1",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "[2/4] fast backend" in out and "[4/4] evaluate" in out and "oracle" in out
    assert "stop-only" in out
    meta = json.loads((tmp_path / "train" / "agent.json").read_text())
    assert meta["env_id"] == "govgym/FineTuneFast-v1" and meta["env_steps"] >= 2048 and not meta["pretrain"]
    assert meta["allowed_actions"] == ["continue", "stop"] and meta["config"]["levers"] is False
    gov = load_governor(tmp_path / "governor")  # exported: what GovernorCallback takes
    assert gov.kind == "agent" and gov.meta["allowed_actions"] == ["continue", "stop"]
    board = json.loads((tmp_path / "evaluate" / "leaderboard.json").read_text())
    rows = {row["policy"] for row in board["rows"]}
    assert {"agent", "agent+shield", "fixed_budget", "oracle", "early_stopping"} <= rows
    assert board["meta"]["config"]["split"] == "test"


@pytest.mark.parametrize(
    "arg, words",
    [
        ("split=test-b", ["test-b", "empty"]),
        ("fast_model=/nonexistent/fast.json", ["/nonexistent/fast.json"]),
        ("knobs=/nonexistent/knobs.yaml", ["/nonexistent/knobs.yaml", "govgym tune"]),
    ],
)
def test_demo_refuses_bad_input_before_it_builds_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture, arg: str, words: list[str]
) -> None:
    from govgym.cli import main

    code = main(["demo", "--out", str(tmp_path), f"instances={TINY_V1}", "split=test", arg, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and all(w in captured.err for w in words) and "Traceback" not in captured.err
    assert "[1/4]" not in captured.out and not (tmp_path / "train").exists()


def test_sim2real_on_held_out_runs_and_fewer_traces(
    fitted: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Real held-out episodes (govgym evaluate) vs the fast model, and a refit on fewer traces."""
    import json

    from govgym.agents.sim2real import spearman
    from govgym.cli import main

    memo = str(fitted["memo"])
    ev = tmp_path / "eval"
    argv = ["evaluate", f"instances={TINY_V1}", "seeds=2", "workers=1", f"memo={memo}", "--no-progress"]
    assert main([*argv, "policies=[fixed_budget,patience,continue]", "--out", str(ev)]) == 0
    out = tmp_path / "s2r"
    argv = ["sim2real", f"instances={TINY_V1}", f"model={fitted['path']}", f"memo={memo}", f"eval={ev}"]
    assert (
        main([*argv, "agents=[]", "seeds=2", "traces=[2]", "fit_seeds=1", "--no-progress", "--out", str(out)])
        == 0
    )
    s = json.loads((out / "sim2real.json").read_text())
    assert s["paths"] >= 2 and s["steps"] >= 4 and 0 <= s["eval_rel_err_mean"] < 0.5
    assert s["budget_frac_err_mean"] < 0.01 and s["oom_agreement"] == 1.0
    assert {r["policy"] for r in s["policies"]} == {"fixed_budget", "patience", "continue", "oracle"}
    assert s["curve"] and s["curve"][0]["traces"] == 2
    assert (out / "sim2real.png").stat().st_size > 1000 and "Spearman" in capsys.readouterr().out
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0)  # ties share their rank
