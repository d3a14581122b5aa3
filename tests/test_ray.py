"""Scale-out on Ray (``backend=ray``): the same results as the local pool, and clear errors without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from govgym.typed import ConfigError

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")
INSTALL = 'pip install "govgym[ray]"'


@pytest.fixture(scope="module")
def tiny_cache(shared_cache):
    """The session's GOVGYM_CACHE (conftest): the tiny base model and data are built once, then loaded."""
    return shared_cache


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_cache):
    monkeypatch.setenv("GOVGYM_CACHE", str(tiny_cache))
    return tmp_path


@pytest.fixture
def no_ray(monkeypatch):
    """Ray 'not installed': the cached availability check says no (Ray itself stays installed)."""
    import govgym.agents.scaleout as scaleout

    monkeypatch.setattr(scaleout, "ray_available", lambda: False)


def _returns(results: list[dict]) -> dict[tuple[str, int, str], float]:
    """{(instance, seed, policy): return} of run_tasks results (evaluate's and map's alike)."""
    out = {}
    for r in results:
        eps = r["episodes"] if "episodes" in r else list(r["levers"].values())
        for e in eps:
            out[(r["instance"], r["episode_seed"], e["policy"])] = sum(e["rewards"])
    return out


def test_evaluate_on_local_ray_equals_the_local_pool(cache):
    """2 workers each side: a spawned pool vs a local Ray with 2 CPUs; the same returns, trees and files."""
    ray = pytest.importorskip("ray")
    from govgym.agents.evaluate import EvalConfig, evaluate

    got = {}
    for backend in ("local", "ray"):
        cfg = EvalConfig(
            policies=["fixed_budget", "patience:patience=1", "memory_reactive", "random"],
            split="train",
            seeds=1,
            max_instances=2,
            instances=TINY,
            workers=2,
            memo=str(cache / f"memo-{backend}"),
            backend=backend,
        )
        got[backend] = evaluate(cfg, cache / f"eval-{backend}", progress=False)
        assert not ray.is_initialized()  # the Ray we started is shut down again
    local, onray = got["local"], got["ray"]
    assert local["meta"]["steps"]["real_steps"] > 0
    assert local["meta"]["steps"] == onray["meta"]["steps"]
    assert _returns(local["results"]) == _returns(onray["results"])  # bit-identical, not approximately
    assert len(_returns(local["results"])) == 2 * 1 * 4  # instances x seeds x policies
    rows = {b: json.loads((cache / f"eval-{b}" / "episodes.json").read_text())["rows"] for b in got}
    assert rows["local"] == rows["ray"]
    # each (instance, seed) task wrote its own tree, whole, in the same memo namespace; no temp file left
    trees = {
        b: sorted(p.relative_to(cache / f"memo-{b}") for p in (cache / f"memo-{b}").rglob("*.tree"))
        for b in got
    }
    assert trees["local"] == trees["ray"] and len(trees["ray"]) == 2
    assert not [p for p in (cache / "memo-ray").rglob("*") if ".tmp" in p.name]


@pytest.mark.slow  # the fast tier keeps Ray's representative: evaluate on a local Ray equals the pool
def test_collect_on_ray_equals_one_by_one(cache):
    """collect's (policy, episode) tasks on a Ray started beforehand: the same episodes as one by one."""
    ray = pytest.importorskip("ray")
    from govgym.cli.envjobs import collect

    rows = {}
    ray.init(num_cpus=2, include_dashboard=False)  # someone else's Ray: used as it is, left running
    try:
        for backend in ("local", "ray"):  # workers=1 both sides: the same torch threads per episode
            out = cache / f"collect-{backend}"
            rows[backend] = collect(TINY, "train", ["continue", "random"], 2, out, 0, False, 1, backend)
            assert len(list((out / "traces").glob("*.parquet"))) == 4
            assert len(list((out / "states").glob("*.json"))) == 4
        assert ray.is_initialized()
    finally:
        ray.shutdown()

    def strip(rs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "sec"} for r in rs]  # wall time differs, nothing else

    assert strip(rows["local"]) == strip(rows["ray"])
    assert [r["episode"] for r in rows["ray"]] == [0, 1, 0, 1]


def test_ray_not_installed_says_how_to_install(no_ray, cache, capsys):
    from govgym.agents.evaluate import EvalConfig, run_tasks
    from govgym.agents.levermap import MapConfig
    from govgym.cli import main
    from govgym.cli.options import CollectJob, TuneJob

    for make in (
        lambda: EvalConfig(backend="ray"),
        lambda: MapConfig(backend="ray"),
        lambda: TuneJob(backend="ray"),
        lambda: CollectJob(backend="ray"),
        lambda: run_tasks(TINY, "train", ["t-free"], [0], [], 2, backend="ray"),
    ):
        with pytest.raises(ConfigError, match="not installed") as err:
            make()
        assert INSTALL in str(err.value) and "backend=local" in str(err.value)
    # the CLI, in its earlier flag spelling: one sentence, exit status 2, no traceback
    assert main(["evaluate", "--backend", "ray", "--out", str(cache / "x")]) == 2
    e = capsys.readouterr().err
    assert INSTALL in e and "Traceback" not in e and not (cache / "x").exists()


def test_bad_backend_names_the_allowed_ones():
    from govgym.agents.evaluate import EvalConfig
    from govgym.cli import parse_args
    from govgym.cli.options import TuneJob

    with pytest.raises(
        ConfigError, match=r"evaluate\.backend: got 'rey'; allowed: local, ray\. Did you mean 'ray'"
    ):
        EvalConfig(backend="rey")
    with pytest.raises(ConfigError, match="backend: got 'dask'; allowed: local, ray"):
        TuneJob(backend="dask")
    with pytest.raises(ConfigError, match="add backend=ray"):  # an address the local pool would ignore
        EvalConfig(ray_address="auto")
    with pytest.raises(ConfigError, match="whitespace"):
        EvalConfig(backend="ray", ray_address="ray://head: 10001")
    # `--backend ray` and `--ray-address A` are the keys backend=ray, ray_address=A
    for cmd in ("evaluate", "map", "tune", "collect"):
        _, pairs = parse_args([cmd, "--backend", "ray", "--ray-address", "auto"])
        assert pairs == {"backend": "ray", "ray_address": "auto"}
