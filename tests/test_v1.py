"""govgym/FineTune-v1: budgets as people set them, the LR schedule planned over the budget, the lever map."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import pytest

import govgym  # noqa: F401  (registers the envs)
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import default_instances_path, load_instances
from govgym.typed import ConfigError

TINY_V1 = str(Path(__file__).parent / "data" / "tiny_instances_v1.yaml")
TINY_V0 = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVGYM_CACHE", str(tmp_path_factory.getbasetemp() / "envcache"))


def _lr(env: FineTuneEnv) -> float:
    return float(env.run.optimizer.param_groups[0]["lr"])


def _play(env: FineTuneEnv, actions: list[int]) -> list[dict]:
    infos = []
    for a in actions:
        _, _, term, trunc, info = env.step(a)
        infos.append({**info, "lr": _lr(env)})
        if term or trunc:
            break
    return infos


def test_v1_passes_check_env_as_users_make_it() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("govgym/FineTune-v1", instances=TINY_V1)
    check_env(env.unwrapped)
    assert env.unwrapped.version == 1 and env.unwrapped.state()["env_id"] == "govgym/FineTune-v1"


def test_budget_in_epochs_is_spent_exactly_by_the_fixed_run_with_the_schedule_planned_over_it() -> None:
    env = FineTuneEnv(TINY_V1)
    _, info = env.reset(options={"instance": "v-epochs", "episode_seed": 0})
    n_train, bs, k = len(env.run.train_ids), env.run.cfg.optim.batch_size, env.ecfg.interval_steps
    intervals = round(0.5 * n_train / bs / k)
    assert env.planned_steps == intervals * k == env.run.cfg.optim.total_steps
    infos = _play(env, [0] * 100)
    assert len(infos) == intervals and infos[-1]["budget_frac"] == pytest.approx(1.0, abs=1e-9)
    assert infos[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine planned over the budget: ends at 0
    lrs = [i["lr"] for i in infos]
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # decaying after warmup
    # a budget in TFLOPs becomes the whole intervals it buys, and the same exact landing
    env.reset(options={"instance": "v-tflops", "episode_seed": 0})
    infos = _play(env, [0] * 100)
    assert infos[-1]["budget_frac"] == pytest.approx(1.0, abs=1e-9) and infos[-1]["lr"] == pytest.approx(
        0.0, abs=1e-12
    )
    assert env.budget <= 0.0006e12


def test_stopping_early_stops_mid_schedule_and_a_switch_moves_along_it_by_flops() -> None:
    env = FineTuneEnv(TINY_V1)
    env.reset(options={"instance": "v-epochs", "episode_seed": 0})
    fixed = _play(env, [0] * 100)
    env.reset(options={"instance": "v-epochs", "episode_seed": 0})
    half = _play(env, [0] * (len(fixed) // 2))
    assert half[-1]["lr"] == pytest.approx(fixed[len(half) - 1]["lr"]) and half[-1]["lr"] > 0.1 * env.run.lr
    lora = 3 + env.ecfg.switch_targets.index("lora")
    env.reset(options={"instance": "v-epochs", "episode_seed": 0})
    switched = _play(env, [0, lora] + [0] * 100)
    assert switched[1]["strategy"] == "lora"
    assert len(switched) > len(fixed)  # cheaper steps: more of them in the same FLOPs
    # the schedule position is the FLOPs fraction: right after the switch, LR / peak LR is what the
    # full run had at that many training FLOPs, not at that many steps
    progress = [i["lr"] / env.run.cfg.optim.lora_lr for i in switched[1:]]
    assert all(a >= b for a, b in zip(progress, progress[1:]))
    assert switched[-1]["lr"] < 0.05 * env.run.cfg.optim.lora_lr


def test_v0_dynamics_are_unchanged_by_v1() -> None:
    """The same v0 instance under v0 and under v1: v0 keeps its own optim.total_steps schedule."""
    v0 = gym.make("govgym/FineTune-v0", instances=TINY_V0).unwrapped
    v0.reset(options={"instance": "t-free", "episode_seed": 0})
    assert (
        v0.version == 0 and v0.run.cfg.optim.total_steps == 40 and v0.run.cfg.optim.schedule_step_flops == 0
    )
    assert v0.budget == 0.0006e12
    v1 = gym.make("govgym/FineTune-v1", instances=TINY_V0).unwrapped
    v1.reset(options={"instance": "t-free", "episode_seed": 0})
    assert v1.run.cfg.optim.total_steps == v1.planned_steps < 40


@pytest.mark.parametrize("budget", ["", "budget_tflops: 0.0006, budget_epochs: 1,"])
def test_exactly_one_budget(budget: str, tmp_path: Path) -> None:
    text = Path(TINY_V1).read_text().replace("budget_epochs: 0.5,", budget, 1)
    f = tmp_path / "i.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="v-epochs.budget_tflops: .*exactly one budget"):
        load_instances(f)


def test_bad_version_refused(tmp_path: Path) -> None:
    f = tmp_path / "i.yaml"
    f.write_text(Path(TINY_V1).read_text().replace("version: 1", "version: 2"))
    with pytest.raises(ConfigError, match="env.version"):
        load_instances(f)
    with pytest.raises(ConfigError, match="version: 3 is not a FineTune version"):
        FineTuneEnv(TINY_V1, version=3)


def test_packaged_v1_instance_set_covers_the_families() -> None:
    iset = load_instances(default_instances_path(1))
    assert iset.env.version == 1
    assert len(iset.train) + len(iset.test) >= 32 and len(iset.test) >= 12
    fams = {i.family for i in iset.train + iset.test}
    assert {"overfit", "noisy", "cap", "clean", "mix"} <= fams
    tasks = {iset.run_config(i).data.task for i in iset.train + iset.test}
    assert {"doc2code", "code2doc"} <= tasks
    assert all(i.budget_epochs is not None and 1 <= i.budget_epochs <= 6 for i in iset.train + iset.test)

    def combo(i) -> tuple:
        cfg = iset.run_config(i)
        return (
            cfg.data.max_examples <= 800 and i.budget_epochs >= 3,  # small set, many epochs
            cfg.data.noise_rate > 0,
            bool(i.cap_schedule),
        )

    seen = {combo(i) for i in iset.train}
    assert any(combo(i) not in seen for i in iset.test)  # a held-out combination never trained on


def test_lever_map_on_real_branches(tmp_path: Path) -> None:
    from govgym.agents.levermap import map_rows, map_task, summarize

    res = map_task((TINY_V1, "train", "v-epochs", 0, {"points": [0.25, 0.5]}, ""))
    lv = res["levers"]
    assert set(lv) == {"fixed", "best_stop", "reprune", "switch", "reprune+switch", "all"}
    assert sum(res["branches"].values()) >= 4 and res["real_steps"] > res["intervals"]
    ret = {k: sum(v["rewards"]) for k, v in lv.items()}
    assert ret["best_stop"] >= ret["fixed"] - 1e-12
    assert ret["all"] == pytest.approx(max(ret[k] for k in lv if k not in ("all", "fixed")))
    assert lv["reprune"]["script"] and lv["switch"]["script"]
    assert any(a.startswith("reprune") for a in lv["reprune"]["branch"]["actions"])
    assert lv["reprune"]["lever_used"] == (
        len(lv["reprune"]["actions"]) - 1 > min(map(int, lv["reprune"]["script"]))
    )
    rows = map_rows([res], {"v-epochs": "overfit"}, 0.005)
    s = summarize(rows, 0.005)
    assert s["instances"] == 1 and s["overfit_fixed_over_stop"]
    stop = next(r for r in rows if r["lever"] == "best_stop")
    assert stop["return_vs_stop"] == 0 and math.isfinite(stop["final_eval"])


def test_map_cli_writes_its_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from govgym.cli import main

    code = main(
        [
            "map",
            f"instances={TINY_V1}",
            "split=test",
            "seeds=1",
            "workers=1",
            "memo=",
            "points=[0.5]",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    for f in ("map.csv", "map.json", "map_families.csv", "map_summary.json", "map.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "levers beat the best stop" in capsys.readouterr().out
    assert main(["map", "points=[0]", "--out", str(tmp_path)]) == 2
