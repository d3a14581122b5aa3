"""Round 2 of ../shared/bad-inputs.md, classes 1-3 for the fast model, agents, snapshots, export, outputs.

One parametrized test per class over its surfaces, each row of the table a case:

- class 1: every value read from a loaded file is checked as strictly as a typed one, even when the
  file's content hash was recomputed after the edit (F2-F5: fast model; agent folder; run snapshot;
  N16/N17: the instance file behind `govgym export`);
- class 2: an output path that cannot be written is refused before any work (P1, P3, P4);
- class 3: numbers that overflow where they become counts, and non-integral counts, refused at load
  (N6-N8), and K3: a killed deploy's temp folders removed by the next deploy.

CLI cases run ``govgym.cli.main`` in-process: they check the message and exit status only.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from govgym.cli import main
from govgym.efficiency import safefile
from govgym.envs.fastmodel import FAST_FORMAT, default_model_path, load_model
from govgym.errors import RunError
from govgym.typed import ConfigError

DATA = Path(__file__).parent / "data"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """(exit status, stderr) of ``govgym ARGV`` run in this process."""
    status = main(list(argv))
    return status, capsys.readouterr().err


# ---------------------------------------------------------------------------- class 1: loaded files
def _fast_body() -> dict[str, Any]:
    _, body, _ = safefile.read(default_model_path(), FAST_FORMAT, 1, "fast model")  # the packaged v1 model
    return body


def _set_array(body: dict[str, Any], key: str, fn: Any) -> None:
    body[key] = safefile.pack(fn(np.asarray(safefile.unpack(body[key]), dtype=np.float64)))


def _edit_layer(body: dict[str, Any], fn: Any) -> None:
    w = np.asarray(safefile.unpack(body["layers"][0][0]), dtype=np.float64)
    body["layers"][0][0] = safefile.pack(fn(w))


FAST_CASES = {
    "F2 nan weights": (lambda b: _edit_layer(b, lambda w: w * np.nan), r"layers\[0\]\.weight holds nan"),
    "F3 zero std": (lambda b: _set_array(b, "x_std", lambda a: a * 0), "x_std / y_std must be > 0"),
    "F3 zero costs": (
        lambda b: b["mechanics"]["costs"].update({k: [0.0, 0.0] for k in b["mechanics"]["costs"]}),
        r"mechanics.costs\[.*must be finite and in \(0",
    ),
    "F4 1e300 scales": (lambda b: _set_array(b, "y_std", lambda a: a * 1e300), "y_std must hold values"),
    "F4 short arrays": (lambda b: _set_array(b, "x_mean", lambda a: a[:5]), r"x_mean has shape \(5,\)"),
    "F5 deleted section": (lambda b: b["mechanics"].pop("peaks"), "mechanics lacks peaks"),
    "F5 deleted weights": (lambda b: b.pop("layers"), "lacks layers"),
    "F5 e0 zero": (
        lambda b: b["mechanics"]["e0"].update({k: 0.0 for k in b["mechanics"]["e0"]}),
        r"mechanics.e0\[.*\(0, 100\]",
    ),
    "F4 noise sd 1e300": (
        lambda b: b["mechanics"]["noise"].update(sd=[1e300] * 5),
        "mechanics.noise",
    ),
    "F5 layer chain": (lambda b: _edit_layer(b, lambda w: w[:, :10]), r"layers\[0\].bias has shape"),
}


def _fast_case(tmp_path: Path, edit: Any) -> tuple[Any, str]:
    body = copy.deepcopy(_fast_body())
    edit(body)
    path = safefile.write(tmp_path / "fast.json", FAST_FORMAT, 1, body)  # hash recomputed, the v1 format
    return (lambda: load_model(path)), "fast model"


def _agent_folder(tmp_path: Path) -> Path:
    """A real MaskablePPO policy (untrained) written as an agent folder by ``write_agent``."""
    from gymnasium import spaces
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    from govgym.agents.policies import write_agent
    from govgym.efficiency.signals import FEATURE_NAMES, HIGH, LOW, spec_hash

    policy = MaskableActorCriticPolicy(
        spaces.Box(LOW, HIGH, dtype=np.float32), spaces.Discrete(7), lambda _: 0.0
    )
    model = SimpleNamespace(policy=policy, policy_kwargs={})
    rms = SimpleNamespace(mean=np.zeros(len(LOW)), var=np.ones(len(LOW)), count=10.0)
    venv = SimpleNamespace(
        obs_rms=rms, norm_obs=True, clip_obs=10.0, epsilon=1e-8, action_space=spaces.Discrete(7)
    )
    folder = tmp_path / "agent"
    folder.mkdir()
    names = ["continue", "stop", "reprune_hardest", "reprune_easiest", "switch_a", "switch_b", "switch_c"]
    write_agent(
        folder,
        model,
        venv,
        {
            "algo": "maskable_ppo",
            "obs_spec": spec_hash(),
            "features": list(FEATURE_NAMES),
            "action_names": names,
        },
    )
    return folder


def _rehash_agent(
    folder: Path, meta_edit: Any = None, norm_edit: Any = None, weights_edit: Any = None
) -> None:
    """Edit an agent's files and recompute every hash, as anyone can."""
    from safetensors.torch import load, save

    from govgym.agents.policies import canonical_meta

    meta = json.loads((folder / "agent.json").read_text())
    if norm_edit:
        norm = json.loads((folder / "obs_norm.json").read_text())
        norm_edit(norm)
        data = json.dumps(norm).encode()
        (folder / "obs_norm.json").write_bytes(data)
        meta["files"]["obs_norm"]["sha256"] = safefile.sha256_bytes(data)
    if weights_edit:
        sd = load((folder / "policy.safetensors").read_bytes())
        weights_edit(sd)
        data = save(sd)
        (folder / "policy.safetensors").write_bytes(data)
        meta["files"]["policy"]["sha256"] = safefile.sha256_bytes(data)
    if meta_edit:
        meta_edit(meta)
    meta["sha256"] = safefile.sha256_bytes(canonical_meta(meta))
    (folder / "agent.json").write_text(json.dumps(meta))


def _nan_first(sd: dict[str, torch.Tensor]) -> None:
    k = next(k for k, v in sd.items() if v.dtype.is_floating_point)
    sd[k] = sd[k] * float("nan")


AGENT_CASES = {
    "nan weights": ({"weights_edit": _nan_first}, "holds nan or inf"),
    "nan mean": ({"norm_edit": lambda n: n["mean"].__setitem__(0, float("nan"))}, "mean must be"),
    "short mean": ({"norm_edit": lambda n: n.update(mean=n["mean"][:3])}, "mean must be"),
    "negative variance": ({"norm_edit": lambda n: n["var"].__setitem__(0, -1.0)}, "negative variance"),
    "clip_obs -1": ({"norm_edit": lambda n: n.update(clip_obs=-1)}, "clip_obs must be"),
    "deleted epsilon": ({"norm_edit": lambda n: n.pop("epsilon")}, "lacks epsilon"),
    "n_actions true": ({"meta_edit": lambda m: m.update(n_actions=True)}, "n_actions=True"),
    "n_actions 1e9": ({"meta_edit": lambda m: m.update(n_actions=10**9)}, "n_actions="),
    "action_names short": ({"meta_edit": lambda m: m.update(action_names=["stop"])}, "action_names must be"),
    "policy_kwargs garbage": (
        {"meta_edit": lambda m: m.update(policy_kwargs={"net_arch": "wide"})},
        "policy_kwargs",
    ),
}


def _agent_case(tmp_path: Path, edits: dict[str, Any]) -> tuple[Any, str]:
    from govgym.agents.policies import AgentPolicy

    folder = _agent_folder(tmp_path)
    AgentPolicy(folder)  # the intact folder loads
    _rehash_agent(folder, **edits)
    return (lambda: AgentPolicy(folder)), "agent"


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from govgym.efficiency.run import FineTuneRun
    from tests.conftest import tiny_cfg, tiny_workload

    run = FineTuneRun(tiny_cfg(), workload=tiny_workload())
    run.advance(3)
    return run.save(tmp_path_factory.mktemp("snap") / "run.gvs")


def _snap_state(path: Path, fn: Any, out: Path) -> Path:
    header, packed, tensors = safefile.read(path, "govgym-run-snapshot", 2, "run snapshot")
    state = safefile.unpack(packed["state"], tensors)
    model = safefile.unpack(packed["model"], tensors)
    fn(state, model)
    new: dict[str, torch.Tensor] = {}
    body = {"state": safefile.pack(state, new), "model": safefile.pack(model, new)}
    return safefile.write(out, "govgym-run-snapshot", 2, body, new)  # hash recomputed


SNAPSHOT_CASES = {
    "step -1": (lambda s, m: s.update(step=-1), "step must be"),
    "step 2.5": (lambda s, m: s.update(step=2.5), "step must be"),
    "step 1e300": (lambda s, m: s.update(step=10**300), "step must be"),
    "cap_mb nan": (lambda s, m: s.update(cap_mb=float("nan")), "cap_mb must be"),
    "flops negative": (lambda s, m: s["flops"].update(train=-5), "flops.train must be"),
    "gns inf": (lambda s, m: s.update(gns=(float("inf"), 1.0)), "gns must be"),
    "kept repeated": (lambda s, m: s["sampler"].update(kept=np.zeros(8, dtype=np.int64)), "sampler.kept"),
    "kept beyond the data": (
        lambda s, m: s["sampler"].update(kept=np.arange(10_000, 10_064, dtype=np.int64)),
        "sampler.kept names example",
    ),
    "nan weights": (
        lambda s, m: m.update({k: v * float("nan") for k, v in list(m.items())[:1]}),
        "not a tensor of finite values",
    ),
    "short recorded losses": (
        lambda s, m: s.update(example_loss=s["example_loss"][:0].reshape(0, 1)),
        "example_loss",
    ),
}


def _snapshot_case(tmp_path: Path, snapshot_file: Path, edit: Any) -> tuple[Any, str]:
    from govgym.efficiency.run import FineTuneRun
    from tests.conftest import tiny_cfg, tiny_workload

    path = _snap_state(snapshot_file, edit, tmp_path / "edited.gvs")
    run = FineTuneRun(tiny_cfg(), workload=tiny_workload())
    return (lambda: run.load(path)), "run snapshot"


CLASS1 = [
    *[pytest.param("fast", v, id=f"fast-model {k}") for k, v in FAST_CASES.items()],
    *[pytest.param("agent", v, id=f"agent {k}") for k, v in AGENT_CASES.items()],
    *[pytest.param("snapshot", v, id=f"snapshot {k}") for k, v in SNAPSHOT_CASES.items()],
]


@pytest.mark.parametrize(("surface", "case"), CLASS1)
def test_class1_loaded_values_are_checked_like_typed_ones(surface, case, tmp_path, request):
    """A file edited with its hash recomputed is refused at load, in one sentence naming the field."""
    edit, message = case
    if surface == "fast":
        load, what = _fast_case(tmp_path, edit)
    elif surface == "agent":
        load, what = _agent_case(tmp_path, edit)
    else:
        load, what = _snapshot_case(tmp_path, request.getfixturevalue("snapshot_file"), edit)
    with pytest.raises((ConfigError, RunError), match=message) as err:
        load()
    assert what in str(err.value) and "\n" not in str(err.value)


def test_class1_intact_files_still_load(tmp_path, snapshot_file):
    """The checks refuse edits, not the files govgym writes."""
    from govgym.agents.policies import AgentPolicy
    from govgym.efficiency.run import FineTuneRun
    from tests.conftest import tiny_cfg, tiny_workload

    load_model(default_model_path())
    AgentPolicy(_agent_folder(tmp_path))
    FineTuneRun(tiny_cfg(), workload=tiny_workload()).load(snapshot_file)


@pytest.mark.parametrize("value", ["0", "-3", "2.5", ".nan", "abc", "1e18"])
def test_n16_n17_export_validates_its_instance_file_and_writes_nothing(value, tmp_path, capsys):
    text = (DATA / "tiny_instances_v1.yaml").read_text()
    assert "interval_steps:" in text
    lines = [
        f"{ln.split(':')[0]}: {value}" if ln.strip().startswith("interval_steps:") else ln
        for ln in text.splitlines()
    ]
    bad = tmp_path / "instances.yaml"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "gov"
    status, err = cli(capsys, "export", "patience", f"instances={bad}", "-o", str(out))
    assert status == 2 and "interval_steps" in err and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------------------- class 2: output paths
def _readonly_dir(tmp_path: Path) -> Path:
    """A folder that takes no new file, even for root: a read-only tmpfs is not available, so a file
    stands in the place of the folder's parent."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    return blocker / "out"


CLASS2 = [
    pytest.param(["run", "--out", "{file}"], "is an existing file", id="P3 run --out FILE"),
    pytest.param(["deploy", "--out", "{file}"], "is an existing file", id="P4 deploy --out FILE"),
    pytest.param(["export", "patience", "-o", "{file}"], "is an existing file", id="P4 export -o FILE"),
    pytest.param(["evaluate", "--out", "{file}"], "is an existing file", id="evaluate --out FILE"),
    pytest.param(["map", "--out", "{file}"], "is an existing file", id="map --out FILE"),
    pytest.param(["train", "--out", "{file}"], "is an existing file", id="train --out FILE"),
    pytest.param(["deploy", "--out", "{ro}"], "cannot be created", id="P1 deploy --out unwritable"),
    pytest.param(["collect", "--out", "{ro}"], "cannot be created", id="collect --out unwritable"),
    pytest.param(["tune", "--write", "{dir}"], "is an existing folder", id="tune --write DIR"),
    pytest.param(["plot-traces", "x", "--out", "{dir}"], "is an existing folder", id="plot-traces --out DIR"),
]


@pytest.mark.parametrize(("argv", "message"), CLASS2)
def test_class2_output_paths_are_checked_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    file = tmp_path / "results.csv"
    file.write_text("precious\n")
    paths = {"file": str(file), "ro": str(_readonly_dir(tmp_path)), "dir": str(tmp_path)}
    import dataclasses

    from govgym.cli import commands

    started = []
    for c in commands.COMMANDS:  # a job that starts is a failure of this test, whatever it would do
        monkeypatch.setitem(
            commands.BY_NAME, c.name, dataclasses.replace(c, run=lambda inv: started.append(1))
        )
    status, err = cli(capsys, *[a.format(**paths) for a in argv])
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not started and file.read_text() == "precious\n"


def test_p1_deploy_prints_the_table_before_writing():
    """Results are shown before they are written (a failed write loses nothing)."""
    import inspect

    from govgym.cli.deployjobs import deploy_compare

    src = inspect.getsource(deploy_compare)
    assert src.index("print(format_table(rows))") < src.index("write_rows(out")


# ---------------------------------------------------------------------------- class 3: counts
CLASS3 = [
    pytest.param(["deploy", "budget_epochs=1e300"], "budget_epochs", id="N6 deploy budget_epochs=1e300"),
    pytest.param(["deploy", "budget_epochs=1e308"], "budget_epochs", id="N7 deploy budget_epochs=1e308"),
    pytest.param(["deploy", "interval=1e300"], "64-bit integer", id="deploy interval=1e300"),
    pytest.param(["train", "timesteps=1e300"], "64-bit integer", id="train timesteps=1e300"),
    pytest.param(["train", "timesteps=2.5"], "expected an integer", id="train timesteps=2.5 not rounded"),
    pytest.param(["run", "interval=1e19"], "64-bit integer", id="run interval=1e19"),
    pytest.param(
        ["evaluate", "seeds=99999999999999999999"], "64-bit integer", id="evaluate seeds=1e20 exact"
    ),
    pytest.param(["map", "seeds=2.000001"], "expected an integer", id="map seeds=2.000001"),
]


@pytest.mark.parametrize(("argv", "message"), CLASS3)
def test_class3_counts_that_overflow_or_are_not_integers_are_refused_at_load(argv, message, capsys):
    status, err = cli(capsys, *argv)
    assert status == 2 and message in err and "Traceback" not in err, err


def test_class3_large_exact_integers_are_kept_exact():
    from govgym.typed import coerce

    assert coerce("x", int, "9007199254740993") == 9007199254740993  # float() would round it to ...992
    assert coerce("x", int, "1e3") == 1000


def test_k3_a_killed_deploys_temp_folders_are_removed_by_the_next_deploy(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    scratch = tmp_path / "govgym-deploy"
    stale = scratch / f".tmp-runs-{pid}-abcd1234"
    live = scratch / f".tmp-runs-{os.getpid()}-efgh5678"
    (stale / "fixed budget").mkdir(parents=True)
    live.mkdir()
    status, err = cli(
        capsys, "deploy", f"governor={tmp_path / 'no-such-artifact'}", "--out", str(tmp_path / "o")
    )
    assert status == 2 and "governor" in err
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------------------- TrainConfig (issue 17 item 6)
def test_train_hyperparameters_default_to_the_values_train_used_to_hard_code():
    """Written independently of agents/train.py: the SB3 kwargs train passed before they were config keys."""
    from govgym.agents.train import TrainConfig, algo_kwargs

    ppo = algo_kwargs(TrainConfig(), "tb")
    assert ppo == {
        "seed": 0,
        "verbose": 0,
        "tensorboard_log": "tb",
        "n_steps": 32,
        "batch_size": 64,
        "n_epochs": 10,
        "gamma": 1.0,
        "gae_lambda": 0.95,
        "ent_coef": 0.01,
    }
    dqn = algo_kwargs(TrainConfig(algo="dqn", timesteps=2000), "tb")
    assert dqn == {
        "seed": 0,
        "verbose": 0,
        "tensorboard_log": "tb",
        "learning_starts": 200,
        "buffer_size": 50_000,
        "train_freq": 4,
        "gamma": 1.0,
        "exploration_fraction": 0.5,
    }
    assert (
        algo_kwargs(TrainConfig(algo="dqn", timesteps=400), "tb")["learning_starts"] == 100
    )  # capped at 1/4
    tuned = algo_kwargs(TrainConfig(gamma=0.99, ent_coef=0.0, n_epochs=4, learning_rate=1e-3), "tb")
    assert (tuned["gamma"], tuned["ent_coef"], tuned["n_epochs"], tuned["learning_rate"]) == (
        0.99,
        0.0,
        4,
        1e-3,
    )


def test_train_hyperparameters_are_documented_and_validated(capsys):
    from govgym.cli import build_parser

    _, subs = build_parser()
    text = subs["train"].format_help()
    for key in ("learning_rate=", "gamma=", "n_epochs=", "gae_lambda=", "ent_coef=", "dqn_buffer_size="):
        assert key in text
    for bad in ("gamma=1.5", "gae_lambda=-0.1", "n_epochs=0", "ent_coef=nan", "dqn_train_freq=2.5"):
        status, err = cli(capsys, "train", bad)
        assert status == 2 and bad.split("=")[0] in err and "Traceback" not in err, (bad, err)
