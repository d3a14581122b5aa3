"""GovernorCallback: observation parity with the env, and real Trainer runs (causal LM and classification)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from govgym.agents.heuristics import make_policy
from govgym.deploy.callback import GovernorCallback, Observer, reading_from_trainer
from govgym.efficiency.compute import count_flops
from govgym.efficiency.signals import HIGH, LOW
from govgym.errors import ConfigError
from tests.conftest import pattern_data, tiny_llama

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")
NAMES = ["continue", "stop"]


class Scripted:
    """A governor that plays a fixed list of action names (then continues): tests exact decision points."""

    def __init__(self, action_names: list[str], script: list[str]):
        self.action_names, self.script, self.seen = action_names, list(script), []

    def predict(self, obs, action_masks=None):
        self.seen.append(np.asarray(action_masks).tolist())
        name = self.script.pop(0) if self.script else "continue"
        return np.asarray(self.action_names.index(name)), None


def _args(tmp_path: Path, **over):
    from transformers import TrainingArguments

    kw = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=40,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=3e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        lr_scheduler_type="linear",
        warmup_steps=2,
    )
    kw.update(over)
    return TrainingArguments(**kw)


def _llm_trainer(tmp_path: Path, cb: GovernorCallback, **over):
    from transformers import Trainer

    data = pattern_data(32, 16, 64, seed=0).remove_columns("noise")
    held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
    model = tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64)
    return Trainer(model, _args(tmp_path, **over), train_dataset=data, eval_dataset=held, callbacks=[cb])


def _check_log(path: Path) -> dict:
    log = json.loads(path.read_text())
    for d in log["decisions"]:
        obs = np.asarray(d["obs"], dtype=np.float32)
        assert np.isfinite(obs).all() and (obs >= LOW).all() and (obs <= HIGH).all()
    return log


# ---------------------------------------------------------------------- parity with the env
def test_observation_parity_with_env():
    """A real env episode's intervals, reported as a Trainer would (per-step logs), give the env's observations."""
    from govgym.envs.finetune_env import FineTuneEnv

    env = FineTuneEnv(TINY, split="train")
    readings, steps = [], []
    observe = env.tracker.observe
    env.tracker.observe = lambda r: (readings.append(r), observe(r))[1]
    obs0, _ = env.reset(seed=0, options={"instance": "t-free"})
    run = env.run

    def recording(fn):
        def step(*a, **kw):
            loss, gn = fn(*a, **kw)
            steps.append(
                {
                    "loss": float(loss),
                    "grad_norm": float(gn),
                    "learning_rate": run.optimizer.param_groups[0]["lr"],
                }
            )
            return loss, gn

        return step

    run._step, run._measured_step = recording(run._step), recording(run._measured_step)
    env_obs, logs = [obs0], [[]]
    done = False
    while not done:
        n = len(steps)
        o, _, term, trunc, _ = env.step(0)
        env_obs.append(o)
        logs.append(steps[n:])
        done = term or trunc
    assert len(env_obs) >= 3 and len(readings) == len(env_obs)
    obs = Observer()
    for r, log, want in zip(readings, logs, env_obs):
        got = reading_from_trainer(
            flops_used=r.flops_used,
            budget=r.budget,
            eval_loss=r.eval_loss,
            logs=log,
            peak_lr=run.lr,
            batch_size=r.batch_size,
            mem_peak_mb=r.mem_peak_mb,
            cap_mb=r.cap_mb,
            strategy=r.strategy,
            lam=r.lam,
            kept_fraction=r.kept_fraction,
            grad_noise_scale=r.grad_noise_scale,
        )
        assert got == r  # the callback's aggregation of per-step logs is the run's IntervalStats'
        np.testing.assert_array_equal(obs.observe(got), want)


def test_memory_cap_parity_with_env():
    """The env's virtual cap (CPU): the callback's peak, cap in force, cap masks and OOM are the env's.

    Two episodes of t-squeeze (a 1.5 MiB cap falling to 1.1 at 30% of the budget, below full
    fine-tuning's peak): one that continues under full (the env's OOM one interval after the drop), one
    that switches to LoRA once the cap fell (then switching back to full is masked by the cap). The
    callback side is ``deploy.memory.MemoryCap`` fed the env's measured peaks and the instance's
    schedule, stepped by the budget fraction the env reports, as ``GovernorCallback._decide`` steps it.
    """
    import dataclasses

    from govgym.deploy.memory import MemoryCap, check_cap_schedule, check_memory_peaks
    from govgym.envs.finetune_env import FineTuneEnv

    env = FineTuneEnv(TINY, split="train")
    readings = []
    observe = env.tracker.observe
    env.tracker.observe = lambda r: (readings.append(r), observe(r))[1]
    switches = [(i, a.split(":", 1)[1]) for i, a in enumerate(env.action_names) if a.startswith("switch:")]
    ends = []
    for react in (False, True):
        obs0, info = env.reset(seed=0, options={"instance": "t-squeeze"})
        inst = env.instance
        mem = MemoryCap(
            inst.cap_mb, check_cap_schedule(inst.cap_schedule), check_memory_peaks(dict(env.peaks))
        )
        cb_obs = Observer()
        want, strategy = obs0, info["strategy"]
        while True:
            r = readings[-1]
            assert (r.mem_peak_mb, r.cap_mb) == (mem.peak(strategy), mem.cap)
            got = dataclasses.replace(r, mem_peak_mb=mem.peak(strategy), cap_mb=mem.cap)
            np.testing.assert_array_equal(cb_obs.observe(got), want)
            env_mask = env.action_masks()
            assert [bool(env_mask[i]) for i, _ in switches] == [
                mem.fits(t) and t != strategy for _, t in switches
            ]
            name = "switch:lora" if react and mem.cap < inst.cap_mb and strategy == "full" else "continue"
            want, _, term, trunc, info = env.step(env.action_names.index(name))
            strategy = info["strategy"]  # the interval ran under it (a switch acts before the interval)
            oom = mem.oom(strategy)
            if info.get("error", "").startswith("oom"):
                assert oom is not None and oom.startswith(info["error"].split(" MiB")[0])
                ends.append(("oom", strategy))
                break
            assert oom is None, oom
            mem.advance(info["budget_frac"])
            if trunc or term:
                ends.append(("end", strategy))
                break
    assert ends == [("oom", "full"), ("end", "lora")]
    assert not mem.fits("full") and mem.fits("lora")  # the end: full is masked under the 1.1 MiB cap


# ---------------------------------------------------------------------- real Trainer runs
def test_stop_in_causal_lm_trainer(tmp_path):
    gov = make_policy("patience", NAMES, patience=1, threshold=0.5)  # no eval gain of half of E_0: stop
    cb = GovernorCallback(gov, budget_flops=1e15, interval_steps=5, log_path=tmp_path / "d.json")
    trainer = _llm_trainer(tmp_path, cb)
    assert trainer.args.eval_steps == 5 and trainer.args.logging_steps == 1 and trainer.args.eval_on_start
    trainer.train()
    assert trainer.state.global_step == 5  # stopped at the first decision after E_0, not at max_steps=40
    log = _check_log(tmp_path / "d.json")
    assert [d["action"] for d in log["decisions"]] == ["continue", "stop"]
    assert [d["step"] for d in log["decisions"]] == [0, 5] and log["ended"] == "stop"
    assert log["decisions"][1]["obs"][0] < 1.0  # some budget was spent
    # lr_frac after 5 steps of linear decay from step 2 to 40, read after the scheduler's step as the env does
    assert log["decisions"][1]["obs"][18] == pytest.approx(35 / 38, rel=1e-6)
    assert any(h.get("governor/action") == "stop" for h in trainer.state.log_history)


def test_stop_in_sequence_classification_trainer(tmp_path):
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 64, (40, 12))

    def rows(sl):
        return Dataset.from_dict(
            {"input_ids": ids[sl].tolist(), "labels": (ids[sl, 0] > 32).astype(int).tolist()}
        )

    gov = Scripted(NAMES, ["continue", "continue", "stop"])
    cb = GovernorCallback(gov, budget_epochs=4, interval_steps=3, lam=0.1, log_path=tmp_path / "c.json")
    trainer = Trainer(
        BertForSequenceClassification(cfg),
        _args(tmp_path),
        train_dataset=rows(slice(0, 32)),
        eval_dataset=rows(slice(32, 40)),
        callbacks=[cb],
    )
    trainer.train()
    assert trainer.state.global_step == 6
    log = _check_log(tmp_path / "c.json")
    assert [d["action"] for d in log["decisions"]] == ["continue", "continue", "stop"]
    assert gov.seen[0] == [True, True]


def test_epoch_budget_measured_by_flop_counter_and_truncates(tmp_path):
    cb = GovernorCallback(
        make_policy("fixed_budget", NAMES), budget_epochs=2, interval_steps=4, log_path=tmp_path / "b.json"
    )
    trainer = _llm_trainer(tmp_path, cb, num_train_epochs=5, max_steps=-1, gradient_accumulation_steps=2)
    trainer.train()
    model = trainer.model
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    _, micro = count_flops(lambda: model(**batch).loss.backward())
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        _, fwd = count_flops(lambda: model(**trainer.data_collator(list(trainer.eval_dataset))))
    step = 2 * micro  # an optimizer step is 2 accumulated micro-batches of 4 rows
    assert cb.step_flops == {"full": step} and cb.eval_flops == fwd > 0
    # 32 rows / 4 / 2 = 4 optimizer steps an epoch, 2 epochs = 8 steps; evaluations at steps 0, 4, 8
    assert cb.budget == cb.flops["measure"] + 8 * step + 3 * fwd
    assert trainer.state.global_step == 8  # the budget ended training (truncation), not num_train_epochs
    log = _check_log(tmp_path / "b.json")
    assert [d["action"] for d in log["decisions"]] == ["continue", "continue", "truncated"]
    assert log["decisions"][-1]["budget_frac"] == pytest.approx(1.0) and log["ended"] == "truncated"


def test_trainer_ending_first_is_logged(tmp_path):
    cb = GovernorCallback(
        make_policy("fixed_budget", NAMES), budget_steps=1000, interval_steps=4, log_path=tmp_path / "e.json"
    )
    trainer = _llm_trainer(tmp_path, cb, max_steps=8)
    trainer.train()
    log = _check_log(tmp_path / "e.json")
    assert log["ended"] == "trainer" and [d["step"] for d in log["decisions"]] == [0, 4, 8]
    assert log["decisions"][-1]["budget_frac"] < 0.05
    trainer.evaluate()  # after train(): no decision, no FLOPs charged
    assert len(cb.decisions) == 3 and cb.flops["eval"] == 3 * cb.eval_flops


def test_gc_toggle_in_place_and_masks(tmp_path):
    names = ["continue", "reprune_hardest", "switch:lora", "switch:full+gc", "switch:full", "stop"]
    gov = Scripted(names, ["continue", "switch:full+gc", "switch:full", "stop"])
    cb = GovernorCallback(gov, budget_steps=100, interval_steps=2)
    trainer = _llm_trainer(tmp_path, cb)
    trainer.train()
    assert trainer.state.global_step == 6 and not trainer.model.is_gradient_checkpointing
    assert gov.seen[0] == [True, False, False, True, False, True]  # reprune, a base switch: GovernedTrainer's
    assert gov.seen[2] == [True, False, False, False, True, True]  # under full+gc: back to full
    assert [d["strategy"] for d in cb.decisions] == ["full", "full", "full+gc", "full"]
    assert [d["obs"][15] for d in cb.decisions] == [0.0, 0.0, 1.0, 0.0]  # strategy_gc
    assert cb.step_flops["full+gc"] > cb.step_flops["full"]  # the recompute, measured
    # a step is charged at the strategy it ran under: 2 full, 2 full+gc, 2 full
    assert cb.flops["train"] == 4 * cb.step_flops["full"] + 2 * cb.step_flops["full+gc"]


def test_lora_model_gc_switch_and_denser_evaluation(tmp_path):
    """A PEFT LoRA model reads as 'lora'; switch:lora+gc toggles checkpointing in place; eval every 2 of K = 4."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer

    model = get_peft_model(
        tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    names = ["continue", "switch:lora+gc", "switch:qlora+gc", "stop"]
    gov = Scripted(names, ["continue", "switch:lora+gc"])
    cb = GovernorCallback(gov, budget_steps=8, interval_steps=4)
    data = pattern_data(32, 16, 64, seed=0).remove_columns("noise")
    held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
    args = _args(tmp_path, eval_strategy="steps", eval_steps=2)
    trainer = Trainer(model, args, train_dataset=data, eval_dataset=held, callbacks=[cb])
    trainer.train()
    assert trainer.state.global_step == 8 and model.is_gradient_checkpointing
    assert gov.seen == [[True, True, False, True]] * 2  # qlora needs a new base: GovernedTrainer's
    assert cb.action_masks().tolist() == [True, False, False, True]  # now lora+gc
    assert [d["strategy"] for d in cb.decisions] == ["lora", "lora", "lora+gc"]  # as observed, before acting
    assert [d["action"] for d in cb.decisions] == ["continue", "switch:lora+gc", "truncated"]
    assert cb.flops["eval"] == 5 * cb.eval_flops  # steps 0, 2, 4, 6, 8
    assert cb.step_flops["lora+gc"] > cb.step_flops["lora"]


def test_stop_keeps_the_best_checkpoint(tmp_path):
    """The state at the stop is saved (step 9 is no save step), and load_best_model_at_end loads the best."""
    gov = Scripted(NAMES, ["continue", "continue", "continue", "stop"])
    cb = GovernorCallback(gov, budget_steps=40, interval_steps=3)
    trainer = _llm_trainer(
        tmp_path,
        cb,
        save_strategy="steps",
        save_steps=6,
        eval_strategy="steps",
        eval_steps=3,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
    )
    trainer.train()
    assert trainer.state.global_step == 9 and (tmp_path / "out" / "checkpoint-9").is_dir()
    saved = [
        (h["eval_loss"], h["step"])
        for h in trainer.state.log_history
        if "eval_loss" in h and h["step"] in (6, 9)
    ]
    best = min(saved)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best[1]}")


def test_virtual_cap_oom_ends_a_trainer_run(tmp_path):
    """CPU, memory_peaks given: the cap follows cap_schedule, masks switches above it, and an interval over it is an OOM.

    full (10 MiB) fits the 20 MiB start cap; at 30% of the budget the cap falls to 8 MiB: switch:full+gc
    (9 MiB) is masked from then on, and the governor, continuing under full, runs one interval over
    the cap: training ends there (ended "oom", the row's error, the log's oom_steps). The over-cap state
    is neither saved nor the best checkpoint, though its eval loss is the lowest.
    """
    from govgym.efficiency.signals import FEATURE_NAMES

    names = ["continue", "switch:full+gc", "stop"]
    gov = Scripted(names, [])
    cb = GovernorCallback(
        gov,
        budget_steps=20,
        interval_steps=2,
        cap_mb=20,
        cap_schedule=[(0.3, 8.0)],
        # lora (5 MiB) leaves room under the 8 MiB cap: a schedule entry below every peak is refused (class 5)
        memory_peaks={"full": 10.0, "full+gc": 9.0, "lora": 5.0},
        log_path=tmp_path / "m.json",
    )
    trainer = _llm_trainer(
        tmp_path,
        cb,
        save_strategy="steps",
        save_steps=2,
        eval_strategy="steps",
        eval_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
    )
    trainer.train()
    log = _check_log(tmp_path / "m.json")
    rows = log["decisions"]
    j = next(i for i, d in enumerate(rows) if d["cap_mb"] == 8.0)
    assert rows[j]["budget_frac"] >= 0.3 > rows[j - 1]["budget_frac"]  # the env's cap_at, set at decision j
    assert [d["mask"] for d in rows[: j + 1]] == [[True, True, True]] * j + [[True, False, True]]
    assert gov.seen == [d["mask"] for d in rows[: j + 1]]
    m = FEATURE_NAMES.index("mem_frac")
    assert [round(d["obs"][m], 6) for d in rows[: j + 1]] == [0.5] * j + [1.25]
    assert [d["mem_peak_mb"] for d in rows] == [10.0] * len(rows)
    oom = rows[-1]
    assert len(rows) == j + 2 and oom["action"] == "oom" and oom["interval_cap_mb"] == 8.0
    assert oom["error"] == "oom: measured peak 10.0 MiB above the 8.0 MiB cap under full (virtual cap)"
    assert log["ended"] == "oom" and log["oom_steps"] == [oom["step"]] == cb.oom_steps
    assert trainer.state.global_step == oom["step"] < 20
    assert any(
        h.get("governor/action") == "oom" and h["governor/error"] == oom["error"]
        for h in trainer.state.log_history
    )
    out = tmp_path / "out"
    assert (
        not (out / f"checkpoint-{oom['step']}").exists() and (out / f"checkpoint-{oom['step'] - 2}").is_dir()
    )
    saved = [(d["eval_loss"], d["step"]) for d in rows[1:-1]]
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{min(saved)[1]}")


def test_virtual_cap_oom_is_not_saved_at_the_epoch_end(tmp_path):
    """save_strategy="epoch": the epoch an OOM cuts short is not saved; a cap set at 0 acts after E_0 (the env's reset)."""
    gov = Scripted(NAMES, [])
    cb = GovernorCallback(
        gov,
        budget_steps=16,
        interval_steps=2,
        cap_mb=20,
        cap_schedule=[(0.0, 8.0)],
        memory_peaks={"full": 10.0, "lora": 5.0},  # lora leaves room under 8 MiB (class 5 refuses no room)
    )
    trainer = _llm_trainer(tmp_path, cb, save_strategy="epoch")  # 8 steps an epoch
    trainer.train()
    assert [(d["step"], d["cap_mb"], d["action"]) for d in cb.decisions] == [
        (0, 20.0, "continue"),
        (2, 8.0, "continue"),
        (4, 8.0, "oom"),
    ]
    assert trainer.state.global_step == 4 and not list((tmp_path / "out").glob("checkpoint-*"))


def test_imports_without_gymnasium_or_sb3():
    code = (
        "import sys\n"
        "for m in ('gymnasium', 'stable_baselines3', 'sb3_contrib'): sys.modules[m] = None\n"
        "from govgym.deploy.callback import GovernorCallback\n"
        "from govgym.agents.heuristics import make_policy\n"
        "GovernorCallback(make_policy('zeus', ['continue', 'stop']), budget_steps=10, interval_steps=2)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kw, match",
    [
        ({}, "exactly one budget"),
        ({"budget_flops": 1e12, "budget_steps": 10}, "exactly one budget"),
        ({"budget_steps": 0}, "finite number > 0"),
        ({"budget_flops": 1e12, "interval_steps": 0}, "integer >= 1"),
        ({"budget_flops": 1e12, "interval_steps": None}, "integer >= 1"),  # heuristics carry no K
        ({"budget_flops": 1e12, "lam": -1.0}, "lam"),
    ],
)
def test_constructor_errors(kw, match):
    kw.setdefault("interval_steps", 4)
    with pytest.raises(ConfigError, match=match):
        GovernorCallback(make_policy("patience", NAMES), **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"cap_schedule": "0.4:45"}, r"cap_schedule must be a list of \(budget fraction, cap MiB\) pairs"),
        (
            {"cap_schedule": [(0.4,)]},
            r"cap_schedule\[0\] must be a \(budget fraction, cap MiB\) pair of numbers",
        ),
        (
            {"cap_schedule": [(0.2, 30), (1.5, 10)]},
            r"cap_schedule\[1\] changes the cap at budget fraction 1.5",
        ),
        ({"cap_schedule": [(0.4, -1)]}, r"cap_schedule\[0\] sets the cap to -1 MiB; a cap must be >= 0"),
        ({"cap_schedule": [(0.4, float("nan"))]}, r"pair of numbers"),
        ({"memory_peaks": {}}, "memory_peaks must be a non-empty dict of strategy name"),
        ({"memory_peaks": [10.0]}, "memory_peaks must be a non-empty dict"),
        (
            {"memory_peaks": {"fulll": 10.0}},
            r"memory_peaks key 'fulll': got 'fulll'; the strategy must start with",
        ),
        ({"memory_peaks": {"full": 0}}, r"memory_peaks\['full'\] must be .* finite number > 0; got 0"),
        ({"memory_peaks": {"full": float("inf")}}, "finite number > 0"),
    ],
)
def test_bad_cap_schedule_and_memory_peaks(kw, match):
    with pytest.raises(ConfigError, match=match) as err:
        GovernorCallback(make_policy("patience", NAMES), budget_steps=10, interval_steps=2, cap_mb=20, **kw)
    assert str(err.value).startswith("GovernorCallback: ") and "\n" not in str(err.value)


def test_virtual_cap_refuses_a_start_it_cannot_measure_or_fit(tmp_path):
    gov = make_policy("patience", NAMES)
    cb = GovernorCallback(gov, budget_steps=10, interval_steps=2, cap_mb=20, memory_peaks={"lora": 5.0})
    with pytest.raises(ConfigError, match="under strategy 'full', which has no entry in memory_peaks"):
        _llm_trainer(tmp_path, cb).train()
    cb = GovernorCallback(gov, budget_steps=10, interval_steps=2, cap_mb=4, memory_peaks={"full": 5.0})
    with pytest.raises(ConfigError, match="cap_mb=4 is below the measured peak of every strategy"):
        _llm_trainer(tmp_path, cb).train()
    cb = GovernorCallback(gov, budget_steps=10, interval_steps=2, cap_schedule=[(0.5, 30.0)])
    with pytest.raises(ConfigError, match="only CUDA gives.*memory_peaks"):
        _llm_trainer(tmp_path, cb).train()


def test_governor_without_stop_is_refused():
    with pytest.raises(ConfigError, match="'continue' and 'stop'"):
        GovernorCallback(
            make_policy("patience", ["continue", "reprune_hardest"]), budget_steps=10, interval_steps=2
        )


def test_missing_artifact_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        GovernorCallback(str(tmp_path / "nope"), budget_steps=10, interval_steps=2)


def test_incompatible_evaluation_and_cpu_cap(tmp_path):
    cb = GovernorCallback(make_policy("patience", NAMES), budget_steps=10, interval_steps=4)
    with pytest.raises(ConfigError, match="eval_steps dividing 4"):
        _llm_trainer(tmp_path, cb, eval_strategy="steps", eval_steps=3)
    cb = GovernorCallback(make_policy("patience", NAMES), budget_steps=10, interval_steps=4, cap_mb=100)
    with pytest.raises(ConfigError, match="only CUDA"):
        _llm_trainer(tmp_path, cb).train()


def test_exported_artifact_path_steers_a_trainer(tmp_path):
    """`govgym export` output, given as a path, is loaded (all checks) and steers a real Trainer run."""
    from govgym.deploy.artifact import export

    export("patience:patience=1,threshold=0.5", tmp_path / "gov")
    cb = GovernorCallback(
        str(tmp_path / "gov"), budget_flops=1e15, interval_steps=5, log_path=tmp_path / "d.json"
    )
    trainer = _llm_trainer(tmp_path, cb)
    trainer.train()
    assert trainer.state.global_step == 5 and _check_log(tmp_path / "d.json")["ended"] == "stop"
    (tmp_path / "gov" / "governor.json").write_text("{}")  # an edited artifact is refused, not loaded
    with pytest.raises(ConfigError):
        GovernorCallback(str(tmp_path / "gov"), budget_steps=10, interval_steps=2)


# ---------------------------------------------------------------------- resume from a Trainer checkpoint
def test_resume_in_a_plain_trainer_restores_the_callback_and_the_heuristics_counters(tmp_path):
    """A plain Trainer killed after checkpoint-10 and resumed decides exactly as the uninterrupted run.

    The run has a virtual memory cap whose schedule lowers it before the checkpoint: the resumed callback
    keeps the schedule, the peaks and the cap in force (each row logs the cap its interval ran under).

    The patience heuristic (2 evaluations gaining less than 2.5% of E_0) counts one bad evaluation at step 9,
    before the checkpoint, and stops at 12 on the second: the resumed governor stops there only if its
    counters were restored (by replaying the logged observations). Both ways of resuming: the callback
    restoring itself in place (restore_callback_states_from_checkpoint=False, the default), and the
    Trainer rebuilding it from its saved arguments (True; the governor given as an artifact path).
    Compared: the whole decision log (every row, FLOPs, ended).
    """
    import shutil

    from transformers import TrainerCallback

    from govgym.deploy.artifact import export

    export("patience:patience=2,threshold=0.025", tmp_path / "gov")

    def run(out: Path, halt: int | None = None, resume: str | None = None, **over):
        cb = GovernorCallback(
            str(tmp_path / "gov"),
            budget_steps=30,
            interval_steps=3,
            log_path=out / "d.json",
            cap_mb=20,
            cap_schedule=[(0.25, 12.0)],  # falls before the checkpoint: the cap in force is restored
            memory_peaks={"full": 10.0},
        )
        t = _llm_trainer(
            out, cb, max_steps=30, save_strategy="steps", save_steps=10, max_grad_norm=1.0, **over
        )

        class Halt(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == halt:
                    control.should_training_stop = True

        if halt:
            t.add_callback(Halt())
        t.train(resume_from_checkpoint=resume)
        return json.loads((out / "d.json").read_text()) if (out / "d.json").exists() else None

    whole = run(tmp_path / "a")
    assert [d["action"] for d in whole["decisions"]][-2:] == ["continue", "stop"] and whole[
        "global_step"
    ] == 12
    # the virtual cap: 12 MiB in force at the checkpoint (decision 9), the interval 9-12 ran under it
    assert [d["cap_mb"] for d in whole["decisions"] if d["step"] <= 9][-1] == 12.0
    assert whole["decisions"][-1]["interval_cap_mb"] == 12.0 and whole["cap_schedule"] == [[0.25, 12.0]]
    run(tmp_path / "b", halt=10)
    ckpt = tmp_path / "b" / "out" / "checkpoint-10"
    shutil.copytree(ckpt, tmp_path / "c" / "out" / "checkpoint-10")
    # True: the Trainer builds a new callback from the saved arguments (log_path among them: b's log)
    run(
        tmp_path / "c",
        resume=str(tmp_path / "c" / "out" / "checkpoint-10"),
        restore_callback_states_from_checkpoint=True,
    )
    rebuilt = json.loads((tmp_path / "b" / "d.json").read_text())
    in_place = run(tmp_path / "b", resume=str(ckpt))
    for got in (in_place, rebuilt):
        assert got["decisions"] == whole["decisions"] and got["ended"] == "stop"
        assert got["flops"] == whole["flops"]
