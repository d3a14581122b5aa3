"""The generated world (issue 18): tasks, bases of another family, instance generation, FineTune-v2,
the resumable corpus collection (killed with SIGKILL and resumed) and the Minari/Parquet export
(loaded with minari and replayed in the real env)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from govgym.typed import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 512,
    "pretrain_steps": 20,
}


# ----------------------------------------------------------------------------- tasks
def test_world_tasks_from_a_tiny_library(tmp_path: Path) -> None:
    from govgym.efficiency import corpus, tasks

    src = '''"""A module docstring long enough to count as prose: it explains, in plain words, what the module
does, why it exists, and how the functions below fit together into one small piece of a library that
a reader may want to continue."""

# This helper keeps the cache small: entries older than the limit are
# dropped first, then the least used ones, until the size fits under the
# cap that the caller asked for when it built the cache object here.
def trim_cache(cache, limit):
    """Drop old entries until the cache fits."""
    while len(cache) > limit:
        cache.popitem()
    return cache
'''
    files = []
    for i in range(40):  # enough names that some land in the finetune half (split by path hash)
        p = tmp_path / f"mod{i}.py"
        p.write_text(src.replace("trim_cache", f"trim_cache{i}"), encoding="utf-8")
        files.append(p)
    m = corpus.make_manifest(files, tmp_path)
    for task in tasks.WORLD_TASKS:
        rows = tasks.task_examples(m, task, tmp_path)
        assert rows, task
        for r in rows:
            assert r["text"] == r["prompt"] + r["response"] and r["response"].strip()
            if task in tasks.PLAIN_TASKS:
                assert r["prompt"] == ""
    name = tasks.task_examples(m, "body2name", tmp_path)[0]
    assert name["prompt"].startswith("<code> def _(") and name["response"].startswith(" trim_cache")
    assert "def trim_cache" not in name["prompt"]
    sig = tasks.task_examples(m, "sig2doc", tmp_path)[0]
    assert sig["response"] == " Drop old entries until the cache fits." and "while" not in sig["prompt"]
    with pytest.raises(ValueError, match="unknown task"):
        tasks.task_examples(m, "nope", tmp_path)


# ----------------------------------------------------------------------------- generation
PEAKS = {"full": 40.0, "lora": 30.0, "lora+gc": 20.0}


def fixed_peaks(base: str, batch: int, seq_len: int, strategies: list[str]) -> dict[str, float]:
    """Peaks that grow with the batch, as measured ones do (the generator only needs an ordering)."""
    return {s: PEAKS[s] * batch / 8 for s in strategies}


def test_generate_is_reproducible_and_validated(tmp_path: Path) -> None:
    from govgym.envs.instances import load_instances
    from govgym.envs.world import generate, load_spec, write_set

    spec_path = ROOT / "configs" / "world_v2.yaml"
    over = {"train": {"count": 30}, "a": {"count": 4}, "b": {"count": 4}, "c": {"count": 4}}
    a = write_set(generate(load_spec(spec_path, over), fixed_peaks), tmp_path / "a.yaml", "w.yaml")
    b = write_set(generate(load_spec(spec_path, over), fixed_peaks), tmp_path / "b.yaml", "w.yaml")
    c = write_set(
        generate(load_spec(spec_path, {**over, "seed": 1}), fixed_peaks), tmp_path / "c.yaml", "w.yaml"
    )
    assert a.read_bytes().replace(b"a.yaml", b"") == b.read_bytes().replace(b"b.yaml", b"")
    assert a.read_bytes() != c.read_bytes()
    s = load_instances(a)
    assert len(s.split("train")) == 30 and all(len(s.split(f"test-{h}")) == 4 for h in "abc")
    train_tasks = {i.draw["task"] for i in s.train}
    assert not {i.draw["task"] for i in s.split("test-b")} & train_tasks
    assert not {i.draw["base"] for i in s.split("test-c")} & {i.draw["base"] for i in s.train}
    for inst in s.train + s.test:
        assert inst.draw["intervals"] >= 1
        for cap in [inst.cap_mb, *(ch.cap_mb for ch in inst.cap_schedule)]:
            assert cap == 0 or cap >= min(inst.draw["peaks_mb"].values())
        if inst.cap_mb:
            assert inst.cap_mb >= inst.draw["peaks_mb"][inst.start_strategy]
    # a held-out-only set (fresh draws of one split, no train instances) is written loadable
    only_b = {"train": {"count": 0}, "a": {"count": 0}, "b": {"count": 3}, "c": {"count": 0}}
    d = write_set(
        generate(load_spec(spec_path, {**only_b, "seed": 2}), fixed_peaks), tmp_path / "d.yaml", "w.yaml"
    )
    s = load_instances(d)
    assert s.train == [] and len(s.split("test-b")) == 3


def test_generate_redraws_or_refuses_unrunnable_budgets(tmp_path: Path) -> None:
    from govgym.envs.world import generate, load_spec, write_set

    spec_path = ROOT / "configs" / "world_v2.yaml"
    # 64 examples, batch 16, 10 steps per interval: 0.5 epochs is 0.2 intervals -> never runnable
    never = {
        "train": {"count": 3},
        "a": {"count": 0},
        "b": {"count": 0},
        "c": {"count": 0},
        "max_examples": {"lo": 64, "hi": 64},
        "batch_sizes": [16],
        "budget_epochs": {"lo": 0.5, "hi": 0.6},
    }
    out = tmp_path / "never.yaml"
    with pytest.raises(ConfigError, match="under one interval"):
        write_set(generate(load_spec(spec_path, never), fixed_peaks), out, "w.yaml")
    assert not out.exists()  # refused: nothing written
    # 0.5-8 epochs of 64 examples: the short budgets are redrawn, the rest written
    some = {**never, "train": {"count": 20}, "budget_epochs": {"lo": 0.5, "hi": 8.0, "log": True}}
    data = generate(load_spec(spec_path, some), fixed_peaks)
    assert data["generated"]["redrawn"] > 0
    assert all(i["draw"]["intervals"] >= 1 for i in data["train"])


def test_world_spec_errors_name_the_field() -> None:
    from govgym.envs.world import load_spec

    spec_path = ROOT / "configs" / "world_v2.yaml"
    with pytest.raises(ConfigError, match="b.tasks"):
        load_spec(spec_path, {"b": {"tasks": ["doc2code"]}})
    with pytest.raises(ConfigError, match="c.bases"):
        load_spec(spec_path, {"c": {"bases": ["llama-1m"]}})
    with pytest.raises(ConfigError, match="tuned_lr.llama-1m"):
        load_spec(spec_path, {"tuned_lr": {"llama-1m": 0.0}})


def test_packaged_v2_set_has_the_splits_the_issue_asks() -> None:
    from govgym.envs.instances import default_instances_path, load_instances

    s = load_instances(default_instances_path(2))
    assert len(s.train) >= 300
    train_tasks = {i.draw["task"] for i in s.train}
    assert len(train_tasks) >= 4 and len({i.draw["task"] for i in s.train + s.test}) >= 6
    assert len({i.draw["task"] for i in s.split("test-b")} - train_tasks) >= 2
    c_bases = {i.draw["base"] for i in s.split("test-c")}
    train_bases = {i.draw["base"] for i in s.train}
    assert not c_bases & train_bases
    arch = lambda b: b.split("-")[0]  # noqa: E731
    size = lambda b: b.split("-")[1]  # noqa: E731
    assert {arch(b) for b in c_bases} - {arch(b) for b in train_bases}  # an architecture never in training
    assert {size(b) for b in c_bases} - {size(b) for b in train_bases}  # a size never in training
    assert len({i.family for i in s.train}) == 5


# ----------------------------------------------------------------------------- tiny world: env, corpus, dataset
def tiny_world(path: Path, cache: Path) -> Path:
    """Two train instances and one held out on tiny bases of two families (GPT-NeoX and Llama)."""
    from govgym.efficiency.basemodel import LORA_TARGETS

    def inst(name: str, arch: str, task: str, seed: int, **kw) -> dict:
        run = {
            "model": {"arch": arch, **TINY_MODEL},
            "memory": {"lora_targets": LORA_TARGETS[arch]},
            "data": {"task": task, "seed": seed, "response_only": task != "docprose"},
        }
        return {"name": name, "lam": 0.1, "seed": seed, "budget_epochs": 1.0, "run": run, **kw}

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
            inst("tw-neox", "gpt_neox", "body2name", 1, family="noisy"),
            inst("tw-llama", "llama", "docprose", 2, family="noisy"),
        ],
        "test": [inst("tw-held", "gpt_neox", "sig2doc", 3, family="noisy", holdout="b")],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    return tiny_world(d / "tiny_world.yaml", d / "cache")


def test_finetune_v2_passes_check_env(world: Path) -> None:
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import govgym  # noqa: F401  (registers the envs)

    env = gym.make("govgym/FineTune-v2", instances=str(world), split="test-b")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert info["instance"] == "tw-held" and env.unwrapped.state()["env_id"] == "govgym/FineTune-v2"
    assert type(env.unwrapped.run.model).__name__ == "GPTNeoXForCausalLM"
    env.close()


def _collect(world: Path, out: Path, **kw) -> dict:
    from govgym.agents.collection import CollectWorldConfig, collect_world

    cfg = CollectWorldConfig(instances=str(world), out=str(out), branches=2, **kw)
    return collect_world(cfg, progress=False)


def _episodes(out: Path) -> dict:
    return {
        p.name: [(e["id"], e["actions"], e["rewards"]) for e in json.loads(p.read_text())["episodes"]]
        for p in sorted((out / "episodes").glob("*.json"))
    }


@pytest.fixture(scope="module")
def corpus(world: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    _collect(world, out)
    return out


def test_collection_writes_every_episode_once(corpus: Path) -> None:
    from govgym.agents.collection import corpus_summary

    eps = _episodes(corpus)
    assert sorted(eps) == ["tw-llama-0.json", "tw-neox-0.json"]
    for unit in eps.values():
        ids = [e[0] for e in unit]
        assert len(ids) == len(set(ids)) and "fixed" in ids and "random0" in ids
        assert any(i.startswith("branch") for i in ids)
    s = corpus_summary(corpus)
    assert s["units_done"] == 2 and s["real_steps"] > 0
    assert not list((corpus / "episodes").glob(".*"))  # no temp file left


@pytest.mark.slow
def test_collection_resumes_after_sigkill(world: Path, corpus: Path, tmp_path: Path) -> None:
    """kill -9 mid-collection, restart: nothing lost, nothing duplicated, same episodes as uninterrupted."""
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "govgym.cli",
        "collect-world",
        f"instances={world}",
        f"out={out}",
        "branches=2",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("memo/*/*.tree")):
        time.sleep(0.05)  # the first tree: mid-unit (its episode list is written last)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(out.glob("memo/*/*.tree")), proc.stderr.read().decode()[-2000:]
    done_before = sorted(p.name for p in (out / "episodes").glob("*.json"))
    assert len(done_before) < 2  # killed before the end
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _episodes(out) == _episodes(corpus)  # same units, same episodes, same real rewards
    assert not list((out / "episodes").glob(".*"))


def test_collect_world_cli_skips_finished_units(world: Path, corpus: Path) -> None:
    """A second collection over a finished corpus runs nothing (the resume path, in-process)."""
    before = {p.name: p.stat().st_mtime_ns for p in (corpus / "episodes").glob("*.json")}
    s = _collect(world, corpus)
    assert s["this_run"]["units"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (corpus / "episodes").glob("*.json")} == before


@pytest.fixture(scope="module")
def exported(corpus: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny corpus exported once (Minari + Parquet), to a relative --out as users type it."""
    pytest.importorskip("minari")
    from govgym.agents.dataset import ExportConfig, export_dataset

    here, base = os.getcwd(), tmp_path_factory.mktemp("export")
    os.chdir(base)  # minari once doubled a relative path
    try:
        s = export_dataset(ExportConfig(corpus=str(corpus)), Path("ds"))
    finally:
        os.chdir(here)
    return base / "ds", s


def test_dataset_export_loads_in_minari_and_replays(
    world: Path, exported: tuple[Path, dict], monkeypatch
) -> None:
    import minari
    import pyarrow.parquet as pq

    from govgym.agents.dataset import DATASET_ID
    from govgym.envs.finetune_env import FineTuneEnv

    out, s = exported
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out / "minari"))
    ds = minari.load_dataset(DATASET_ID)
    assert ds.total_episodes == s["episodes"] and ds.total_steps == s["steps"]
    assert pq.read_table(out / "steps.parquet").num_rows == s["steps"]
    assert "PSF" in (out / "DATASET_CARD.md").read_text()
    meta = list(ds.storage.get_episode_metadata(range(ds.total_episodes)))
    env = FineTuneEnv(str(world), split="train")
    replayed = 0
    for i, ep in enumerate(ds.iterate_episodes()):
        if meta[i]["policy"] not in ("fixed_budget", "random") and not meta[i]["episode"].startswith(
            "branch"
        ):
            continue
        obs, _ = env.reset(options={"instance": meta[i]["instance"], "episode_seed": meta[i]["episode_seed"]})
        np.testing.assert_array_equal(obs, ep.observations[0])
        assert ep.infos["action_mask"].shape == (len(ep.actions) + 1, env.action_space.n)
        for t, a in enumerate(ep.actions):
            obs, r, term, trunc, _ = env.step(int(a))
            np.testing.assert_array_equal(obs, ep.observations[t + 1])
            assert r == ep.rewards[t] and term == ep.terminations[t] and trunc == ep.truncations[t]
        replayed += 1
        if replayed == 3:
            break
    assert replayed == 3


def test_headroom_bounds_hold_on_a_tiny_corpus(corpus: Path) -> None:
    from govgym.agents.dataset import episodes
    from govgym.agents.headroom import headroom

    h = headroom(corpus, tolerance=0.005)
    assert h["best_heuristic"] in h["heuristic_means"]
    for r in h["rows"]:
        assert r["oracle"] >= max(r["fixed"], 0.0) - 1e-12  # stopping at once (0) or the full run are stops
        assert r["explored"] >= r["oracle"] - 1e-12  # the oracle's stop is one of the explored schedules
    assert h["by_family"][-1]["family"] == "all" and h["by_family"][-1]["units"] == len(h["rows"])
    # equal quality: the fixed run reaches its own final eval, so the stop-only share is in (0, 1]; any
    # explored schedule includes the fixed run, so it needs no more
    eps = {
        e["unit"]: e for e in episodes(corpus)[0] if e["record"]["id"] == "fixed" and not e["record"]["error"]
    }
    assert set(h["eq_units"]) == set(eps) and eps
    for unit, q in h["eq_units"].items():
        assert 0 < q["eq_explored_frac"] <= q["eq_stop_frac"] <= 1.0
        infos = [n.info for n in eps[unit]["nodes"][1:]]
        target = infos[-1]["eval_loss"] * 1.005
        first = next(i for i in infos if i["eval_loss"] <= target)  # by hand, on the fixed run
        assert q["eq_stop_frac"] == first["flops_used"] / infos[-1]["flops_used"]
    assert h["by_family"][-1]["eq_units"] == len(eps)


def test_offline_cql_learns_a_stop_only_agent_that_loads_and_exports(
    world: Path, exported: tuple[Path, dict], tmp_path: Path
) -> None:
    """``govgym offline`` on the exported Minari dataset: a DQNPolicy agent folder (algo cql) that
    AgentPolicy and the exported numpy Governor load, act alike, and never pull a lever."""
    pytest.importorskip("torchrl")
    from govgym.agents.offline import OfflineConfig, fixed_paths, load_dataset, stop_returns, train_offline
    from govgym.agents.policies import AgentPolicy
    from govgym.deploy.artifact import export, load_governor

    cfg = OfflineConfig(dataset=str(exported[0]), alpha=1.0, updates=300, log_every=100, val_fraction=0.3)
    path, summary = train_offline(cfg, tmp_path / "cql", progress=False)
    meta = json.loads(path.read_text())
    assert meta["algo"] == "cql" and meta["allowed_actions"] == ["continue", "stop"]
    assert meta["policy_class"] == "DQNPolicy" and summary["transitions"] > 0
    log = (tmp_path / "cql" / "train_log.csv").read_text().splitlines()
    assert len(log) == 4 and log[0].startswith("update,loss_td,loss_cql,val_return")
    path3 = {"rewards": np.array([0.05, 0.02, -1.0])}  # stop before the OOM's -1, at decision 2: 0.07
    assert stop_returns(path3, np.array([False, False, True])) == pytest.approx(0.07)
    assert stop_returns(path3, np.zeros(3, dtype=bool)) == pytest.approx(-0.93)  # no stop: to the end
    eps, names, card = load_dataset(cfg)
    assert (
        fixed_paths(eps) and names[0] == "continue" and card["action_names"] == names
    )  # the card names them
    obs = np.concatenate([e["obs"] for e in eps]).astype(np.float32)
    agent = AgentPolicy(tmp_path / "cql")
    every = np.ones((len(obs), len(names)), dtype=bool)
    acts = agent.predict(obs, action_masks=every)[0]
    assert set(acts.tolist()) <= {names.index("continue"), names.index("stop")}
    no_stop = every.copy()
    no_stop[:, names.index("stop")] = False
    assert (agent.predict(obs, action_masks=no_stop)[0] == names.index("continue")).all()
    gov = load_governor(export(tmp_path / "cql", tmp_path / "gov", reference=agent, instances=str(world)))
    mine = np.array([int(gov.predict(o, action_masks=m)[0]) for o, m in zip(obs, every, strict=True)])
    np.testing.assert_array_equal(mine, acts)


def test_offline_refuses_bad_input_with_one_line(tmp_path: Path, exported: tuple[Path, dict]) -> None:
    from govgym.agents.offline import OfflineConfig, load_dataset
    from govgym.typed import ConfigError

    with pytest.raises(ConfigError, match="no dataset.json"):
        load_dataset(OfflineConfig(dataset=str(tmp_path / "nowhere")))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a dataset card"):
        load_dataset(OfflineConfig(dataset=str(bad)))
    (bad / "dataset.json").write_text(json.dumps({"dataset_id": "../../etc"}))
    with pytest.raises(ConfigError, match="not a dataset id"):
        load_dataset(OfflineConfig(dataset=str(bad)))
    (bad / "dataset.json").write_text(json.dumps({"dataset_id": "govgym/x-v0"}))
    with pytest.raises(ConfigError, match="export with minari=true"):
        load_dataset(OfflineConfig(dataset=str(bad)))
    (bad / "minari" / "govgym" / "x-v0").mkdir(parents=True)  # a folder minari cannot read
    with pytest.raises(ConfigError, match="minari cannot open"):
        load_dataset(OfflineConfig(dataset=str(bad)))
    with pytest.raises(ConfigError, match="offline.instances"):
        load_dataset(OfflineConfig(dataset=str(exported[0]), instances=str(tmp_path / "none.yaml")))
    with pytest.raises(ConfigError, match="net_arch"):
        OfflineConfig(net_arch=[0])
    with pytest.raises(ConfigError, match="alpha"):
        OfflineConfig(alpha=-1)


def test_world_jobs_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The fast tier's stand-in for the subprocess smoke test below: same refusals, no interpreter start."""
    from govgym.cli import main

    out = tmp_path / "set.yaml"
    never = ["max_examples={lo: 64, hi: 64}", "batch_sizes=[16]", "budget_epochs={lo: 0.5, hi: 0.6}"]
    counts = ["train.count=2", "a.count=0", "b.count=0", "c.count=0"]
    assert main(["instances", "generate", "--out", str(out), *never, *counts]) == 2
    assert "under one interval" in capsys.readouterr().err and not out.exists()
    assert main(["dataset", "export", f"corpus={tmp_path / 'none'}"]) == 2
    assert "collect-world" in capsys.readouterr().err
    assert main(["dataset", "headroom", f"corpus={tmp_path / 'none'}", "tolerance=0.005"]) == 2
    assert "collection.json" in capsys.readouterr().err
    assert main(["dataset", "headroom", "tolerance=lots"]) == 2
    assert "tolerance: expected a number" in capsys.readouterr().err
    assert main(["offline", f"dataset={tmp_path / 'none'}", "--out", str(tmp_path / "cql")]) == 2
    err = capsys.readouterr().err
    assert "no dataset.json" in err and "Traceback" not in err and not (tmp_path / "cql").exists()


@pytest.mark.slow
def test_world_cli_smoke(tmp_path: Path) -> None:
    """`govgym instances generate` refuses an unrunnable world (exit 2, nothing written); `dataset export`
    names a missing corpus; `collect-world --help` lists its keys."""
    out = tmp_path / "set.yaml"
    gov = [sys.executable, "-m", "govgym.cli"]
    r = subprocess.run(
        [*gov, "instances", "generate", "--out", str(out), "max_examples={lo: 64, hi: 64}", "batch_sizes=[16]",
         "budget_epochs={lo: 0.5, hi: 0.6}", "train.count=2", "a.count=0", "b.count=0", "c.count=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and "under one interval" in r.stderr and not out.exists(), r.stderr[-1500:]
    r = subprocess.run(
        [*gov, "dataset", "export", f"corpus={tmp_path / 'none'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "corpus" in r.stderr and "collect-world" in r.stderr, r.stderr[-1500:]
    r = subprocess.run(
        [*gov, "collect-world", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "defer_bases" in r.stdout and "random_episodes" in r.stdout


def test_world_cli_takes_flags_between_settings(tmp_path: Path, capsys) -> None:
    """`collect-world seeds=2 --no-progress out=X` parses as every other subcommand does (pairs after a
    flag were refused as 'unrecognized arguments'); a stray word is still one clear error."""
    from govgym.cli import main

    missing = tmp_path / "none.yaml"
    assert main(["collect-world", "seeds=2", "--no-progress", f"instances={missing}", "out=x"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized" not in err and "none.yaml" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    assert main(["dataset", "headroom", "--out", str(tmp_path / "h"), f"corpus={tmp_path / 'c'}"]) == 2
    assert "corpus" in capsys.readouterr().err and not (tmp_path / "h").exists()
    with pytest.raises(SystemExit) as e:
        main(["collect-world", "--no-progress", "seeds=2", "stray"])
    assert e.value.code == 2 and "unrecognized arguments: stray" in capsys.readouterr().err
