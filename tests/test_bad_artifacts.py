"""Bad inputs, round 2 (/work/shared/bad-inputs.md), on the deploy surfaces: one test per class over its surfaces.

- class 1 (a content hash is integrity, not validation): a governor artifact whose values were edited and
  whose hashes were recomputed is refused at load, one sentence naming the tensor or field (A3–A6, A8, A9);
- class 3 (numbers at the edge of float) and N9–N11: ``GovernorCallback``'s arguments;
- class 5 (a cap schedule that leaves no room): refused by the callback (start cap and later entries),
  and by the real and the fast env for an instance's later schedule entries and a start cap of 1 MiB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from govgym.agents.heuristics import make_policy
from govgym.deploy.artifact import ArtifactError, load_governor
from govgym.deploy.callback import GovernorCallback
from govgym.efficiency.signals import FEATURE_NAMES, spec_hash
from govgym.envs.actions import action_names
from govgym.errors import ConfigError
from govgym.sealed import seal, sha256_bytes

N_FEAT = len(FEATURE_NAMES)
ACTIONS = action_names(["full", "lora"])
HIDDEN = 8


def write_artifact(folder: Path, edit_meta=None, edit_weights=None) -> Path:
    """A small agent artifact (2 layers, numpy weights) with valid hashes after ``edit_*`` (a forger's edit)."""
    rng = np.random.default_rng(0)
    weights = {
        "layer0.weight": rng.normal(size=(HIDDEN, N_FEAT)).astype(np.float32),
        "layer0.bias": np.zeros(HIDDEN, np.float32),
        "layer1.weight": rng.normal(size=(len(ACTIONS), HIDDEN)).astype(np.float32),
        "layer1.bias": np.zeros(len(ACTIONS), np.float32),
    }
    if edit_weights:
        edit_weights(weights)
    blob = st_save(weights)
    meta = {
        "format": "govgym-governor",
        "version": 1,
        "govgym_version": "0.1.0",
        "observation": {"features": list(FEATURE_NAMES), "spec_hash": spec_hash()},
        "action_names": list(ACTIONS),
        "interval_steps": 20,
        "kind": "agent",
        "network": {
            "activations": ["Tanh", ""],
            "head": "logits",
            "masked": True,
            "shapes": [],
            "policy_class": "x",
        },
        "normalization": {
            "norm_obs": True,
            "mean": [0.0] * N_FEAT,
            "var": [1.0] * N_FEAT,
            "count": 10.0,
            "clip_obs": 10.0,
            "epsilon": 1e-8,
        },
        "provenance": {},
        "files": {"policy": {"name": "policy.safetensors", "sha256": sha256_bytes(blob), "bytes": len(blob)}},
    }
    if edit_meta:
        edit_meta(meta)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.safetensors").write_bytes(blob)
    (folder / "governor.json").write_text(json.dumps(seal(meta)))
    return folder


def test_a_valid_artifact_loads_and_acts(tmp_path):
    gov = load_governor(write_artifact(tmp_path / "g"))
    a, _ = gov.predict(np.zeros(N_FEAT, np.float32), action_masks=np.ones(len(ACTIONS), bool))
    assert 0 <= int(a) < len(ACTIONS) and gov.interval_steps == 20


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        d[last] = value

    return edit


def _tensor(name: str, make):
    def edit(w):
        w[name] = make(w[name])

    return edit


# ---------------------------------------------------------------------- class 1: artifact values
@pytest.mark.parametrize(
    "row, edit_meta, edit_weights, match",
    [
        (
            "A3 first layer (64,10)",
            None,
            _tensor("layer0.weight", lambda w: np.zeros((HIDDEN, 10), np.float32)),
            rf"layer0.weight has shape \(8, 10\); expected \(8, {N_FEAT}\)",
        ),
        (
            "A4 output layer of 3 rows",
            None,
            _tensor("layer1.weight", lambda w: np.zeros((3, HIDDEN), np.float32)),
            rf"layer1.weight has shape \(3, 8\); the output layer needs \({len(ACTIONS)}, 8\)",
        ),
        (
            "A4 bias shape",
            None,
            _tensor("layer1.bias", lambda b: np.zeros(3, np.float32)),
            r"layer1.bias has shape \(3,\)",
        ),
        (
            "A4 3-element mean",
            _set("normalization.mean", [0.0, 0.0, 0.0]),
            None,
            rf"normalization.mean has 3 values; it must hold {N_FEAT}",
        ),
        (
            "A5 all-NaN weights",
            None,
            _tensor("layer0.weight", lambda w: np.full_like(w, np.nan)),
            r"tensor layer0.weight holds \d+ non-finite values",
        ),
        (
            "A6 inf bias",
            None,
            _tensor("layer1.bias", lambda b: b + np.inf),
            r"tensor layer1.bias holds \d+ non-finite",
        ),
        ("A6 negative variance", _set("normalization.var", [-1.0] * N_FEAT), None, "negative variance"),
        (
            "A6 clip_obs=-1",
            _set("normalization.clip_obs", -1),
            None,
            r"normalization.clip_obs is -1; it must be a finite number > 0",
        ),
        ("A6 epsilon nan", _set("normalization.epsilon", float("nan")), None, "normalization.epsilon"),
        ("A8 interval Infinity", _set("interval_steps", float("inf")), None, "interval_steps"),
        ("A8 interval 2.7", _set("interval_steps", 2.7), None, r"must be an integer >= 1.*got 2.7"),
        ("A8 interval true", _set("interval_steps", True), None, r"got True \(bool\)"),
        ("A8 interval '20'", _set("interval_steps", "20"), None, r"got '20' \(str\)"),
        ("A9 interval -5", _set("interval_steps", -5), None, "got -5"),
        ("A9 interval 1e18", _set("interval_steps", 10**18), None, "got 1000000000000000000"),
        ("extra tensor", None, lambda w: w.update(extra=np.zeros(1, np.float32)), "holds tensors"),
        ("bad action names", _set("action_names", ["continue", "continue", "stop"]), None, "action_names"),
        ("unknown activation", _set("network.activations", ["Softmax", ""]), None, "network.activations"),
    ],
)
def test_every_artifact_value_is_checked_at_load(tmp_path, row, edit_meta, edit_weights, match):
    """Class 1: hashes recomputed after the edit, so only the value checks can catch it; one sentence."""
    folder = write_artifact(tmp_path / "g", edit_meta, edit_weights)
    with pytest.raises(ArtifactError, match=match) as err:
        load_governor(folder)
    assert "\n" not in str(err.value) and str(err.value).startswith("governor: ")


# ---------------------------------------------------------------------- class 3: callback arguments
NAMES = ["continue", "stop"]


@pytest.mark.parametrize(
    "row, kw, match",
    [
        (
            "N7 budget_epochs=1e308",
            {"budget_epochs": 1e308},
            r"budget_epochs must be a finite number > 0 and <= 1e\+06",
        ),
        ("N6 budget_epochs=1e300", {"budget_epochs": 1e300}, "budget_epochs"),
        ("budget_flops=inf", {"budget_flops": float("inf")}, "budget_flops"),
        ("budget_steps=1e300", {"budget_steps": 1e300}, "budget_steps"),
        ("N11 budget_steps=2.5", {"budget_steps": 2.5}, r"budget_steps must be a whole number .*got 2.5"),
        ("N9 lam=True", {"budget_steps": 10, "lam": True}, r"lam must be a number .*a bool is not a number"),
        ("N9 cap_mb=True", {"budget_steps": 10, "cap_mb": True}, "cap_mb"),
        ("N9 min_kept_fraction=True", {"budget_steps": 10, "min_kept_fraction": True}, "min_kept_fraction"),
        ("budget_steps=True", {"budget_steps": True}, "budget_steps"),
        ("interval_steps=2.0", {"budget_steps": 10, "interval_steps": 2.0}, "interval_steps"),
        ("interval_steps=True", {"budget_steps": 10, "interval_steps": True}, "interval_steps"),
        ("lam=nan", {"budget_steps": 10, "lam": float("nan")}, "lam"),
    ],
    ids=lambda x: (
        x
        if isinstance(x, str)
        and not x.startswith(("budget_", "lam", "cap", "interval", "min"))
        or isinstance(x, str)
        and "=" in x
        and " " not in x
        else ""
    ),
)
def test_callback_numbers_are_numbers_in_range(row, kw, match):
    """Class 3 and N9–N11: refused in the constructor, one sentence naming the argument."""
    kw.setdefault("interval_steps", 2)
    with pytest.raises(ConfigError, match=match) as err:
        GovernorCallback(make_policy("patience", NAMES), **kw)
    assert str(err.value).startswith("GovernorCallback: ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kw",
    [
        {"lam": np.float32(0.3)},  # N10: numpy scalars are numbers
        {"lam": np.float64(0.3), "cap_mb": np.int64(0)},
        {"budget_steps": np.int64(10)},
        {"budget_steps": 10.0},  # a whole number written as a float
        {"interval_steps": np.int32(2)},
        {"cap_schedule": [(np.float32(0.5), np.float32(40.0))], "memory_peaks": {"full": np.float32(30.0)}},
    ],
)
def test_callback_accepts_numpy_scalars_and_whole_floats(kw):
    kw = {"budget_steps": 10, "interval_steps": 2, **kw}
    cb = GovernorCallback(make_policy("patience", NAMES), **kw)
    assert isinstance(cb.lam, float) and cb.k == 2


# ---------------------------------------------------------------------- class 5: a cap with no room
PEAKS = {"full": 30.0, "lora": 20.0}


@pytest.mark.parametrize(
    "row, cap_mb, schedule, match",
    [
        ("start cap", 4.0, None, r"cap_mb=4 is below the measured peak of every strategy"),
        (
            "N13 later entry",
            40.0,
            [(0.3, 25.0), (0.6, 5.0)],
            r"cap_schedule\[1\].cap_mb=5 is below the measured peak",
        ),
        ("N13 first entry", 0.0, [(0.5, 1.0)], r"cap_schedule\[0\].cap_mb=1 is below"),
    ],
)
def test_callback_refuses_a_cap_with_no_room(row, cap_mb, schedule, match):
    """Class 5 in the callback: checked when the run starts (the start strategy's peak is known then)."""
    from govgym.deploy.memory import MemoryCap, check_cap_schedule

    cb = GovernorCallback(
        make_policy("patience", NAMES),
        budget_steps=10,
        interval_steps=2,
        cap_mb=cap_mb,
        cap_schedule=schedule,
        memory_peaks=PEAKS,
    )
    mem = MemoryCap(cb.cap_mb, check_cap_schedule(schedule), cb.memory_peaks)
    with pytest.raises(ConfigError, match=match) as err:
        mem.check_start("full")
    assert str(err.value).startswith("GovernorCallback: ") and "\n" not in str(err.value)


def test_fast_env_refuses_a_cap_with_no_room(tmp_path):
    """Class 5 in the fast env (N15: cap_mb 1), as the real env refuses it at reset; and a later entry (N13)."""
    import yaml

    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.instances import default_instances_path

    src = yaml.safe_load(Path(default_instances_path()).read_text())
    name = src["train"][0]["name"]
    for _row, edit in (
        ("N15 cap_mb 1", {"cap_mb": 1.0}),
        ("N13 schedule entry", {"cap_mb": 0.0, "cap_schedule": [{"at": 0.5, "cap_mb": 1.0}]}),
    ):
        data = yaml.safe_load(Path(default_instances_path()).read_text())
        data["train"][0].update(edit)
        path = tmp_path / f"i{len(edit)}.yaml"
        path.write_text(yaml.safe_dump(data))
        env = FineTuneFastEnv(instances=str(path))
        with pytest.raises(ConfigError, match=r"is below the measured peak of every strategy"):
            env.reset(options={"instance": name})
