"""Seeded fuzzing of what a user feeds govgym: run configs, instance files and env actions.

Every input must end in a result or the documented error (``ConfigError`` for configs and instance
files; ``TypeError``/``ValueError`` for actions), never another exception, and an accepted input must
hold only values inside each field's documented range (the oracles below are written from the field
docstrings, independently of the code under test). Config and instance inputs are validated only (no
model is built), so thousands are tried in seconds; actions run on one real tiny env. Each test
prints how many inputs it tried (``pytest -s``). No hypothesis dependency: numpy's seeded generator.
"""

from __future__ import annotations

import copy
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from govgym.efficiency.config import RunConfig
from govgym.envs.instances import InstanceSet, load_instances
from govgym.typed import ConfigError, from_dict

TINY_SET = Path(__file__).parent / "data" / "tiny_instances.yaml"
N_CONFIGS = 3000
N_INSTANCE_FILES = 1000
N_ACTIONS = 400
MAX_REAL_STEPS = 15

# ----------------------------------------------------------------------------- oracles (documented ranges)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


INT64_MAX = (
    2**63 - 1
)  # every integer field is a count or size that must fit an int64 (govgym/typed.py, class 3)


def _in(lo: float | None = None, hi: float | None = None, integer: bool = False, open_lo: bool = False):
    def ok(v: Any) -> bool:
        if not (_int(v) if integer else _num(v)):
            return False
        if integer and abs(v) > INT64_MAX:
            return False
        if lo is not None and (v <= lo if open_lo else v < lo):
            return False
        return hi is None or v <= hi

    return ok


STRATEGY = re.compile(r"(full|lora|qlora|int8)(\+(adam8|gc))*")
NOISE_KINDS = ("corrupt", "shuffle", "duplicate")

RUN_FIELDS: dict[str, Any] = {
    "model.source": lambda v: v == "default",  # the fuzzer names no existing directory
    "model.hidden_size": _in(1, integer=True),
    "model.num_layers": _in(1, integer=True),
    "model.num_heads": _in(1, integer=True),
    "model.intermediate_size": _in(1, integer=True),
    "model.vocab_size": _in(300, integer=True),
    "model.max_position_embeddings": _in(1, integer=True),
    "model.pretrain_steps": _in(1, integer=True),
    "model.pretrain_lr": _in(0.0, 1.0, open_lo=True),
    "data.source": lambda v: v == "default",
    "data.text_field": lambda v: isinstance(v, str) and v.strip() != "",
    "data.seq_len": _in(8, 8192, integer=True),
    "data.max_examples": _in(16, integer=True),
    "data.eval_examples": _in(1, integer=True),
    "data.noise_rate": _in(0.0, 0.9),
    "data.noise_kinds": lambda v: isinstance(v, list) and all(k in NOISE_KINDS for k in v),
    "data.seed": _in(0, 2**63 - 1, integer=True),
    "optim.lr": _in(0.0, open_lo=True),
    "optim.lora_lr": _in(0.0, open_lo=True),
    "optim.weight_decay": _in(0.0, 1.0),
    "optim.beta1": _in(0.0, 0.999999),
    "optim.beta2": _in(0.0, 0.999999),
    "optim.max_grad_norm": _in(0.0),
    "optim.warmup_steps": _in(0, integer=True),
    "optim.schedule": lambda v: v in ("cosine", "linear", "constant"),
    "optim.total_steps": _in(1, integer=True),
    "optim.batch_size": _in(1, integer=True),
    "memory.strategy": lambda v: isinstance(v, str) and STRATEGY.fullmatch(v) is not None,
    "memory.lora_rank": _in(1, integer=True),
    "memory.lora_alpha": _in(1, integer=True),
    "memory.lora_dropout": _in(0.0, 0.9),
    "memory.lora_targets": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
    "memory.cap_mb": _in(0.0),
    "memory.measure_every": _in(0, integer=True),
    "seed": _in(0, 2**63 - 1, integer=True),
    "device": lambda v: v in ("cpu", "auto"),  # no CUDA on the test machine: 'cuda' must be refused
    "cache_dir": lambda v: isinstance(v, str),
}


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


# ----------------------------------------------------------------------------- value generator

STRINGS = [
    "",
    " ",
    "abc",
    "0",
    "1e-3",
    "nan",
    "inf",
    "-inf",
    "1,2",
    "default",
    "cosine",
    "lora+gc",
    "full+adam8",
    "qlora+gc",
    "fulll",
    "lora+xx",
    "corrupt",
    "../x",
    "None",
    "true",
    "text",
    "[1]",
    "cpu",
    "cuda",
    "auto",
]


def pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def random_value(rng: np.random.Generator) -> Any:
    """A value as YAML or a Python caller could hand it: numbers of every sign and size, NaN/inf, strings, lists..."""
    kind = rng.integers(12)
    if kind == 0:
        return int(rng.integers(-5, 20))
    if kind == 1:
        return pick(rng, [0, 1, 2, 7, 8, 16, 64, 128, 300, 512, 8192, 8193, 2**31, 2**63, -(2**63), 10**30])
    if kind == 2:
        return pick(
            rng,
            [0.0, -0.0, 1e-12, 1e-3, 0.1, 0.5, 0.9, 0.95, 0.999999, 1.0, 1.5, 2.0, 100.0, -1e-3, -1.0, 1e300],
        )
    if kind == 3:
        return pick(rng, [math.nan, math.inf, -math.inf])
    if kind == 4:
        return float(rng.normal() * 10.0 ** int(rng.integers(-6, 6)))
    if kind in (5, 6):
        return pick(rng, STRINGS)
    if kind == 7:
        return bool(rng.integers(2))
    if kind == 8:
        return None
    if kind == 9:
        return (
            [random_value(rng) for _ in range(int(rng.integers(0, 3)))]
            if rng.random() < 0.5
            else [pick(rng, sorted(NOISE_KINDS)) for _ in range(int(rng.integers(0, 3)))]
        )
    if kind == 10:
        return {"a": 1} if rng.random() < 0.5 else {}
    return float(rng.integers(0, 100))  # an integral float: int fields accept it (YAML writes 8.0)


# ----------------------------------------------------------------------------- configs


def test_fuzz_run_config_overrides() -> None:
    rng = np.random.default_rng(20261125)
    fields = sorted(RUN_FIELDS)
    outcomes = {"accepted": 0, "ConfigError": 0}
    for _ in range(N_CONFIGS):
        chosen = list(rng.choice(fields, size=int(rng.integers(1, 4)), replace=False))
        raw = {f: random_value(rng) for f in chosen}
        data: dict[str, Any] = {}
        for f, v in raw.items():
            node = data
            *parents, last = f.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = v
        try:
            cfg = from_dict(RunConfig, data)
        except ConfigError as err:
            outcomes["ConfigError"] += 1
            msg = str(err)
            assert any(f in msg for f in chosen), f"error names none of {chosen}: {msg}"
            continue
        except Exception as err:  # noqa: BLE001  (anything else is the defect this test looks for)
            pytest.fail(f"{data!r} raised {type(err).__name__}: {err}")
        outcomes["accepted"] += 1
        for f in chosen:
            assert RUN_FIELDS[f](_get(cfg, f)), (
                f"{f}={raw[f]!r} accepted as {_get(cfg, f)!r}, outside its documented range"
            )
        assert cfg.model.hidden_size % cfg.model.num_heads == 0
        if cfg.data.noise_rate > 0:
            assert cfg.data.noise_kinds
    print(f"\nrun-config fuzz: {N_CONFIGS} inputs tried: {outcomes}")
    assert outcomes["accepted"] > 100 and outcomes["ConfigError"] > 100  # both sides exercised


def test_fuzz_valid_single_overrides_are_accepted() -> None:
    """The converse: a value inside the documented range is never refused (no over-strict check)."""
    rng = np.random.default_rng(7)
    tried = 0
    for f, ok in RUN_FIELDS.items():
        for _ in range(60):
            v = random_value(rng)
            if (
                not ok(v)
                or (f.startswith("model.num_heads") and 128 % v)
                or (f == "model.hidden_size" and v % 4)
            ):
                continue
            if f == "data.noise_kinds" and not v:
                continue  # empty kinds with the default noise_rate 0.2 is a documented cross-field error
            *parents, last = f.split(".")
            data: dict[str, Any] = {}
            node = data
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = v
            tried += 1
            from_dict(RunConfig, data)
    print(f"\nvalid single overrides: {tried} accepted")
    assert tried > 100


# ----------------------------------------------------------------------------- instance files

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
INSTANCE_FIELDS: dict[str, Any] = {
    "name": lambda v: (
        isinstance(v, str) and NAME.fullmatch(v) is not None and ".." not in v and len(v) <= 200
    ),
    "budget_tflops": _in(1e-6),
    "lam": _in(0.0, 10.0),
    "cap_mb": _in(0.0),
    "start_strategy": lambda v: isinstance(v, str) and STRATEGY.fullmatch(v) is not None,
    "seed": _in(0, 2**40, integer=True),
}
ENV_FIELDS: dict[str, Any] = {
    "interval_steps": _in(1, integer=True),
    "reprune_fraction": _in(0.01, 0.9),
    "min_kept_fraction": _in(0.0, 1.0),
    "oom_penalty": _in(0.0),
    "crash_penalty": _in(0.0),
    "reprune_scorer": lambda v: v in ("loss", "el2n", "gradnorm", "recorded"),
    "switch_targets": lambda v: (
        isinstance(v, list) and v and all(isinstance(s, str) and STRATEGY.fullmatch(s) for s in v)
    ),
}


def mutate(base: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for _ in range(int(rng.integers(1, 4))):
        what = rng.integers(8)
        split = "train" if rng.random() < 0.6 else "test"
        items = data.get(split)
        inst = items[int(rng.integers(len(items)))] if isinstance(items, list) and items else None
        inst = inst if isinstance(inst, dict) else None
        if what <= 2 and inst is not None:  # an instance field gets a random value
            inst[str(rng.choice(sorted(INSTANCE_FIELDS)))] = random_value(rng)
        elif what == 3 and inst is not None:  # a field goes missing (name, budget and lam are required)
            inst.pop(str(rng.choice(["name", "budget_tflops", "lam", "cap_mb", "seed"])), None)
        elif what == 4:  # an env field
            data.setdefault("env", {})[str(rng.choice(sorted(ENV_FIELDS)))] = random_value(rng)
        elif what == 5 and inst is not None:  # a cap schedule entry
            inst["cap_schedule"] = (
                [{"at": random_value(rng), "cap_mb": random_value(rng)}]
                if rng.random() < 0.8
                else random_value(rng)
            )
        elif what == 6 and inst is not None:  # a per-instance run override
            f = str(rng.choice(sorted(RUN_FIELDS)))
            node = inst.setdefault("run", {})
            *parents, last = f.split(".")
            for p in parents:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
            node[last] = random_value(rng)
        elif what == 7:  # structure: unknown key, duplicate name, a split that is not a list
            r = rng.integers(3)
            if r == 0 and inst is not None:
                inst[str(rng.choice(["budget_tflop", "lamda", "extra"]))] = 1
            elif r == 1 and inst is not None and isinstance(data.get("train"), list) and data["train"]:
                inst["name"] = data["train"][0].get("name") if isinstance(data["train"][0], dict) else None
            else:
                data[split] = random_value(rng)
    return data


def _check_accepted(s: InstanceSet) -> None:
    names = [i.name for i in s.train + s.test]
    assert len(set(names)) == len(names)
    for inst in s.train + s.test:
        for f, ok in INSTANCE_FIELDS.items():
            assert ok(getattr(inst, f)), (
                f"instance {inst.name!r}: {f}={getattr(inst, f)!r} accepted, outside its documented range"
            )
        for ch in inst.cap_schedule:
            assert _in(0.0, 1.0)(ch.at) and _in(0.0)(ch.cap_mb), f"cap_schedule {ch} accepted"
        rc = s.run_config(inst)
        for f, ok in RUN_FIELDS.items():
            if f not in ("model.source", "data.source", "memory.strategy"):
                assert ok(_get(rc, f)), f"{inst.name}: run {f}={_get(rc, f)!r} accepted"
    for f, ok in ENV_FIELDS.items():
        assert ok(getattr(s.env, f)), f"env.{f}={getattr(s.env, f)!r} accepted"


def test_fuzz_instance_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    base = yaml.safe_load(TINY_SET.read_text())
    outcomes = {"accepted": 0, "ConfigError": 0}
    path = tmp_path / "fuzz.yaml"
    for n in range(N_INSTANCE_FILES):
        data = mutate(base, rng)
        try:
            if n % 4 == 0:  # a quarter through the file path, as users load them
                path.write_text(yaml.safe_dump(data))
                s = load_instances(path)
            else:
                s = from_dict(InstanceSet, copy.deepcopy(data))
        except ConfigError:
            outcomes["ConfigError"] += 1
            continue
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"{data!r} raised {type(err).__name__}: {err}")
        outcomes["accepted"] += 1
        _check_accepted(s)
    print(f"\ninstance-file fuzz: {N_INSTANCE_FILES} inputs tried: {outcomes}")
    assert outcomes["accepted"] > 30 and outcomes["ConfigError"] > 30


# ----------------------------------------------------------------------------- env actions


def random_action(rng: np.random.Generator, n: int) -> Any:
    kind = rng.integers(16)
    v = int(rng.integers(-2, n + 2))
    return [
        v,
        np.int64(v),
        np.int32(v),
        np.uint8(max(v, 0)),
        np.array(v),
        np.array(v, dtype=np.int16),  # integers
        float(v),
        np.float32(v + 0.99),
        str(v),
        None,
        math.nan,
        bool(v % 2),  # not integers
        np.array([v]),
        [v],
        {"a": v},
        Fraction(v, 1),
    ][kind]


def is_valid_action(a: Any, n: int) -> bool:
    if isinstance(a, (bool, np.bool_)):
        return False
    if isinstance(a, np.ndarray):
        if a.shape != () or not np.issubdtype(a.dtype, np.integer):
            return False
        a = a.item()
    return isinstance(a, (int, np.integer)) and 0 <= int(a) < n


def test_fuzz_env_actions(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from govgym.envs.finetune_env import FineTuneEnv

    monkeypatch.setenv("GOVGYM_CACHE", str(tmp_path_factory.getbasetemp() / "envcache"))
    env = FineTuneEnv(str(TINY_SET), interval_steps=1)
    n = int(env.action_space.n)
    stop = env.action_names.index("stop")
    rng = np.random.default_rng(3)
    env.reset(seed=0, options={"instance": "t-free"})
    outcomes = {"stepped": 0, "TypeError": 0, "ValueError": 0}
    for _ in range(N_ACTIONS):
        a = random_action(rng, n)
        while outcomes["stepped"] >= MAX_REAL_STEPS and is_valid_action(a, n):
            a = random_action(rng, n)  # enough real steps (~0.5 s each on 2 cores): keep fuzzing the refusals
        valid = is_valid_action(a, n)
        if valid and int(a) != 0 and rng.random() < 0.7:
            a = 0  # mostly continue: the cheapest real step (a reprune scores, a stop resets)
        before = len(env.log["actions"])
        try:
            obs, r, term, trunc, info = env.step(a)
        except (TypeError, ValueError) as err:
            assert not valid, f"valid action {a!r} refused: {err}"
            assert len(env.log["actions"]) == before, f"refused action {a!r} changed the episode"
            outcomes[type(err).__name__] += 1
            continue
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"action {a!r} raised {type(err).__name__}: {err}")
        assert valid, f"invalid action {a!r} ({type(a).__name__}) was accepted"
        assert env.observation_space.contains(obs) and math.isfinite(r)
        assert env.log["actions"][-1] == int(a) and type(env.log["actions"][-1]) is int
        outcomes["stepped"] += 1
        if term or trunc or int(a) == stop:
            env.reset(seed=outcomes["stepped"], options={"instance": "t-free"})
    print(f"\naction fuzz: {N_ACTIONS} inputs tried: {outcomes}")
    assert outcomes["stepped"] == MAX_REAL_STEPS and outcomes["TypeError"] > 50 and outcomes["ValueError"] > 5
