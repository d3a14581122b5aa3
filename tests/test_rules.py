"""The issue-20 baselines and the shield: ``early_stopping`` against transformers' own callback,
``curve_extrapolation`` on known curves and a real episode, ``Shielded`` alone, in the harness and in
``GovernorCallback``."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from govgym.agents.curvefit import Line, PowerLaw, fit_curve, fit_power_law
from govgym.agents.heuristics import F, Heuristic, make_policy
from govgym.agents.shield import DEFAULT_K, Shielded, is_learned, shield
from govgym.efficiency.signals import FEATURE_NAMES
from govgym.typed import ConfigError

NAMES = ["continue", "stop"]
TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


def obs(c: float, r: float, lam: float = 0.3, tol: float | None = None, **kw: float) -> np.ndarray:
    """An observation at budget fraction ``c`` spent with eval ratio ``r`` (21 features when ``tol`` is given)."""
    o = np.zeros(len(FEATURE_NAMES) + (tol is not None), dtype=np.float32)
    o[F["budget_left"]], o[F["eval_ratio"]], o[F["lam"]] = 1.0 - c, r, lam
    for k, v in kw.items():
        o[F[k]] = v
    if tol is not None:
        o[-1] = tol
    return o


def first_stop(policy, seq: list[np.ndarray]) -> int | None:
    """Index of the first observation on which ``policy`` stops (None: never); a fresh episode first."""
    names = policy.action_names
    for i, o in enumerate(seq):
        if names[int(policy.predict(o, episode_start=np.array([i == 0]))[0])] == "stop":
            return i
    return None


# ---------------------------------------------------------------------- early_stopping = transformers' rule
@functools.cache
def training_args():
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir="unused",
        eval_strategy="steps",
        eval_on_start=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        report_to="none",
        use_cpu=True,
    )


def transformers_stop(losses: list[float], patience: int, threshold: float) -> int | None:
    """The evaluation at which transformers' ``EarlyStoppingCallback`` stops a Trainer (None: never).

    ``losses[0]`` is ``eval_on_start``'s evaluation: the Trainer calls ``on_evaluate`` for it (through
    ``_evaluate``) but not ``_determine_best_metric``; every later one gets both, in that order. Both run
    here as transformers' own code, on a real ``TrainerState`` and ``TrainerControl``.
    """
    from transformers import EarlyStoppingCallback, Trainer, TrainerControl, TrainerState

    args, state, control = training_args(), TrainerState(), TrainerControl()
    cb = EarlyStoppingCallback(early_stopping_patience=patience, early_stopping_threshold=threshold)
    cb.on_train_begin(args, state, control)  # its own checks of the arguments
    view = type("TrainerView", (), {"args": args, "state": state})()  # what _determine_best_metric reads
    for i, loss in enumerate(losses):
        metrics = {"eval_loss": loss}
        cb.on_evaluate(args, state, control, metrics)
        if i > 0:
            Trainer._determine_best_metric(view, metrics, None)
        if control.should_training_stop:
            return i
    return None


def sequences(n_seq: int = 30, seed: int = 0):
    """(losses with E_0 first, patience, absolute threshold): noisy decreasing curves, some flat from the start."""
    rng = np.random.default_rng(seed)
    for trial in range(n_seq):
        n, e0 = 25, float(rng.uniform(1.5, 4.0))
        gains = rng.exponential(0.02, n) * np.exp(-np.arange(n) / rng.uniform(2, 12)) + rng.normal(
            0, 0.004, n
        )
        if trial % 5 == 0:
            gains[:2] = rng.uniform(0.0, 0.003, 2)  # a slow first interval: where E_0 as a reference matters
        losses = e0 * np.clip(1.0 - np.cumsum(gains), 0.05, 1.9)
        patience = int(rng.integers(1, 4))
        threshold = e0 * float(rng.choice([0.0, 0.002, 0.005, 0.01]))  # transformers': in loss units
        yield [e0, *map(float, losses)], patience, threshold


def heuristic_stop(name: str, losses: list[float], patience: int, threshold: float) -> int | None:
    """The same sequence through a heuristic: eval ratios E_t / E_0, the threshold as a fraction of E_0."""
    e0, n = losses[0], len(losses)
    if name == "early_stopping":
        p = make_policy(
            name, NAMES, early_stopping_patience=patience, early_stopping_threshold=threshold / e0
        )
    else:
        p = make_policy(name, NAMES, patience=patience, threshold=threshold / e0)
    return first_stop(p, [obs(i / n, e / e0) for i, e in enumerate(losses)])


def test_early_stopping_stops_where_transformers_callback_stops():
    stops, differ = set(), 0
    for losses, patience, threshold in sequences():
        want = transformers_stop(losses, patience, threshold)
        assert heuristic_stop("early_stopping", losses, patience, threshold) == want, (
            losses,
            patience,
            threshold,
        )
        stops.add(want)
        differ += heuristic_stop("patience", losses, patience, threshold) != want
    assert len(stops) > 4  # many different stop points (and some runs never stop): not a trivial agreement
    # the test can fail: `patience` (E_0 as its first best) is not transformers' rule on these sequences,
    # which is why early_stopping is a rule of its own rather than patience's alias
    assert differ >= 2


def test_early_stopping_ignores_e0_as_transformers_does():
    """Patience 1: a first interval that gains less than the threshold stops `patience`, not the callback."""
    losses = [2.0, 1.999, 1.5, 1.495]
    assert transformers_stop(losses, 1, 0.01) == 3
    assert heuristic_stop("early_stopping", losses, 1, 0.01) == 3
    assert heuristic_stop("patience", losses, 1, 0.01) == 1


def test_early_stopping_takes_21_features_and_knob_names_of_transformers():
    p = make_policy("early_stopping", NAMES, early_stopping_patience=2)
    seq = [
        obs(0.0, 1.0, tol=0.005),
        obs(0.1, 0.9, tol=0.005),
        obs(0.2, 0.95, tol=0.005),
        obs(0.3, 0.95, tol=0.005),
    ]
    assert first_stop(p, seq) == 3
    with pytest.raises(ConfigError, match="early_stopping_patience=3"):
        make_policy("early_stopping", NAMES, early_stopping_patience=0)
    with pytest.raises(ConfigError, match="unknown knob 'patience'"):
        make_policy("early_stopping", NAMES, patience=2)


# ---------------------------------------------------------------------- the curve fit
def power_law(c: float, a: float = 0.6, b: float = 0.03, alpha: float = 0.8) -> float:
    return a + b * c ** (-alpha)


def test_fit_recovers_a_power_law_and_is_robust_to_an_outlier():
    c = np.arange(1, 21) / 20
    r = np.array([power_law(x) for x in c])
    fit = fit_power_law(c, r)
    assert isinstance(fit, PowerLaw) and fit(1.0) == pytest.approx(0.63, abs=2e-3)
    r[6] += 0.1  # one evaluation far off (a noisy eval batch)
    assert fit_power_law(c, r)(1.0) == pytest.approx(0.63, abs=5e-3)
    assert fit_power_law(c[:2], r[:2]) is None  # < 3 points: no fit
    assert fit_power_law([0.0, 0.0, 0.1, 0.1], [1.0, 1.0, 0.9, 0.9]) is None  # c = 0 points left out
    assert isinstance(fit_curve(c, 1.0 - 0.5 * c), Line)  # a straight descent stays straight


# ---------------------------------------------------------------------- curve_extrapolation
def episode(
    curve, n: int = 50, lam: float = 0.3, tol: float | None = None, noise: float = 0.0, seed: int = 0
):
    """Observations of one episode on ``curve`` (E_0 = 1 first), ``n`` equal intervals; optional eval noise."""
    rng = np.random.default_rng(seed)
    return [
        obs(i / n, 1.0 if i == 0 else curve(i / n) + rng.normal(0, noise), lam, tol) for i in range(n + 1)
    ]


def test_curve_extrapolation_stops_near_the_analytic_point_of_a_power_law():
    # -L'(c) = alpha b c^(-alpha-1) = kappa lam  ->  c* = (alpha b / (kappa lam))^(1 / (alpha + 1)) = 0.246
    n, lam = 50, 0.3
    c_star = (0.8 * 0.03 / lam) ** (1 / 1.8)
    p = make_policy("curve_extrapolation", NAMES, kappa=1.0)
    i = first_stop(p, episode(power_law, n, lam))
    assert i is not None and abs(i / n - c_star) <= 1.5 / n, (i / n, c_star)
    for seed in range(3):  # eval noise of 0.3% of E_0 moves it by at most a few intervals
        i = first_stop(p, episode(power_law, n, lam, noise=0.003, seed=seed))
        assert i is not None and abs(i / n - c_star) <= 3 / n, (seed, i / n, c_star)


def test_curve_extrapolation_under_equal_quality_stops_where_the_tolerance_is_reached():
    # first c with L(c) <= (1 + tol) L(1): ((1.005 * 0.63 - 0.6) / 0.03)^(-1 / 0.8) = 0.883
    n, tol = 50, 0.005
    c_eq = ((1.005 * power_law(1.0) - 0.6) / 0.03) ** (-1 / 0.8)
    i = first_stop(make_policy("curve_extrapolation", NAMES), episode(power_law, n, tol=tol))
    assert i is not None and abs(i / n - c_eq) <= 1.5 / n, (i / n, c_eq)
    safer = first_stop(
        make_policy("curve_extrapolation", NAMES, quality_margin=-0.003), episode(power_law, n, tol=tol)
    )
    assert safer is not None and safer > i  # a negative margin waits longer


def test_curve_extrapolation_does_not_stop_a_curve_still_falling_fast():
    for curve in (
        lambda c: 1.0 - 0.8 * c,
        lambda c: 0.1 + 0.4 * c**-0.3 - 0.3 * c,
    ):  # -L' >= 0.8 > lam everywhere
        assert first_stop(make_policy("curve_extrapolation", NAMES, kappa=1.0), episode(curve)) is None
        assert first_stop(make_policy("curve_extrapolation", NAMES), episode(curve, tol=0.005)) is None
    # ... and it stops a line whose slope is below the price at once (after min_points evaluations)
    assert (
        first_stop(make_policy("curve_extrapolation", NAMES, min_points=4), episode(lambda c: 1 - 0.1 * c))
        == 4
    )


@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"min_points": 2}, "min_points=4"),
        ({"kappa": float("nan")}, "kappa=2"),
        ({"kappa": -1.0}, "kappa=2"),
        ({"to_end": "maybe"}, "to_end=true"),
        ({"quality_margin": 0.9}, "quality_margin=-0.002"),
        ({"min_points": 3.5}, "min_points"),
    ],
)
def test_curve_extrapolation_knobs_are_range_checked(knobs, match):
    with pytest.raises(ConfigError, match=match):
        make_policy("curve_extrapolation", NAMES, **knobs)


def test_new_rules_are_tuned_exported_and_loaded(tmp_path):
    """A grid for `govgym tune`, an artifact from `govgym export` that `GovernorCallback` loads."""
    from govgym.agents.tune import GRID
    from govgym.deploy.artifact import export, load_governor
    from govgym.deploy.callback import GovernorCallback

    assert {"early_stopping", "curve_extrapolation"} <= set(GRID)
    for spec in (
        "curve_extrapolation:kappa=2,to_end=true,min_points=5",
        "early_stopping:early_stopping_patience=2",
    ):
        out = tmp_path / spec.split(":")[0]
        export(spec, out)  # export itself checks the artifact picks the source's actions
        gov = load_governor(out)
        cb = GovernorCallback(str(out), budget_flops=1e12, interval_steps=5)
        assert cb.governor.kind == "heuristic" and not cb.shielded  # a rule runs unshielded
        i = first_stop(gov, episode(power_law))  # the v1 actions (K = 20) of the packaged instance set
        # curve_extrapolation stops on the power law; early_stopping never does (every eval improves)
        assert (i is not None and 0 < i < 50) if spec.startswith("curve") else i is None
    # a rule whose stop is a fitted model stays a learned governor when exported: shielded by default
    export("learned_curve", tmp_path / "lc")
    lc = load_governor(tmp_path / "lc")
    assert lc.kind == "heuristic" and lc.learned and is_learned(lc)
    cb = GovernorCallback(str(tmp_path / "lc"), budget_flops=1e12, interval_steps=5)
    assert isinstance(cb.governor, Shielded) and cb.shielded  # it was not, before: a heuristic-kind artifact


def test_curve_extrapolation_runs_a_real_episode(module_cache):
    from govgym.envs.finetune_env import FineTuneEnv

    env = FineTuneEnv(TINY)
    # kappa 50: it stops as soon as the fit's predicted gain is below 50 lam: a short episode, the stop path run
    pol = make_policy("curve_extrapolation", env.action_names, kappa=50.0, min_points=3)
    o, _ = env.reset(seed=0, options={"instance": "t-free"})
    done, n, actions = False, 0, []
    while not done:
        a, _ = pol.predict(o, episode_start=n == 0, action_masks=env.action_masks())
        actions.append(env.action_names[int(a)])
        o, _, term, trunc, info = env.step(a)
        done, n = term or trunc, n + 1
        assert "invalid_action" not in info
    assert actions[:3] == ["continue"] * 3  # E_0 and 2 points: no fit before 3 points
    assert actions[-1] == "stop" and set(actions[:-1]) == {"continue"}, actions


# ---------------------------------------------------------------------- the shield
class AlwaysStop:
    """A stand-in learned governor (as an exported agent describes itself): it stops at every decision
    after the first eval gain (eval ratio < 1), like the issue-20 agent that stopped a run at 24%."""

    kind = "agent"
    action_names = NAMES
    interval_steps = 5

    def predict(self, obs, state=None, episode_start=None, deterministic=True, action_masks=None):
        o = np.asarray(obs, dtype=np.float32)
        a = (o.reshape(-1, o.shape[-1])[:, F["eval_ratio"]] < 1.0).astype(np.int64)
        return (a.reshape(()) if o.ndim == 1 else a), state


def test_shield_vetoes_a_stop_while_the_last_interval_gained_more_than_k_lambda():
    s = Shielded(AlwaysStop(), k=10)
    assert NAMES[int(s.predict(obs(0.2, 0.8, lam=0.05, gain_rate=2.0))[0])] == "continue"  # 2 > 10 x 0.05
    assert NAMES[int(s.predict(obs(0.3, 0.79, lam=0.05, gain_rate=0.1))[0])] == "stop"  # 0.1 < 0.5
    assert s.fired == 1 and not s.last_fired.any()
    batch = np.stack([obs(0.4, 0.7, lam=0.05, gain_rate=r) for r in (3.0, 0.2, 0.6)])
    assert s.predict(batch)[0].tolist() == [0, 1, 0] and s.fired == 3
    # the test can fail: without the shield the same governor stops the still-improving run
    assert NAMES[int(AlwaysStop().predict(obs(0.2, 0.8, lam=0.05, gain_rate=2.0))[0])] == "stop"


def test_shield_under_equal_quality_waits_for_the_predicted_final_loss():
    n, tol = 50, 0.005
    s = Shielded(AlwaysStop())
    acts = [
        int(s.predict(o, episode_start=np.array([i == 0]))[0])
        for i, o in enumerate(episode(power_law, n, tol=tol))
    ]
    # from 3 points on it vetoes until the curve's predicted end is within the tolerance (+1%) of now
    first = next(i for i in range(3, len(acts)) if acts[i] == 1)
    assert s.fired == first - 3
    c_ok = ((1.005 * 1.01 * power_law(1.0) - 0.6) / 0.03) ** (-1 / 0.8)  # L(c) <= (1+tol)(1+margin) L(1)
    assert abs(first / n - c_ok) <= 2 / n, (first / n, c_ok)
    assert acts[2] == 1  # its stop at 2 points after E_0 passes: no fit yet, nothing to veto on


def test_shield_wraps_learned_governors_only_and_checks_its_knobs():
    rule = make_policy("marginal_gain", NAMES)
    assert shield(rule) is rule and shield(AlwaysStop(), on=False).__class__ is AlwaysStop
    assert isinstance(shield(AlwaysStop()), Shielded) and is_learned(AlwaysStop()) and not is_learned(rule)
    assert isinstance(Shielded(rule), Heuristic)  # a rule can still be shielded explicitly
    assert is_learned(make_policy("learned_curve", NAMES))  # a fitted model's stop: shielded like an agent
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(ConfigError, match="shield.k"):
            Shielded(AlwaysStop(), k=bad)
    with pytest.raises(ConfigError, match="action names including 'stop'"):
        Shielded(AlwaysStop(), action_names=["continue"])


def test_callback_shields_a_learned_governor_by_default_and_logs_it(tmp_path):
    from transformers import Trainer, TrainingArguments

    from govgym.deploy.callback import GovernorCallback
    from tests.conftest import pattern_data, tiny_llama

    def run(**kw):
        log = tmp_path / f"d{len(kw)}.json"
        cb = GovernorCallback(AlwaysStop(), budget_flops=1e15, interval_steps=5, lam=0.01, log_path=log, **kw)
        args = TrainingArguments(
            output_dir=str(tmp_path / "out"), max_steps=10, per_device_train_batch_size=4, learning_rate=3e-3,
            report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
        )  # fmt: skip
        data = pattern_data(32, 16, 64, seed=0).remove_columns("noise")
        held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
        model = tiny_llama(vocab=64, hidden=32, layers=1, heads=2, inter=64)
        Trainer(model, args, train_dataset=data, eval_dataset=held, callbacks=[cb]).train()
        return cb, json.loads(log.read_text())

    cb, log = run()
    assert cb.shielded and log["shield"]["on"] and log["shield"]["k"] == DEFAULT_K
    # the tiny model's eval loss falls fast (gain rate >> 10 x 0.01), so the stop at step 5 is vetoed
    assert log["decisions"][1]["shield"] == "stop" and log["decisions"][1]["action"] == "continue"
    assert log["shield"]["fired"] == sum("shield" in d for d in log["decisions"]) >= 1
    assert log["decisions"][-1]["shield_fired"] == log["shield"]["fired"]
    off, log_off = run(shield=False)
    assert not off.shielded and not log_off["shield"]["on"] and log_off["shield"]["fired"] == 0
    assert [d["action"] for d in log_off["decisions"]] == [
        "continue",
        "stop",
    ]  # unshielded: stopped at step 5
    with pytest.raises(ConfigError, match="shield must be True or False"):
        GovernorCallback(AlwaysStop(), budget_flops=1e12, shield="yes")
    with pytest.raises(ConfigError, match="shield_k"):
        GovernorCallback(AlwaysStop(), budget_flops=1e12, shield_k=float("nan"))


def test_harness_runs_a_policy_behind_the_shield_and_counts_its_vetoes(module_cache):
    """A spec with ``shield`` set runs behind a fresh ``Shielded`` per task; the board gets its column."""
    from govgym.agents.harness import run_tasks
    from govgym.agents.report import format_board
    from govgym.agents.scoring import episode_rows, leaderboard
    from govgym.agents.specs import PolicySpec, parse_spec

    eager = PolicySpec("mg", "heuristic", "marginal_gain", (("kappa", 50.0),))  # stops at its first rate
    specs = [
        parse_spec("fixed_budget"),
        eager,
        PolicySpec("mg+shield", "heuristic", "marginal_gain", eager.knobs, shield=0.0),
    ]
    res = run_tasks(TINY, "train", ["t-free"], [0], specs, workers=1, progress=False)
    eps = {e["policy"]: e for e in res[0]["episodes"]}
    assert eps["mg"]["shield_fired"] == 0 and eps["mg"]["actions"][-1] == "stop"
    # k = 0: every stop after an interval that gained anything is vetoed, so it runs longer
    assert eps["mg+shield"]["shield_fired"] >= 1 and len(eps["mg+shield"]["actions"]) > len(
        eps["mg"]["actions"]
    )
    board = leaderboard(episode_rows(res))
    assert {b["policy"]: b["shield_fired"] for b in board}["mg+shield"] == eps["mg+shield"]["shield_fired"]
    assert "shield fired" in format_board(board)


def test_the_shield_never_vetoes_a_stop_at_the_memory_cap():
    """A stop while the peak is at its cap (a cap arrived mid-run: mem_frac 1.16 on held-out hoa-0013) may
    be what avoids an OOM: the shield lets it stand, however fast the loss still falls."""
    o = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    o[F["budget_left"]], o[F["eval_ratio"]], o[F["gain_rate"]], o[F["lam"]] = 0.6, 0.8, 5.0, 0.05
    s = Shielded(AlwaysStop())
    first = o.copy()
    first[F["gain_rate"]], first[F["eval_ratio"]] = 0.0, 1.0  # the reset observation
    s.predict(first, episode_start=np.array([True]))
    assert s.predict(o, episode_start=np.array([False]))[0] == 0 and s.fired == 1  # falling fast: vetoed
    capped = o.copy()
    capped[F["mem_frac"]] = 1.16
    assert s.predict(capped, episode_start=np.array([False]))[0] == NAMES.index("stop") and s.fired == 1
