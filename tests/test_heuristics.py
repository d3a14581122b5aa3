"""Heuristic governors on crafted observations (their logic) and in the real tiny env (their contract)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from govgym.agents.heuristics import POLICIES, F, make_policy
from govgym.efficiency.signals import FEATURE_NAMES
from govgym.typed import ConfigError

NAMES = ["continue", "reprune_hardest", "reprune_easiest", "switch:full", "switch:lora", "switch:qlora+gc", "stop"]


def obs(**kw) -> np.ndarray:
    o = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    o[F["budget_left"]] = 1.0
    o[F["eval_ratio"]] = 1.0
    for k, v in kw.items():
        o[F[k]] = v
    return o


def run(policy, seq):
    return [NAMES[policy.predict(o, action_masks=np.ones(len(NAMES), bool))[0]] for o in seq]


def test_patience_matches_early_stopping_callback():
    p = make_policy("patience", NAMES, patience=2, threshold=0.01)
    seq = [obs(budget_left=0.9, eval_ratio=0.9), obs(budget_left=0.8, eval_ratio=0.895), obs(budget_left=0.7, eval_ratio=0.85),
           obs(budget_left=0.6, eval_ratio=0.849), obs(budget_left=0.5, eval_ratio=0.848)]  # fmt: skip
    assert run(p, seq) == ["continue", "continue", "continue", "continue", "stop"]
    assert run(p, [obs(budget_left=0.9, eval_ratio=0.9)]) == ["continue"]  # new episode: state reset


def test_marginal_gain_stops_below_lambda():
    p = make_policy("marginal_gain", NAMES, kappa=1.0, patience=1)
    seq = [obs(budget_left=0.9, gain_rate_ema=2.0, lam=0.5), obs(budget_left=0.8, gain_rate_ema=0.4, lam=0.5)]
    assert run(p, seq) == ["continue", "stop"]


def test_zeus_stops_after_beta_times_cost_to_best():
    p = make_policy("zeus", NAMES, beta=1.5)
    seq = [obs(budget_left=0.8, eval_ratio=0.9), obs(budget_left=0.75, eval_ratio=0.95), obs(budget_left=0.6, eval_ratio=0.95)]
    assert run(p, seq) == ["continue", "continue", "stop"]  # best at cost 0.2; 0.4 > 1.5 x 0.2


def test_memory_reactive_switches_lean_then_back():
    p = make_policy("memory_reactive", NAMES, margin=0.1, patience=5)
    mask = np.ones(len(NAMES), bool)
    mask[NAMES.index("switch:qlora+gc")] = False  # pretend it does not fit
    a, _ = p.predict(obs(budget_left=0.9, eval_ratio=0.9, mem_frac=0.95, strategy_full=1), action_masks=mask)
    assert NAMES[a] == "switch:lora"
    every = np.ones(len(NAMES), bool)
    a, _ = p.predict(obs(budget_left=0.8, eval_ratio=0.8, mem_frac=0.6, strategy_lora=1), action_masks=every)
    assert NAMES[a] == "continue"  # lean and fitting: no flip-flop back to a strategy that only just fits
    a, _ = p.predict(obs(budget_left=0.7, eval_ratio=0.7, mem_frac=0.4, strategy_lora=1), action_masks=every)
    assert NAMES[a] == "switch:full"  # the same strategy's fraction fell by a third: the cap grew
    p = make_policy("memory_reactive", NAMES, margin=0.1, patience=5)
    mask = every.copy()
    mask[NAMES.index("switch:full")] = False  # full does not fit even now
    p.predict(obs(budget_left=0.9, eval_ratio=0.9, mem_frac=0.6, strategy_lora=1), action_masks=mask)
    a, _ = p.predict(obs(budget_left=0.8, eval_ratio=0.8, mem_frac=0.3, strategy_lora=1), action_masks=mask)
    assert NAMES[a] == "continue"  # never 'back' to a leaner, slower strategy (qlora+gc) when full cannot fit


def test_marginal_gain_waits_for_a_rate():
    p = make_policy("marginal_gain", NAMES, kappa=1.0, patience=1)
    assert run(p, [obs(budget_left=0.99, gain_rate_ema=0.0, lam=0.5)]) == ["continue"]  # reset obs: no interval yet


def test_bad_knob_and_name_are_clear():
    with pytest.raises(ConfigError, match="unknown knob 'patiense'"):
        make_policy("patience", NAMES, patiense=3)
    with pytest.raises(ConfigError, match="Did you mean 'zeus'"):
        make_policy("zues", NAMES)


def test_every_policy_runs_an_episode_in_the_real_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVGYM_CACHE", str(tmp_path))
    from govgym.envs.finetune_env import FineTuneEnv

    env = FineTuneEnv(str(Path(__file__).parent / "data" / "tiny_instances.yaml"))
    for name in POLICIES:
        pol = make_policy(name, env.action_names, seed=1)
        o, _ = env.reset(seed=0, options={"instance": "t-squeeze"})
        done, n = False, 0
        while not done:
            a, _ = pol.predict(o, episode_start=n == 0, action_masks=env.action_masks())
            o, _, term, trunc, info = env.step(a)
            done, n = term or trunc, n + 1
            assert "invalid_action" not in info, (name, info["invalid_action"])
