"""Every case of ../shared/bad-inputs.md: a clear error (or the right result), never silence or a traceback.

Test names carry the case id (C1 ... X1); the cases that load files govgym wrote itself (S1-S5, F5-F7)
are in ``test_safe_load.py``. Cases that need a model share one tiny embedded base (1 layer, 20
pretraining steps: ~10 s) built once per module; env cases share the tiny instance set of
``tests/data/tiny_instances.yaml`` and the session's env cache (the one ``test_env.py`` uses).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import govgym  # noqa: F401  (registers govgym/FineTune-v0)
from govgym import cli
from govgym.efficiency import workload as wl
from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances
from govgym.envs.recording import load_state, replay
from govgym.errors import RunError
from govgym.typed import ConfigError, check_range, from_dict, parse_overrides, to_dict
from tests.conftest import TINY_EMBEDDED, embedded_cfg

DATA = Path(__file__).parent / "data"
TINY_SET = str(DATA / "tiny_instances.yaml")
DEFAULT_YAML = Path(cli.default_config())
run_cfg = embedded_cfg  # the tiny embedded default, cached under the given folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding one tiny embedded base and its tokenized default data."""
    root = tmp_path_factory.mktemp("bad_inputs_cache")
    wl.load_workload(run_cfg(root), progress=False)
    return root


@pytest.fixture
def env_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVGYM_CACHE", str(tmp_path_factory.getbasetemp() / "envcache"))


def cli_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def tiny_config(tmp_path: Path, cache: Path, pretrain_steps: int | None = None, **optim: Any) -> Path:
    """A ``--config`` YAML of the tiny embedded default cached under ``cache`` (a short schedule)."""
    run: dict[str, Any] = {**TINY_EMBEDDED, "cache_dir": str(cache)}
    if pretrain_steps is not None:
        run["model"] = {**run["model"], "pretrain_steps": pretrain_steps}
    run["optim"] = {"total_steps": 4, "batch_size": 4, "warmup_steps": 1, **optim}
    return write(tmp_path, "tiny.yaml", json.dumps({"run": run}))  # JSON is YAML


# ----------------------------------------------------------------------------- configs (C)


def test_C7_empty_config_is_the_default_yaml_run(tmp_path: Path) -> None:
    # One source of defaults: the dataclass defaults equal configs/default.yaml field for field, so an
    # empty --config (or a partial one) runs what default.yaml runs.
    empty = write(tmp_path, "empty.yaml", "")
    assert (
        to_dict(RunConfig.from_yaml(empty))
        == to_dict(RunConfig.from_yaml(DEFAULT_YAML))
        == to_dict(RunConfig())
    )
    assert RunConfig.from_yaml(empty).data.noise_rate == 0.2  # was 0.0 vs default.yaml's 0.2
    # default.yaml spells out every field (so it documents each default, and the comparison is complete)
    import yaml

    spelled = yaml.safe_load(DEFAULT_YAML.read_text())["run"]
    full = to_dict(RunConfig())

    def keys(d: dict, prefix: str = "") -> set[str]:
        return {f"{prefix}{k}" for k, v in d.items() if not isinstance(v, dict)} | {
            x for k, v in d.items() if isinstance(v, dict) for x in keys(v, f"{prefix}{k}.")
        }

    assert keys(spelled) == keys(full)


def test_C8_key_beside_run_block_is_an_error_naming_it(tmp_path: Path) -> None:
    p = write(tmp_path, "c.yaml", "run:\n  seed: 1\noptim: {lr: 0.5}\n")
    with pytest.raises(ConfigError, match="'optim' sits beside 'run:'"):
        RunConfig.from_yaml(p)
    with pytest.raises(ConfigError, match="'run:' must hold a mapping"):
        RunConfig.from_yaml(write(tmp_path, "d.yaml", "run: 5\n"))
    assert (
        RunConfig.from_yaml(write(tmp_path, "e.yaml", "run:\n")).seed == 0
    )  # an empty run: block is the default


@pytest.mark.parametrize("value", ["0", "-1e-3"])
def test_C9_lr_zero_or_negative_refused_at_load(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ConfigError, match=r"optim.lr: got .*must lie in \(0.0, inf\)"):
        RunConfig.from_yaml(DEFAULT_YAML, parse_overrides([f"optim.lr={value}"]))
    with pytest.raises(ConfigError, match="optim.lora_lr"):
        RunConfig.from_yaml(DEFAULT_YAML, parse_overrides([f"optim.lora_lr={value}"]))
    # the same lr inside an instance (the env divided by it outside its try block): refused at load
    text = (
        Path(TINY_SET)
        .read_text()
        .replace("optim: {total_steps: 40,", f"optim: {{lr: {value}, total_steps: 40,")
    )
    with pytest.raises(ConfigError, match="optim.lr"):
        load_instances(write(tmp_path, "i.yaml", text))
    code, err = cli_main(["run", f"optim.lr={value}"], capsys)
    assert code == 2 and "optim.lr" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "field",
    [
        "optim.lr",
        "optim.beta1",
        "optim.weight_decay",
        "data.noise_rate",
        "memory.cap_mb",
        "model.pretrain_lr",
    ],
)
def test_C10_nan_fails_every_range_check(field: str, capsys: pytest.CaptureFixture) -> None:
    for spelled in ("nan", ".nan"):
        with pytest.raises(ConfigError, match=f"{field}: got nan"):
            RunConfig.from_yaml(DEFAULT_YAML, parse_overrides([f"{field}={spelled}"]))
    code, err = cli_main(["run", f"{field}=nan"], capsys)
    assert code == 2 and field in err
    with pytest.raises(ConfigError, match="got nan"):
        check_range("x", math.nan, 0.0, 1.0)  # the class: the shared check itself


def test_C11_lr_inf_refused_at_load(capsys: pytest.CaptureFixture) -> None:
    for spelled in ("inf", ".inf", "1e400"):
        with pytest.raises(ConfigError, match="optim.lr: got inf; must be a finite number"):
            RunConfig.from_yaml(DEFAULT_YAML, parse_overrides([f"optim.lr={spelled}"]))
    with pytest.raises(ConfigError, match="finite"):
        RunConfig.from_yaml(DEFAULT_YAML, parse_overrides(["memory.cap_mb=inf"]))
    code, err = cli_main(["run", "optim.lr=inf"], capsys)
    assert code == 2 and "finite" in err


def test_C12_empty_data_or_model_source_is_an_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="data.source: got an empty string"):
        RunConfig.from_yaml(DEFAULT_YAML, parse_overrides(["data.source="]))
    with pytest.raises(ConfigError, match="data.source: expected a string, got None"):
        RunConfig.from_yaml(DEFAULT_YAML, parse_overrides(["data.source=  "]))  # YAML reads blanks as null
    with pytest.raises(ConfigError, match="data.source: got an empty string"):
        from_dict(RunConfig, {"data": {"source": " "}})
    with pytest.raises(ConfigError, match="model.source: got an empty string"):
        RunConfig.from_yaml(DEFAULT_YAML, parse_overrides(["model.source="]))
    code, err = cli_main(["run", "data.source="], capsys)
    assert code == 2 and "data.source" in err


@pytest.mark.parametrize("value", ["-5", "nan", "inf"])
def test_C13_negative_budget_flops_refused(value: str, capsys: pytest.CaptureFixture) -> None:
    for argv in (["run", "--budget-flops", value], ["run", f"budget_flops={value}"]):  # old flag, new key
        code, err = cli_main(argv, capsys)
        assert code == 2 and "budget_flops" in err
    code, err = cli_main(["run", "--interval", "0"], capsys)
    assert code == 2 and "interval" in err


@pytest.mark.parametrize(
    "pair, field",
    [
        ("optim.lrr=1e-3", "optim.lrr"),  # C1: unknown key (nested)
        ("optimm.lr=1e-3", "optimm"),  # C1: unknown key (top level)
        ("optim.lr=abc", "optim.lr"),  # C2
        ("optim.batch_size=0", "optim.batch_size"),  # C3
        ("optim.total_steps=-1", "optim.total_steps"),  # C4
    ],
    ids=["C1_nested", "C1_top", "C2", "C3", "C4"],
)
def test_C1_to_C4_bad_run_keys_exit_2_naming_the_key(
    pair: str, field: str, capsys: pytest.CaptureFixture
) -> None:
    code, err = cli_main(["run", pair], capsys)
    assert code == 2 and f"{field}:" in err and "Traceback" not in err
    if pair.startswith("optimm"):
        assert "Did you mean 'optim'?" in err


def test_C5_C6_malformed_or_list_yaml_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name, text in [("bad.yaml", "run:\n  optim: {lr: 1e-3\n  seed: [\n"), ("list.yaml", "- 1\n- 2\n")]:
        f = write(tmp_path, name, text)
        with pytest.raises(ConfigError, match=name):
            RunConfig.from_yaml(f)
        code, err = cli_main(["run", "--config", str(f)], capsys)
        assert code == 2 and name in err and "Traceback" not in err


@pytest.mark.parametrize("targets", ["[nonexistent]", "[]"])
def test_C14_lora_targets_naming_no_layer_exit_2(
    targets: str, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, err = cli_main(
        [
            "run",
            "--config",
            str(tiny_config(tmp_path, cache)),
            "--out",
            str(tmp_path / "out"),
            "memory.strategy=lora",
            f"memory.lora_targets={targets}",
        ],
        capsys,
    )
    assert code == 2 and "could not add LoRA adapters" in err and "Set memory.lora_targets" in err
    assert not (tmp_path / "out" / "intervals.json").exists()


def test_cli_overrides_after_interval_are_parsed() -> None:
    args, pairs = cli.parse_args(
        ["run", "optim.lr=0.001", "--interval", "5", "optim.total_steps=12", "--out", "x", "seed=3"]
    )
    assert args.out == "x" and pairs == {"interval": 5, "optim": {"lr": 1e-3, "total_steps": 12}, "seed": 3}
    assert cli.parse_args(["run", "--interval", "5", "a.b=1"])[1] == {"interval": 5, "a": {"b": 1}}
    with pytest.raises(SystemExit):
        cli.parse_args(["run", "a=1", "--interval", "5", "stray"])  # not key=value: still an error


def test_cli_override_after_interval_is_applied(capsys: pytest.CaptureFixture) -> None:
    code, err = cli_main(["run", "seed=1", "--interval", "5", "optim.lr=0"], capsys)
    assert code == 2 and "optim.lr" in err  # the late override reached the config


# ----------------------------------------------------------------------------- instances (I)


def test_I1_instance_without_name_refused(tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text().replace("{name: t-free, ", "{", 1)
    with pytest.raises(ConfigError, match="name"):
        load_instances(write(tmp_path, "i.yaml", text))


@pytest.mark.parametrize("value", ["-0.0006", "0"])
def test_I3_negative_budget_refused(value: str, tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text().replace("budget_tflops: 0.0006,", f"budget_tflops: {value},", 1)
    with pytest.raises(ConfigError, match=f"t-free.budget_tflops: got {float(value):g}"):
        load_instances(write(tmp_path, "i.yaml", text))


def test_I5_duplicate_instance_names_refused(tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text().replace("name: t-lora,", "name: t-free,", 1)  # across train and test
    with pytest.raises(ConfigError, match="names must be unique.*repeated: t-free"):
        load_instances(write(tmp_path, "i.yaml", text))


def test_I6_empty_test_split_refused_on_use(env_cache, tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text().split("\ntest:")[0] + "\ntest: []\n"
    f = write(tmp_path, "i.yaml", text)
    with pytest.raises(ConfigError, match="the 'test' split of .*i.yaml is empty"):
        FineTuneEnv(str(f), split="test").reset()
    with pytest.raises(ConfigError, match="the 'test' split .* is empty"):
        load_instances(f).split("test")


def test_I2_budget_and_lam_are_required(tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text()
    with pytest.raises(ConfigError, match=r"t-free.budget_tflops: .*needs exactly one budget.*got neither"):
        load_instances(
            write(tmp_path, "a.yaml", text.replace("budget_tflops: 0.0006, cap_mb: 0,", "cap_mb: 0,", 1))
        )
    with pytest.raises(ConfigError, match=r"train\[0\].lam: required field of Instance 't-free'"):
        load_instances(write(tmp_path, "b.yaml", text.replace("lam: 0.2, seed: 1", "seed: 1", 1)))
    assert "Required per instance: name" in (Path(cli.default_config()).parent / "instances.yaml").read_text()


def test_I4_cap_below_every_strategy_peak_refused_at_reset(env_cache, tmp_path: Path) -> None:
    text = (
        Path(TINY_SET)
        .read_text()
        .replace("cap_mb: 1.0, start_strategy: full", "cap_mb: 0.01, start_strategy: full")
    )
    env = FineTuneEnv(str(write(tmp_path, "i.yaml", text)))
    with pytest.raises(
        ConfigError, match=r"'t-oom': cap_mb=0.01 is below the measured peak of every strategy"
    ):
        env.reset(options={"instance": "t-oom"})


@pytest.mark.parametrize("field", ["budget_tflops", "lam"])
def test_I7_nan_budget_or_lam_refused(field: str, tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text()
    old = {"budget_tflops": "budget_tflops: 0.0006,", "lam": "lam: 0.2,"}[field]
    for bad in (".nan", ".inf", "-.inf"):
        with pytest.raises(ConfigError, match=f"t-free.{field}: got"):
            load_instances(write(tmp_path, "i.yaml", text.replace(old, f"{field}: {bad},", 1)))


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "..", "x..y", ".hidden", "", "a b", "ünï"])
def test_I8_instance_names_are_validated(name: str, tmp_path: Path) -> None:
    text = Path(TINY_SET).read_text().replace("name: t-free,", f"name: {json.dumps(name)},", 1)
    with pytest.raises(ConfigError, match="instance.name"):
        load_instances(write(tmp_path, "i.yaml", text))


# ----------------------------------------------------------------------------- local data (D)


def test_D1_empty_jsonl_says_no_rows(cache: Path, tmp_path: Path) -> None:
    f = write(tmp_path, "empty.jsonl", "")
    with pytest.raises(ConfigError, match="has no rows") as err:
        wl.load_workload(run_cfg(cache, data={"source": str(f)}), progress=False)
    assert "StopIteration" not in str(err.value)
    write(tmp_path, "blank.jsonl", "\n  \n")
    with pytest.raises(ConfigError, match="has no rows"):
        wl.load_workload(
            run_cfg(cache, data={"source": str(tmp_path)}), progress=False
        )  # a folder of empty files


def test_D3_binary_file_as_txt_names_file_and_problem(cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ConfigError, match="is a binary file") as err:
        wl.load_workload(run_cfg(cache, data={"source": str(f)}), progress=False)
    assert str(f) in str(err.value) and "DatasetGenerationError" not in str(err.value)


def test_D4_latin1_txt_names_the_encoding(cache: Path, tmp_path: Path) -> None:
    f = tmp_path / "latin.txt"
    f.write_bytes("".join(f"café numéro {i} à côté\n" for i in range(40)).encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte e9 at offset 3") as err:
        wl.load_workload(run_cfg(cache, data={"source": str(f)}), progress=False)
    assert str(f) in str(err.value) and "iconv" in str(err.value)
    g = tmp_path / "utf8.txt"  # the same text in UTF-8 loads
    g.write_text("".join(f"café numéro {i} à côté\n" for i in range(40)), encoding="utf-8")
    f.unlink()
    assert len(wl.load_workload(run_cfg(cache, data={"source": str(g)}), progress=False).train) > 0


def test_D2_missing_text_field_suggests_the_column(cache: Path, tmp_path: Path) -> None:
    f = write(
        tmp_path, "d.jsonl", "".join(json.dumps({"content": f"row {i}", "id": i}) + "\n" for i in range(20))
    )
    with pytest.raises(ConfigError, match="data.text_field: 'text' is not a column.*Did you mean 'content'?"):
        wl.load_workload(run_cfg(cache, data={"source": str(f)}), progress=False)


def test_D5_folder_with_mixed_file_types_refused(cache: Path, tmp_path: Path) -> None:
    write(tmp_path, "a.jsonl", json.dumps({"text": "hello"}) + "\n")
    write(tmp_path, "b.txt", "hello\n")
    with pytest.raises(
        ConfigError, match=r"holds no single supported file type \(found \['.jsonl', '.txt'\]\)"
    ):
        wl.load_workload(run_cfg(cache, data={"source": str(tmp_path)}), progress=False)


def test_D6_one_5mb_line_is_one_truncated_example(cache: Path, tmp_path: Path) -> None:
    f = write(tmp_path, "big.txt", "word " * 1_000_000 + "\n")  # one 5 MB line: one example, not enough
    with pytest.raises(
        ConfigError, match="data.eval_examples: 8 leaves no training examples.*only 1 non-empty"
    ):
        wl.load_workload(run_cfg(cache, data={"source": str(f)}), progress=False)
    lines = [f"line number {i} of a small file" for i in range(40)]
    f.write_text("\n".join([*lines[:20], "word " * 1_000_000, *lines[20:]]) + "\n")
    work = wl.load_workload(run_cfg(cache, data={"source": str(f)}), progress=False)
    seq = TINY_EMBEDDED["data"]["seq_len"]
    assert len(work.train) + len(work.eval) == 41 and all(len(x) <= seq for x in work.train["input_ids"])


def test_D7_fewer_rows_than_the_batch_refused(cache: Path, tmp_path: Path) -> None:
    f = write(tmp_path, "few.txt", "".join(f"line number {i}\n" for i in range(12)))  # 8 eval + 4 train
    cfg = run_cfg(cache, data={"source": str(f)}, optim={"batch_size": 8})
    with pytest.raises(RunError, match="optim.batch_size=8 is larger than the 4 training examples"):
        FineTuneRun(cfg, progress=False)


# ----------------------------------------------------------------------------- models (M)


def test_M1_dir_without_config_json_refused(cache: Path, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="has no config.json, so it is not a Hugging Face model directory"):
        wl.load_workload(run_cfg(cache, model={"source": str(tmp_path)}), progress=False)


def test_M2_truncated_safetensors_in_user_dir_refused(cache: Path, tmp_path: Path) -> None:
    from tests.conftest import tiny_llama

    tiny_llama().save_pretrained(tmp_path)
    w = tmp_path / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ConfigError, match="model.source: could not load a causal LM from") as err:
        wl.load_workload(run_cfg(cache, model={"source": str(tmp_path)}), progress=False)
    assert str(tmp_path) in str(err.value) and "save_pretrained" in str(err.value)


def test_M4_t5_dir_is_refused_in_a_short_sentence(cache: Path, tmp_path: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    T5ForConditionalGeneration(
        T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    ).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="'t5' model .*not a decoder-only causal language model") as err:
        wl.load_workload(run_cfg(cache, model={"source": str(tmp_path)}), progress=False)
    assert len(str(err.value)) < 400  # it listed hundreds of model classes


def test_M3_bert_dir_is_refused_as_non_causal(cache: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(
        BertConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="attends to future tokens"):
        wl.load_workload(run_cfg(cache, model={"source": str(tmp_path)}), progress=False)


def test_M3_causal_local_dir_passes_the_future_token_probe(cache: Path) -> None:
    from govgym.efficiency.basemodel import _sees_future

    model = wl.load_workload(run_cfg(cache), progress=False).model
    assert not _sees_future(model)


# ----------------------------------------------------------------------------- env (E)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> FineTuneEnv:
    old = os.environ.get("GOVGYM_CACHE")
    os.environ["GOVGYM_CACHE"] = str(tmp_path_factory.getbasetemp() / "envcache")
    try:
        e = FineTuneEnv(TINY_SET)
        e.reset(seed=0, options={"instance": "t-free"})
        yield e
    finally:
        if old is None:
            os.environ.pop("GOVGYM_CACHE", None)
        else:
            os.environ["GOVGYM_CACHE"] = old


def test_E1_step_before_reset_and_E2_after_the_end_raise_runtime_error(env_cache) -> None:
    e = FineTuneEnv(TINY_SET)
    with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\).*call reset\(\)"):
        e.step(0)
    e.reset(seed=0, options={"instance": "t-free"})
    _, _, term, _, _ = e.step(e.action_names.index("stop"))
    assert term
    with pytest.raises(RuntimeError, match=r"after the episode ended; call reset\(\)"):
        e.step(0)


@pytest.mark.parametrize("action", [9, -1, np.int64(9), np.int64(-1)], ids=repr)
def test_E3_out_of_range_action_is_a_value_error(env: FineTuneEnv, action: Any) -> None:
    n = len(env.log["actions"])
    with pytest.raises(ValueError, match=r"is outside Discrete\(7\): use 0 to 6 \(0 continue") as err:
        env.step(action)
    assert str(err.value).startswith(f"action {action!r}")
    assert len(env.log["actions"]) == n


def test_E7_unknown_instance_on_reset_suggests_the_name(env: FineTuneEnv) -> None:
    with pytest.raises(ConfigError, match=r"instance 't-fre' is not in .*Did you mean 't-free'\?"):
        env.reset(options={"instance": "t-fre"})
    env.reset(seed=0, options={"instance": "t-free"})  # the env is still usable


@pytest.mark.parametrize("action", [0.9, np.float32(3.99), "0", 1.0, True, np.bool_(False)], ids=repr)
def test_E5_non_integer_actions_refused(env: FineTuneEnv, action: Any) -> None:
    n = len(env.log["actions"])
    with pytest.raises(TypeError, match="expected one integer in"):
        env.step(action)
    assert len(env.log["actions"]) == n  # nothing happened


def test_E4_E5_integer_kinds_accepted(env: FineTuneEnv) -> None:
    env.reset(seed=0, options={"instance": "t-free"})
    for a in (0, np.int64(0), np.array(0), np.array(0, dtype=np.int32)):
        _, _, term, trunc, _ = env.step(a)
        assert not term
        if trunc:
            env.reset(seed=0, options={"instance": "t-free"})
    assert all(type(a) is int for a in env.log["actions"])


def test_E5_memo_env_refuses_non_integers_and_held_out_instances(env_cache) -> None:
    from govgym.envs.memo import MemoFineTuneEnv

    memo = MemoFineTuneEnv(TINY_SET, seeds=(0,))
    memo.reset(options={"instance": "t-free", "episode_seed": 0})
    for bad in (3.99, np.float32(1.0), "0", None, np.array([0])):
        with pytest.raises(TypeError, match="expected one integer"):
            memo.step(bad)
    with pytest.raises(ConfigError, match="not in this env's 'train' split"):
        memo.reset(options={"instance": "t-lora", "episode_seed": 0})


@pytest.mark.parametrize(
    "action", [np.array([0]), None, math.nan, np.array([[1]]), [0], np.array(0.0)], ids=repr
)
def test_E6_malformed_actions_give_the_envs_own_error(env: FineTuneEnv, action: Any) -> None:
    with pytest.raises(
        TypeError, match=r"expected one integer in \[0, \d+\).*pass an int such as env.step\(0\)"
    ):
        env.step(action)
    with pytest.raises(ValueError, match=r"outside Discrete\(\d+\): use 0 to"):
        env.step(-1)


def test_E8_held_out_instance_refused_from_train_env(env_cache) -> None:
    e = FineTuneEnv(TINY_SET, split="train")
    with pytest.raises(
        ConfigError, match=r"'t-lora' is not in this env's 'train' split; make the env with split='test'"
    ):
        e.reset(options={"instance": "t-lora"})
    with pytest.raises(ConfigError, match="t-free' is not in this env's 'test' split"):
        FineTuneEnv(TINY_SET, split="test").reset(options={"instance": "t-free"})


@pytest.mark.parametrize("k", [0, -3, 2.5, "abc", math.nan])
def test_E9_bad_interval_steps_refused_at_make(env_cache, k: Any) -> None:
    with pytest.raises(ConfigError, match="env.interval_steps"):
        gym.make("govgym/FineTune-v0", instances=TINY_SET, interval_steps=k)


def test_E9_interval_steps_does_not_mutate_shared_instance_set(env_cache) -> None:
    iset = load_instances(TINY_SET)
    e = FineTuneEnv(iset, interval_steps=5)
    assert (
        e.ecfg.interval_steps == 5
        and iset.env.interval_steps == 2
        and FineTuneEnv(iset).ecfg.interval_steps == 2
    )


def test_E10_default_env_passes_gymnasium_check_env_as_users_call_it(env_cache) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make("govgym/FineTune-v0", instances=TINY_SET).unwrapped)  # no wall_time_info argument


def test_E10_default_env_passes_sb3_check_env(env_cache) -> None:
    from stable_baselines3.common.env_checker import check_env

    check_env(FineTuneEnv(TINY_SET), warn=True)
    e = FineTuneEnv(TINY_SET, wall_time_info=True)  # opt-in still works
    _, info = e.reset(seed=0, options={"instance": "t-free"})
    assert "wall_time" in info


# ----------------------------------------------------------------------------- files and caches (F)


def test_F1_stale_temp_folders_are_cleaned(cache: Path, tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    stale = [root / "base" / f".tmp-x-{dead}-deadbeef", root / "data" / f".tmp-y-{dead}-deadbeef"]
    live = root / "base" / f".tmp-z-{os.getppid()}-cafecafe"  # a concurrent build: kept
    for d in (*stale, live):
        d.mkdir()
        (d / "partial.bin").write_bytes(b"x")
    wl.load_workload(run_cfg(root), progress=False)
    assert not any(d.exists() for d in stale) and live.exists()


def _damaged_copy(cache: Path, tmp_path: Path, pattern: str) -> tuple[Path, Path]:
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    victim = next(p for p in sorted(root.rglob(pattern)) if "hf_datasets" not in str(p))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    return root, victim


@pytest.mark.parametrize(
    "pattern", ["tokenizer.json", "model.safetensors"], ids=["F2_tokenizer", "F3_weights"]
)
def test_F2_F3_truncated_cached_base_names_the_folder_to_delete(
    cache: Path, tmp_path: Path, pattern: str
) -> None:
    root, victim = _damaged_copy(cache, tmp_path, pattern)
    with pytest.raises(ConfigError, match="govgym's cached base model, damaged") as err:
        wl.load_workload(run_cfg(root), progress=False)
    assert (
        f"delete the folder {str(victim.parent)!r}" in str(err.value)
        and "point model.source" not in str(err.value).lower()
    )


def test_F4_truncated_cached_dataset_names_the_folder(cache: Path, tmp_path: Path) -> None:
    root, victim = _damaged_copy(cache, tmp_path, "data-*.arrow")
    folder = victim.parent.parent  # data/<key>/train/data-00000-of-00001.arrow
    with pytest.raises(ConfigError, match="cached tokenized dataset .* is damaged") as err:
        wl.load_workload(run_cfg(root), progress=False)
    assert str(folder) in str(err.value) and "Delete that folder" in str(err.value)


@pytest.fixture(scope="module")
def state(env: FineTuneEnv) -> dict[str, Any]:
    env.reset(seed=1, options={"instance": "t-free"})
    for a in (0, 1, 0):
        env.step(a)
    return json.loads(json.dumps(env.state()))


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"actions": "abc"}, "'actions' must be a list"),
        ({"actions": ["abc", 0, 0]}, r"actions\[0\] is 'abc'"),
        ({"actions": [99, 0, 0]}, r"actions\[0\] is 99, outside this env's Discrete"),
        ({"actions": [1.5, 0, 0]}, r"actions\[0\] is 1.5"),
        ({"observations": []}, "'observations' is empty"),
        ({"observations": "x"}, "'observations' must be a list"),
        ({"rewards": [None, 0, 0]}, r"rewards\[0\] is None"),
        ({"episode_seed": "1"}, "'episode_seed' an integer"),
    ],
    ids=[
        "actions_abc_str",
        "actions_abc_item",
        "action_99",
        "action_float",
        "obs_empty",
        "obs_str",
        "reward_none",
        "seed_str",
    ],
)
def test_F9_malformed_replay_state_is_a_clear_error(
    env, state: dict[str, Any], edit: dict, needle: str, tmp_path: Path
) -> None:
    bad = {**state, **edit}
    with pytest.raises(ConfigError, match=needle):
        replay(bad, TINY_SET)
    p = tmp_path / "s.json"
    p.write_text(json.dumps(bad))
    if "99" not in needle:  # range needs the env; the rest is refused on load
        with pytest.raises(ConfigError, match=needle):
            load_state(p)


@pytest.mark.parametrize("cut", [[0], []], ids=["one_action", "no_action"])
def test_F10_cut_action_list_is_invalid_with_a_reason(env, state: dict[str, Any], cut: list[int]) -> None:
    assert replay(state, TINY_SET)["valid"]
    report = replay({**state, "actions": cut}, TINY_SET)
    assert not report["valid"] and report["mismatches"][0]["what"].startswith(
        f"counts (state holds {len(cut)} actions, 4 observations"
    )
    report = replay({**state, "rewards": state["rewards"][:-1]}, TINY_SET)
    assert not report["valid"] and "2 rewards" in report["mismatches"][0]["what"]


def test_F8_replay_of_truncated_json_or_bad_instances_path_exits_2(
    env, state: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps(state)[:200])
    code, err = cli_main(["replay", str(cut), f"instances={TINY_SET}"], capsys)
    assert code == 2 and "state: cannot read" in err and str(cut) in err
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps({**state, "instances": str(tmp_path / "nowhere.yaml")}))
    code, err = cli_main(["replay", str(moved)], capsys)
    assert code == 2 and "nowhere.yaml" in err and "Traceback" not in err


def test_X1_two_runs_at_once_on_one_fresh_cache_agree(tmp_path: Path) -> None:
    # Both processes start on an empty cache, so both build the base model and its data at once
    # (~15-25 s on 2 busy cores, most of it two imports of torch and the build itself).
    cache = tmp_path / "fresh_cache"
    cfg = tiny_config(tmp_path, cache, pretrain_steps=2, total_steps=2)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "govgym.cli", "run", "--config", str(cfg), "--interval", "1"]
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(tmp_path / f"o{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    rows = [json.loads((tmp_path / f"o{i}" / "intervals.json").read_text())["rows"] for i in range(2)]
    losses = [[(r["eval_loss"], r["train_loss"]) for r in rs] for rs in rows]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert not list(cache.rglob(".tmp-*"))  # neither left a half-built folder
