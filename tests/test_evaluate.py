"""The evaluation harness on the tiny real instance set: memo exactness, oracle, metrics, reproducibility."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(scope="module")
def tiny_cache(shared_cache):
    """The session's GOVGYM_CACHE (conftest): the tiny base model and data take ~15 s to build, then load in ~1 s."""
    return shared_cache


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_cache):
    """A fresh folder for the test's outputs (and memo), with the module's shared GOVGYM_CACHE."""
    monkeypatch.setenv("GOVGYM_CACHE", str(tiny_cache))
    return tmp_path


def test_memo_gives_exactly_the_real_episode(cache):
    """A policy run through a tree shared with other policies sees what a fresh env gives it."""
    from govgym.agents.heuristics import make_policy
    from govgym.agents.rollout import EpisodeTree, run_episode
    from govgym.envs.finetune_env import FineTuneEnv

    env = FineTuneEnv(TINY, wall_time_info=False)
    tree = EpisodeTree(env, "t-squeeze", 3)
    run_episode(tree, make_policy("fixed_budget", env.action_names), "fixed_budget")
    run_episode(tree, make_policy("random", env.action_names, seed=4), "random")
    got = run_episode(tree, make_policy("memory_reactive", env.action_names, margin=0.1, patience=9), "mr")
    assert tree.memo_hits > 0 and got.count("switch") >= 1  # it shared steps and then branched off

    fresh = FineTuneEnv(TINY, wall_time_info=False)
    pol = make_policy("memory_reactive", fresh.action_names, margin=0.1, patience=9)
    obs, info = fresh.reset(options={"instance": "t-squeeze", "episode_seed": 3})
    rewards, evals, done = [], [info["eval_loss"]], False
    while not done:
        a, _ = pol.predict(obs, action_masks=fresh.action_masks())
        obs, r, term, trunc, info = fresh.step(a)
        rewards.append(r)
        evals.append(info["eval_loss"] if not info.get("error") else evals[-1])
        done = term or trunc
    assert got.rewards == rewards and got.evals == evals  # bit-identical, not approximately


def test_oracle_is_the_best_stop_in_hindsight():
    from govgym.agents.rollout import Episode, oracle_episode

    fixed = Episode(
        "fixed_budget",
        "x",
        0,
        e0=4.0,
        budget=1.0,
        lam=0.5,
        actions=["continue"] * 4,
        evals=[4.0, 3.6, 3.4, 3.35, 3.34],
        flops=[0, 0.25, 0.5, 0.75, 1.0],
        rewards=[0.05, 0.02, -0.1, -0.12],
    )
    o = oracle_episode(fixed)
    assert o.actions == ["continue", "continue", "stop"] and o.ret == pytest.approx(0.07)
    assert o.final_eval == 3.4 and o.flops_used == 0.5
    assert o.flops_to_reach(3.6) == 0.25 and math.isinf(o.flops_to_reach(3.3))
    # an OOM on the last interval is no place to stop after
    crashed = Episode(
        "fixed_budget",
        "x",
        0,
        4.0,
        1.0,
        0.1,
        ["continue"] * 2,
        [4.0, 3.0, 3.0],
        [0, 0.5, 0.6],
        [0.25, -1.0],
        error="oom: x",
    )
    assert oracle_episode(crashed).actions == ["continue", "stop"]


def test_episode_rows_are_relative_to_the_fixed_run():
    from govgym.agents.evaluate import episode_rows, ftq_speedup, leaderboard
    from govgym.agents.rollout import Episode

    fixed = Episode(
        "fixed_budget",
        "x",
        0,
        4.0,
        1.0,
        0.1,
        ["continue"] * 4,
        [4.0, 3.5, 3.2, 3.05, 3.0],
        [0, 0.25, 0.5, 0.75, 1.0],
        [0.1] * 4,
    )
    fast = Episode(
        "gov",
        "x",
        0,
        4.0,
        1.0,
        0.1,
        ["switch:lora", "continue", "stop"],
        [4.0, 3.3, 3.01, 3.01],
        [0, 0.2, 0.4, 0.4],
        [0.1] * 3,
    )
    res = [{"instance": "x", "episode_seed": 0, "episodes": [fixed.to_dict(), fast.to_dict()]}]
    rows = {r["policy"]: r for r in episode_rows(res, 0.005)}
    assert rows["gov"]["final_eval_rel"] == pytest.approx(3.01 / 3.0) and rows["gov"][
        "flops_rel"
    ] == pytest.approx(0.4)
    assert rows["gov"]["ftq_rel"] == pytest.approx(0.4) and rows["fixed_budget"]["ftq_rel"] == pytest.approx(
        1.0
    )
    assert rows["gov"]["switches"] == 1 and "oracle" in rows
    speed, n = ftq_speedup(list(rows.values()), "gov", "fixed_budget")
    assert speed == pytest.approx(2.5) and n == 1
    board = leaderboard(list(rows.values()))
    assert {b["policy"] for b in board} == {"fixed_budget", "gov", "oracle"}


def test_an_agent_is_loaded_once_per_worker(cache, monkeypatch):
    """Every task a worker runs reuses the agent it loaded for the first one (loading reads and checks files)."""
    import govgym.agents.harness as ev
    from govgym.agents.heuristics import make_policy
    from govgym.agents.policies import PolicySpec, parse_spec

    real, loads = ev.build_policy, []

    def counting(spec, action_names, seed=0):
        if spec.kind != "agent":
            return real(spec, action_names, seed)
        loads.append(spec.path)
        return make_policy(
            "patience", action_names, patience=1
        )  # stands in for the loaded agent: the count is the point

    monkeypatch.setattr(ev, "build_policy", counting)
    monkeypatch.setattr(ev, "_AGENTS", {})
    specs = [parse_spec("fixed_budget"), PolicySpec("agent", "agent", path="runs/a/final.zip")]
    res = ev.run_tasks(TINY, "train", ["t-free"], [0, 1], specs, workers=1, progress=False)
    assert len(res) == 2 and all(len(r["episodes"]) == 2 for r in res)
    assert loads == ["runs/a/final.zip"]


def test_tolerance_is_one_config_field(cache, capsys):
    """FLOPs-to-equal-quality uses EvalConfig.tolerance, and the report prints that value, not a fixed 0.5%."""
    import inspect

    from govgym.agents.evaluate import EvalConfig, episode_rows

    assert (
        inspect.signature(episode_rows).parameters["tolerance"].default == EvalConfig().tolerance
    )  # what tune uses
    res = _fixed_run(cache / "e", tolerance=0.02)
    out = capsys.readouterr().out
    assert "first eval within 2% of the fixed run's final eval loss" in out and "0.5%" not in out
    ftq = {
        tol: next(r["ftq_rel"] for r in episode_rows(res["results"], tol) if r["policy"] == "fixed_budget")
        for tol in (0.0, 0.02)
    }
    assert (
        next(r["ftq_rel"] for r in res["rows"] if r["policy"] == "fixed_budget") == ftq[0.02]
    )  # evaluate used cfg's
    # the fixed run's loss still falls at its end: within 0% only there, within 2% some intervals before
    assert ftq[0.0] == 1.0 and ftq[0.02] < 1.0


def _fixed_run(out: Path, **cfg) -> dict:
    """``evaluate`` of the fixed budget alone on one tiny train instance, one seed (``cfg``: more fields)."""
    from govgym.agents.evaluate import EvalConfig, evaluate

    base = {"policies": ["fixed_budget"], "split": "train", "seeds": 1, "instances": TINY, "workers": 1}
    return evaluate(EvalConfig(**{**base, "max_instances": 1, "memo": "", **cfg}), out, progress=False)


def _benchmark(name: str):
    """A script of benchmarks/ loaded as a module (its folder on sys.path, as when it runs)."""
    import importlib.util
    import sys

    folder = Path(__file__).parents[1] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _evaluate(out: Path, memo: str = "") -> dict:
    from govgym.agents.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        policies=["fixed_budget", "patience:patience=1", "memory_reactive", "random"],
        split="train",
        seeds=2,
        instances=TINY,
        workers=1,
        max_instances=2,
        memo=memo,
    )
    return evaluate(cfg, out, progress=False)


def test_evaluation_is_reproducible_for_a_fixed_seed(cache):
    a = _evaluate(cache / "a")
    b = _evaluate(cache / "b")
    assert [e for r in a["results"] for e in r["episodes"]] == [
        e for r in b["results"] for e in r["episodes"]
    ]
    assert (
        json.loads((cache / "a" / "episodes.json").read_text())["rows"]
        == json.loads((cache / "b" / "episodes.json").read_text())["rows"]
    )
    for name in (
        "leaderboard.csv",
        "leaderboard.json",
        "episodes.csv",
        "quality_vs_flops.png",
        "curves.png",
        "trajectories.json",
    ):
        assert (cache / "a" / name).is_file(), name
    board = {r["policy"]: r for r in a["board"]}
    assert set(board) == {"fixed_budget", "patience:patience=1", "memory_reactive", "random", "oracle"}
    assert board["fixed_budget"]["final_eval_rel"] == 1.0 and board["fixed_budget"]["episodes"] == 4
    # the oracle stops along the fixed run at its best prefix: no stop-only policy beats its return
    rows = a["rows"]
    for inst, seed in {(r["instance"], r["episode_seed"]) for r in rows}:
        ret = {r["policy"]: r["return"] for r in rows if (r["instance"], r["episode_seed"]) == (inst, seed)}
        assert ret["oracle"] >= max(ret["fixed_budget"], ret["patience:patience=1"]) - 1e-12


def test_saved_memo_is_reused_exactly(cache):
    a = _evaluate(cache / "a", memo=str(cache / "memo"))
    assert a["meta"]["steps"]["real_steps"] > 0
    saved = list((cache / "memo").rglob("*.tree"))
    assert len(saved) == 4  # 2 instances x 2 seeds, under one namespace
    b = _evaluate(cache / "b", memo=str(cache / "memo"))
    assert b["meta"]["steps"]["real_steps"] == 0
    # equal as JSON: nan (an equal-quality figure where the fixed run itself OOMed) is not == nan
    assert json.dumps(b["rows"], sort_keys=True) == json.dumps(a["rows"], sort_keys=True)
    # an evaluation that runs no real step leaves the memo's files as they were, even when a new stop
    # rule derives stop nodes the trees never held (collected held-out runs stay read-only)
    from govgym.agents.evaluate import EvalConfig, evaluate
    from govgym.envs.memo import EpisodeTree, load_nodes, save_tree

    for path in saved:  # keep the fixed path only (as a collection of fixed runs leaves it): no stop node
        inst, seed = path.name.removesuffix(".tree").rsplit("-", 1)
        tree = EpisodeTree(None, inst, int(seed))
        tree.nodes = {k: v for k, v in load_nodes(path).items() if not any(k)}
        save_tree(tree, path.parent)
    before = {p: p.read_bytes() for p in saved}
    cfg = EvalConfig(
        policies=["patience:patience=2", "marginal_gain:kappa=2.0,patience=1"],
        split="train",
        seeds=2,
        instances=TINY,
        workers=1,
        max_instances=2,
        memo=str(cache / "memo"),
    )
    c = evaluate(cfg, cache / "c", progress=False)
    assert c["meta"]["steps"]["real_steps"] == 0
    assert {p: p.read_bytes() for p in (cache / "memo").rglob("*.tree")} == before
    # benchmarks/predictability.py feeds the same policies each fixed path's observations: its first stops
    # (the tables of docs/results_v2.md rest on them) must be exactly evaluate's episodes
    from govgym.agents.harness import task_env

    pred = _benchmark("predictability")
    paths = pred.fixed_paths(TINY, "train", str(cache / "memo"))
    got = pred.first_stops(paths, cfg.policies, "", task_env(TINY, "train").action_names)
    want = {(r["policy"], r["instance"], r["episode_seed"]): r["return"] for r in c["rows"]}
    assert len(paths) == 4 and set(got) == set(cfg.policies)
    for label, rows in got.items():
        for r in rows:
            assert r["return"] == pytest.approx(want[(label, r["instance"], r["episode_seed"])], abs=1e-9)


def test_tune_picks_the_best_grid_point(cache, monkeypatch):
    import govgym.agents.tune as tune_mod

    monkeypatch.setattr(tune_mod, "GRID", {"patience": {"patience": [1, 3]}, "zeus": {"beta": [1.1, 3.0]}})
    res = tune_mod.tune(
        cache / "t",
        TINY,
        seeds=1,
        workers=1,
        write=str(cache / "k.yaml"),
        progress=False,
        memo=str(cache / "tune_memo"),
    )
    for s in res["summary"]:
        pts = [g for g in res["grid"] if g["heuristic"] == s["heuristic"]]
        assert s["mean return"] == max(g["mean_return"] for g in pts)
    from govgym.agents.policies import load_knobs, parse_spec

    knobs = load_knobs(cache / "k.yaml")
    assert set(knobs) == {"patience", "zeus"}
    assert dict(parse_spec("patience", cache / "k.yaml").knobs) == knobs["patience"]  # evaluate picks them up
    # a subset: only patience is re-tuned, zeus's knobs are carried over from the given file, unchanged
    sub = tune_mod.tune(
        cache / "t2",
        TINY,
        seeds=1,
        workers=1,
        progress=False,
        memo=str(cache / "tune_memo"),
        heuristics=["patience"],
        knobs=str(cache / "k.yaml"),
    )
    assert {s["heuristic"] for s in sub["summary"]} == {"patience"}
    text = (cache / "t2" / "heuristics.yaml").read_text()
    assert "carried over" in text and load_knobs(cache / "t2" / "heuristics.yaml")["zeus"] == knobs["zeus"]


def test_bad_policy_specs_are_clear(cache):
    from govgym.agents.policies import parse_spec
    from govgym.typed import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'patience'"):
        parse_spec("patiense")
    with pytest.raises(ConfigError, match="must be key=value"):
        parse_spec("patience:3")
    with pytest.raises(ConfigError, match="no trained agent"):
        parse_spec(str(cache / "nothing.zip"))
    (cache / "m").mkdir()
    (cache / "m" / "final.zip").write_bytes(b"PK")
    with pytest.raises(ConfigError, match="agent.json"):
        parse_spec(str(cache / "m"))
    from govgym.agents.policies import AGENT_FORMAT, canonical_meta
    from govgym.sealed import sha256_bytes

    def write_meta(**meta):
        meta = {"format": AGENT_FORMAT, **meta}
        (cache / "m" / "agent.json").write_text(
            json.dumps({**meta, "sha256": sha256_bytes(canonical_meta(meta))})
        )

    write_meta(algo="ppo", obs_spec="0000")
    with pytest.raises(ConfigError, match="observation spec"):
        parse_spec(str(cache / "m" / "final.zip"))
    from govgym.efficiency.signals import spec_hash

    (cache / "m" / "policy.safetensors").write_bytes(b"not safetensors")
    write_meta(
        algo="ppo",
        obs_spec=spec_hash(),
        policy_class="ActorCriticPolicy",
        n_actions=7,
        files={
            "policy": {"name": "policy.safetensors", "sha256": sha256_bytes(b"not safetensors")},
            "obs_norm": {"name": "policy.safetensors", "sha256": sha256_bytes(b"not safetensors")},
        },
    )
    with pytest.raises(ConfigError, match="obs_norm.json is not JSON"):
        parse_spec(str(cache / "m" / "final.zip"))  # a corrupt policy file: one sentence, no traceback


def test_evaluate_and_tune_cli(cache):
    env = dict(os.environ)  # the shared GOVGYM_CACHE
    r = run_cli(  # in process (a subprocess costs ~9 s of importing torch)
        [
            "evaluate",
            "--out",
            str(cache / "e"),
            "--no-progress",
            f"instances={TINY}",
            "seeds=1",
            "max_instances=1",
            "workers=1",
            "policies=[fixed_budget,zeus]",
            f"memo={cache / 'memo'}",
        ],
        env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "oracle" in r.stdout and "FLOPs-to-equal-quality" in r.stdout
    assert np.isfinite(json.loads((cache / "e" / "leaderboard.json").read_text())["rows"][0]["return"])
    r = run_cli(["evaluate", "--out", str(cache / "e"), "seeds=-1"], env, check=False)
    assert r.returncode == 2 and "evaluate.seeds" in r.stderr and "Traceback" not in r.stderr
    assert (cache / "e" / "leaderboard.json").is_file()  # a bad call leaves earlier results alone
    r = run_cli(["tune", "--help"], env, check=False)
    assert r.returncode == 0 and "--write" in r.stdout


def test_equal_quality_grid_leaves_out_pairs_whose_fixed_run_errored():
    """A fixed run that OOMed leaves equal quality undefined (nan) for its pair; before, it made every grid
    point's mean nan and the tuner kept an arbitrary point. Now those pairs are left out, as evaluate does."""
    from govgym.agents.tune import grid_rows, grid_specs

    specs = [s for s in grid_specs(["patience"]) if s.name == "patience"][:2]
    lo, hi = specs[0].label, specs[1].label
    rows = [
        {"policy": lo, "eq_return": 0.2},
        {"policy": lo, "eq_return": float("nan")},  # the OOMed fixed run's pair
        {"policy": hi, "eq_return": 0.5},
        {"policy": hi, "eq_return": float("nan")},
    ]
    grid = grid_rows(specs, rows, "eq_return")
    assert [g["mean_return"] for g in grid] == [0.2, 0.5] and [g["episodes"] for g in grid] == [1, 1]
    nothing = grid_rows(specs, [{"policy": lo, "eq_return": float("nan")}], "eq_return")
    assert np.isnan(nothing[0]["mean_return"]) and nothing[0]["episodes"] == 0 and nothing[1]["episodes"] == 0


def test_noise_ceiling_reruns_a_saved_fixed_path_exactly_and_values_it_on_an_audit_set(cache):
    # benchmarks/noise_ceiling.py re-runs held-out fixed runs to evaluate them on a second, independent
    # set: the env's own eval losses must come out exactly as the saved tree holds them (nothing the run
    # sees changes), and the audit curve keeps the FLOP cost and changes only the quality term
    from govgym.envs.fastfit import tree_index
    from govgym.envs.instances import load_instances

    _fixed_run(cache / "a", memo=str(cache / "memo"))
    nc = _benchmark("noise_ceiling")
    inst, seed, tree = tree_index(load_instances(TINY), str(cache / "memo"), "train")[0]
    r = nc.rerun(("t", TINY, "train", str(tree), seed, 64))
    assert r["instance"] == inst and r["max_dA"] == 0.0
    assert len(r["audit"]) == len(r["evals"]) >= 2 and r["n_audit"] >= 32
    ca, cb, last = nc.curves(r)
    assert len(ca) == len(cb) and last == len(r["evals"]) - 1
    assert not np.allclose(ca[1:], cb[1:])  # another set of examples, another curve
    same_a, same_b, _ = nc.curves({**r, "audit": r["evals"]})  # the env's losses as the audit: same curve
    np.testing.assert_allclose(same_a, same_b, atol=1e-12)
