"""Heuristic governors on crafted observations (their logic), against transformers' EarlyStoppingCallback,
through SB3's evaluate_policy on VecEnvs, and in the real tiny env (their contract)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from govgym.agents.heuristics import POLICIES, F, make_policy
from govgym.efficiency.signals import FEATURE_NAMES, HIGH, LOW
from govgym.typed import ConfigError

NAMES = [
    "continue",
    "reprune_hardest",
    "reprune_easiest",
    "switch:full",
    "switch:lora",
    "switch:qlora+gc",
    "stop",
]
DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny_instances.yaml")
TRACES = DATA / "fixed_budget_traces.json"


def obs(**kw) -> np.ndarray:
    o = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    o[F["budget_left"]] = 1.0
    o[F["eval_ratio"]] = 1.0
    for k, v in kw.items():
        o[F[k]] = v
    return o


def run(policy, seq):
    return [NAMES[policy.predict(o, action_masks=np.ones(len(NAMES), bool))[0]] for o in seq]


def test_patience_stops_after_patience_evals_without_improvement():
    p = make_policy("patience", NAMES, patience=2, threshold=0.01)
    seq = [
        obs(budget_left=0.9, eval_ratio=0.9),
        obs(budget_left=0.8, eval_ratio=0.895),
        obs(budget_left=0.7, eval_ratio=0.85),
        obs(budget_left=0.6, eval_ratio=0.849),
        obs(budget_left=0.5, eval_ratio=0.848),
    ]
    assert run(p, seq) == ["continue", "continue", "continue", "continue", "stop"]
    assert run(p, [obs(budget_left=0.9, eval_ratio=0.9)]) == ["continue"]  # new episode: state reset


@functools.cache
def training_args():
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir="unused",
        eval_strategy="steps",
        metric_for_best_model="loss",
        greater_is_better=False,
        report_to="none",
        use_cpu=True,
    )


def callback_stop(losses: list[float], patience: int, threshold: float) -> int | None:
    """Index of the eval at which transformers' own EarlyStoppingCallback stops training (None: never).

    The Trainer's order per evaluation: ``on_evaluate`` (the callback counts), then
    ``_determine_best_metric`` updates ``state.best_metric``; both run here as transformers' code.
    """
    from transformers import EarlyStoppingCallback, Trainer, TrainerControl, TrainerState

    args, state, control = training_args(), TrainerState(), TrainerControl()
    cb = EarlyStoppingCallback(early_stopping_patience=patience, early_stopping_threshold=threshold)
    trainer = type("TrainerView", (), {"args": args, "state": state})()  # what _determine_best_metric reads
    for i, loss in enumerate(losses):
        metrics = {"eval_loss": loss}
        cb.on_evaluate(args, state, control, metrics)
        Trainer._determine_best_metric(trainer, metrics, None)
        if control.should_training_stop:
            return i
    return None


def test_patience_matches_transformers_early_stopping_callback():
    """Same eval-loss sequence, same knobs: the heuristic stops at the eval where transformers' callback does."""
    rng = np.random.default_rng(0)
    stops = set()
    for trial in range(24):
        n = 30
        # noisy decreasing eval-loss ratios: gains shrink, noise sometimes makes an eval worse
        gains = rng.exponential(0.02, n) * np.exp(-np.arange(n) / rng.uniform(3, 15)) + rng.normal(
            0, 0.004, n
        )
        ratios = np.clip(1.0 - np.cumsum(gains), 0.05, 2.0).astype(np.float32)
        patience, threshold = int(rng.integers(1, 5)), float(rng.choice([0.0, 0.002, 0.005, 0.01]))
        expected = callback_stop([float(r) for r in ratios], patience, threshold)
        p = make_policy("patience", NAMES, patience=patience, threshold=threshold)
        acts = run(p, [obs(budget_left=1.0 - (i + 1) / (n + 1), eval_ratio=r) for i, r in enumerate(ratios)])
        got = acts.index("stop") if "stop" in acts else None
        assert got == expected, (trial, patience, threshold, ratios.tolist())
        stops.add(expected)
    assert (
        len(stops) > 3
    )  # the sequences stop at many different evals (and some never): not a trivial agreement


def test_marginal_gain_stops_below_lambda():
    p = make_policy("marginal_gain", NAMES, kappa=1.0, patience=1)
    seq = [obs(budget_left=0.9, gain_rate_ema=2.0, lam=0.5), obs(budget_left=0.8, gain_rate_ema=0.4, lam=0.5)]
    assert run(p, seq) == ["continue", "stop"]


def test_zeus_stops_after_beta_times_cost_to_best():
    p = make_policy("zeus", NAMES, beta=1.5)
    seq = [
        obs(budget_left=0.8, eval_ratio=0.9),
        obs(budget_left=0.75, eval_ratio=0.95),
        obs(budget_left=0.6, eval_ratio=0.95),
    ]
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
    assert run(p, [obs(budget_left=0.99, gain_rate_ema=0.0, lam=0.5)]) == [
        "continue"
    ]  # reset obs: no interval yet


def test_bad_knob_and_name_are_clear():
    with pytest.raises(ConfigError, match="unknown knob 'patiense'"):
        make_policy("patience", NAMES, patiense=3)
    with pytest.raises(ConfigError, match="Did you mean 'zeus'"):
        make_policy("zues", NAMES)


@pytest.fixture(scope="module")
def tiny_cache(shared_cache):
    """The session's cache (tiny base model, data; conftest) for this module's real-env tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVGYM_CACHE", str(shared_cache))
        yield


def test_every_policy_runs_an_episode_in_the_real_env(tiny_cache):
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


def test_zero_d_and_batched_actions_have_sb3_shapes():
    """One observation -> a 0-d action array, a batch of n -> shape (n,): what an SB3 policy returns."""
    from stable_baselines3 import PPO

    env = ReplayEnv([load_traces()[0]])
    sb3 = PPO("MlpPolicy", env, n_steps=8, batch_size=8, device="cpu", seed=0)
    o, _ = env.reset()
    batch = np.stack([o, o, o])
    for name in POLICIES:
        pol = make_policy(name, NAMES, seed=0)
        one, _ = pol.predict(o, action_masks=env.action_masks())
        many, _ = pol.predict(
            batch, episode_start=np.ones(3, bool), action_masks=np.stack([env.action_masks()] * 3)
        )
        assert isinstance(one, np.ndarray) and one.shape == sb3.predict(o)[0].shape == ()
        assert many.shape == sb3.predict(batch)[0].shape == (3,) and many.dtype == np.int64
        if (
            name != "random"
        ):  # each env of the batch starts fresh on the same observation: the single call's action
            assert (
                many.tolist() == [int(one)] * 3 and NAMES[one] == NAMES[many[0]]
            )  # a 0-d int array indexes like an int
    with pytest.raises(ConfigError, match=r"shape \(20,\) or a batch"):
        make_policy("patience", NAMES).predict(np.zeros(7, np.float32))


# ---------------------------------------------------------------------------- VecEnvs, SB3's evaluate_policy
def load_traces() -> list[dict]:
    data = json.loads(TRACES.read_text())
    assert data["features"] == list(FEATURE_NAMES), (
        f"{TRACES} predates the observation spec; rerun python tests/test_heuristics.py"
    )
    return data["episodes"]


class ReplayEnv(gym.Env):
    """Replays recorded real fixed-budget episodes (one per reset, in turn) until a stop.

    Exact for stop-only governors: they follow the fixed-budget path until they stop. Each episode's
    (trace, steps taken) is logged, so a test can compare with the same policy run alone.
    """

    def __init__(self, traces: list[dict]):
        self.traces, self.next, self.log = traces, 0, []
        self.observation_space = spaces.Box(LOW, HIGH, dtype=np.float32)
        self.action_space = spaces.Discrete(len(NAMES))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k, self.t = self.next % len(self.traces), 0
        self.next += 1
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.asarray(self.traces[self.k]["observations"][self.t], dtype=np.float32)

    def step(self, action):
        rewards = self.traces[self.k]["rewards"]
        if NAMES[action] == "stop":
            self.log.append((self.k, self.t))
            return self._obs(), 0.0, True, False, {}
        r, self.t = rewards[self.t], self.t + 1
        if self.t == len(rewards):
            self.log.append((self.k, self.t))
        return self._obs(), float(r), False, self.t == len(rewards), {}

    def action_masks(self) -> np.ndarray:
        return np.ones(len(NAMES), dtype=bool)


def alone(name: str, knobs: dict, trace: dict) -> int:
    """Steps a fresh single-env policy takes on one recorded episode before it stops (or the budget ends)."""
    pol, t = make_policy(name, NAMES, **knobs), 0
    for o in trace["observations"][:-1]:
        if NAMES[pol.predict(np.asarray(o, np.float32))[0]] == "stop":
            return t
        t += 1
    return t


@pytest.mark.parametrize(
    "name,knobs",
    [
        ("patience", {"patience": 2, "threshold": 0.005}),
        ("zeus", {"beta": 1.02}),
        ("marginal_gain", {"kappa": 0.15, "patience": 2}),
    ],
)
def test_evaluate_policy_on_a_vecenv_keeps_state_per_env(name, knobs):
    """SB3's evaluate_policy drives n envs with one policy: each env's episodes end where the policy alone would."""
    traces = load_traces()
    # env 0 replays the 7-interval t-free episodes, env 1 the 5-interval t-lora ones: they stop at different steps,
    # so bookkeeping shared across envs (or reset by the other env's episode start) changes where they stop
    groups = [
        [t for t in traces if t["instance"] == "t-free"],
        [t for t in traces if t["instance"] == "t-lora"],
    ]
    venv = DummyVecEnv([lambda g=g: Monitor(ReplayEnv(g)) for g in groups])
    pol = make_policy(name, NAMES, **knobs)
    rewards, lengths = evaluate_policy(pol, venv, n_eval_episodes=6, return_episode_rewards=True, warn=False)
    assert len(lengths) == 6
    for env, g in zip(venv.envs, groups):
        # evaluate_policy counts each env's first 3 episodes (6 over 2 envs); an env past its count keeps
        # episode_start=True while the other finishes, so its later episodes are neither counted nor governed
        log = env.unwrapped.log[:3]
        assert [steps for _, steps in log] == [alone(name, knobs, g[k]) for k, _ in log], name
    expected = {alone(name, knobs, t) for t in traces}
    assert len(expected) > 1, "knobs chosen so the two instances stop at different steps"


def test_random_policy_through_maskable_evaluate_policy():
    """sb3-contrib's evaluate_policy passes a (n, A) mask batch; random draws only valid actions per env."""
    from sb3_contrib.common.maskable.evaluation import evaluate_policy as maskable_evaluate_policy

    class Masked(ReplayEnv):
        def action_masks(self) -> np.ndarray:
            mask = np.zeros(len(NAMES), dtype=bool)
            mask[[NAMES.index("continue"), NAMES.index("stop")]] = True
            return mask

    traces = load_traces()
    venv = make_vec_env(lambda: Masked(traces), n_envs=3, vec_env_cls=DummyVecEnv)
    pol = make_policy("random", NAMES, seed=3)
    _, lengths = maskable_evaluate_policy(
        pol, venv, n_eval_episodes=9, return_episode_rewards=True, warn=False
    )
    assert len(lengths) == 9 and min(lengths) < max(
        lengths
    )  # continue or stop only: episodes of several lengths


def test_heuristic_through_evaluate_policy_on_the_real_env(tiny_cache):
    """The real govgym/FineTune-v0 (tiny instances) in a DummyVecEnv of 2, driven by SB3's evaluate_policy."""
    venv = DummyVecEnv(
        [lambda: Monitor(gym.make("govgym/FineTune-v0", instances=TINY, wall_time_info=False))] * 2
    )
    starts = [{"instance": "t-free", "episode_seed": 0}, {"instance": "t-free", "episode_seed": 1}]
    venv.set_options(starts)
    knobs = {"patience": 1, "threshold": 0.0075}
    rewards, lengths = evaluate_policy(
        make_policy("patience", NAMES, **knobs), venv, n_eval_episodes=2, return_episode_rewards=True
    )
    # each env's first episode equals the same policy governing that (instance, seed) alone
    single = []
    for env, opts in zip(venv.envs, starts):
        pol, ret, n, done = make_policy("patience", NAMES, **knobs), 0.0, 0, False
        o, _ = env.reset(options=opts)
        while not done:
            a, _ = pol.predict(o, episode_start=n == 0, action_masks=env.unwrapped.action_masks())
            o, r, term, trunc, _ = env.step(a)
            ret, n, done = ret + r, n + 1, term or trunc
        single.append((n, ret))
    got = sorted(zip(lengths, rewards))
    assert [n for n, _ in got] == [n for n, _ in sorted(single)]
    assert [r for _, r in got] == pytest.approx(
        [r for _, r in sorted(single)], abs=1e-6
    )  # Monitor rounds to 6 digits
    assert min(lengths) < 7  # patience stopped before the 7-interval budget ran out


def record_traces() -> None:
    """Rewrite tests/data/fixed_budget_traces.json from real fixed-budget episodes of the tiny instances."""
    episodes = []
    for split, instance in (("train", "t-free"), ("test", "t-lora")):
        env = gym.make("govgym/FineTune-v0", instances=TINY, split=split, wall_time_info=False).unwrapped
        for seed in (0, 1, 2):
            o, _ = env.reset(options={"instance": instance, "episode_seed": seed})
            ep = {"instance": instance, "episode_seed": seed, "observations": [o.tolist()], "rewards": []}
            done = False
            while not done:
                o, r, term, trunc, _ = env.step(0)
                ep["observations"].append(o.tolist())
                ep["rewards"].append(float(r))
                done = term or trunc
            episodes.append(ep)
    data = {
        "note": "Observations and rewards of real fixed-budget episodes (action 0 every interval) of "
        "tests/data/tiny_instances.yaml; written by `python tests/test_heuristics.py`.",
        "features": list(FEATURE_NAMES),
        "episodes": [
            {
                **e,
                "observations": [[float(f"{v:.7g}") for v in o] for o in e["observations"]],
                "rewards": [float(f"{v:.7g}") for v in e["rewards"]],
            }
            for e in episodes
        ],
    }
    TRACES.write_text(json.dumps(data, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    import govgym  # noqa: F401  (registers govgym/FineTune-v0)

    record_traces()


@pytest.mark.parametrize(
    "name,knobs",
    [
        ("patience", {"patience": float("nan")}),
        ("patience", {"threshold": float("nan")}),
        ("patience", {"patience": 2.5}),
        ("patience", {"patience": 0}),
        ("marginal_gain", {"kappa": -1.0}),
        ("marginal_gain", {"kappa": float("inf")}),
        ("marginal_gain", {"use_ema": "maybe"}),
        ("memory_reactive", {"margin": 1.5}),
        ("zeus", {"beta": float("nan")}),
        ("patience", {"patienc": 3}),
    ],
)
def test_knobs_are_typed_and_range_checked(name: str, knobs: dict) -> None:
    """A knob from a spec, the CLI or heuristics.yaml is checked: NaN, out of range, wrong type, unknown."""
    with pytest.raises(ConfigError, match=f"{name}|patienc"):
        make_policy(name, NAMES, **knobs)


def test_every_grid_point_and_shipped_knob_is_accepted() -> None:
    from govgym.agents.policies import load_knobs
    from govgym.agents.tune import grid_specs

    for spec in grid_specs():
        make_policy(spec.name, NAMES, **dict(spec.knobs))
    for name, knobs in load_knobs().items():
        make_policy(name, NAMES, **knobs)
