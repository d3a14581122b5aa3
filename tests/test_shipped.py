"""Issues 19 item 5 and 20 item 6: governors that ship in the package (``deploy/shipped.py``, ``configs/governors/``).

Each shipped heuristic loads with every artifact check, carries the tuned v1 knobs, and acts as the heuristic
built from the same knobs on recorded observations; ``default`` is the v2 agent mbrl_p0 (price) and
``default_eq`` learned_curve (equal quality), each acting as its source; the packaged files are what
``write_shipped`` writes today (a change of knobs, agent or observation spec fails here until they are
rebuilt); ``GovernorCallback`` takes a shipped name (``default`` per objective) or a heuristic spec string.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from govgym.agents.heuristics import make_policy
from govgym.agents.specs import default_knobs_path, load_knobs
from govgym.deploy import shipped
from govgym.deploy.callback import GovernorCallback
from govgym.efficiency.signals import HIGH, LOW
from govgym.errors import ConfigError
from tests.test_export import _fixed_budget_episodes


def _episodes() -> list[np.ndarray]:
    """Recorded fixed-budget episodes (mostly 'stop' states) and 4 x 64 observations drawn over the spec's range."""
    rng = np.random.default_rng(0)
    drawn = [rng.uniform(LOW, HIGH, size=(64, len(LOW))).astype(np.float32) for _ in range(4)]
    return [*_fixed_budget_episodes(), *drawn]


def _actions(gov, episodes, seed: int = 0, n_actions: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    out = []
    for episode in episodes:
        for t, obs in enumerate(episode):
            mask = rng.random(n_actions or len(gov.action_names)) < 0.7
            mask[0] = mask[-1] = True  # continue and stop are always possible
            a, _ = gov.predict(obs, episode_start=np.array([t == 0]), action_masks=mask)
            out.append(int(a))
    return out


@pytest.mark.parametrize("name", shipped.HEURISTICS)
def test_each_shipped_heuristic_acts_as_its_tuned_heuristic(name):
    gov = shipped.load_shipped(name)
    policy = shipped.resolve(name)
    knobs = load_knobs(default_knobs_path(version=1))[policy]
    h = gov.meta["heuristic"]
    assert gov.kind == "heuristic" and h["name"] == policy and h["knobs"] == knobs
    assert gov.interval_steps == 20 and gov.action_names[0] == "continue" and gov.action_names[-1] == "stop"
    prov = gov.meta["provenance"]
    assert prov["shipped_as"] == name and "heuristics_v1.yaml" in prov["knobs"]
    assert prov["leaderboard"]["return_mean_sd"]["marginal_gain"] == [0.085, 0.001]
    episodes = _episodes()
    ref = make_policy(policy, gov.action_names, **knobs)
    assert _actions(gov, episodes) == _actions(ref, episodes)


def test_the_default_is_the_v2_agent_and_acts_as_it(monkeypatch):
    """``default`` (price) is mbrl_p0 exported: stop-only, K = 10, the agent's own actions on recorded and drawn
    observations (SB3's predict on the source agent), and its provenance says why with the v2 figures."""
    from govgym.agents.policies import AgentPolicy

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # AGENT is a source-tree path
    gov = shipped.load_shipped("default")
    assert shipped.DEFAULT == "mbrl_p0" and gov.kind == "agent" and gov.learned
    assert gov.interval_steps == 10 and gov.meta["allowed_actions"] == ["continue", "stop"]
    prov = gov.meta["provenance"]
    assert prov["policy"] == "mbrl_p0" and prov["source"] == shipped.AGENT and prov["objective"] == "price"
    assert "issue 20" in prov["why_default"] and prov["leaderboard"]["instances"] == 256
    ref = AgentPolicy(shipped.AGENT)
    episodes = _episodes()
    assert _actions(gov, episodes) == _actions(ref, episodes, n_actions=gov.n_actions)
    assert {"continue", "stop"} == {gov.action_names[a] for a in _actions(gov, episodes)}  # it does both


def test_the_default_under_equal_quality_is_learned_curve():
    gov = shipped.load_shipped("default", tolerance=0.005)
    assert shipped.resolve("default", 0.005) == "default_eq" and shipped.resolve("default") == "default"
    h = gov.meta["heuristic"]
    knobs = load_knobs(shipped.EQ_KNOBS)["learned_curve"]
    assert h["name"] == "learned_curve" and h["knobs"] == knobs and gov.learned  # shielded like an agent
    prov = gov.meta["provenance"]
    assert prov["shipped_as"] == "default_eq" and prov["objective"] == "equal_quality"
    assert "split (d)" in prov["why_default"]
    ref = make_policy("learned_curve", gov.action_names, **knobs)
    episodes = [np.concatenate([e, np.full((len(e), 1), 0.005, np.float32)], axis=1) for e in _episodes()]
    assert _actions(gov, episodes) == _actions(ref, episodes)


def test_the_recorded_observations_tell_the_knobs_apart():
    """The parity check has power: v0's kappa=4 acts otherwise than the shipped v1 kappa=6 (3 of 298 actions)."""
    gov = shipped.load_shipped("marginal_gain")
    v0 = load_knobs(default_knobs_path(version=0))["marginal_gain"]
    assert v0["kappa"] != gov.meta["heuristic"]["knobs"]["kappa"]
    episodes = _episodes()
    assert _actions(gov, episodes) != _actions(make_policy("marginal_gain", gov.action_names, **v0), episodes)


def test_packaged_files_are_what_write_shipped_writes_today(tmp_path):
    shipped.write_shipped(tmp_path)
    for name in shipped.NAMES:
        new = json.loads((tmp_path / name / "governor.json").read_text())
        old = json.loads((shipped.folder() / name / "governor.json").read_text())
        new.pop("govgym_version"), old.pop("govgym_version")
        new.pop("sha256", None), old.pop("sha256", None)
        assert new == old, f"rebuild: python -m govgym.deploy.shipped configs/governors ({name})"


@pytest.mark.parametrize("spec, policy", [("patience", "PatienceStop"), ("zeus", "ZeusStop")])
def test_governor_callback_takes_a_shipped_name(spec, policy):
    cb = GovernorCallback(spec, budget_steps=40)
    assert cb.governor.meta["heuristic"]["name"] == shipped.resolve(spec)
    assert cb.k == 20 and cb._governor_ref == spec  # a string: restorable from a checkpoint's arguments
    assert type(cb.governor._heuristic).__name__ == policy


def test_governor_callback_default_is_the_objectives_winner_behind_the_shield():
    cb = GovernorCallback("default", budget_steps=40)
    assert type(cb.governor).__name__ == "Shielded" and cb.shield and cb._governor_ref == "default"
    assert cb.governor.policy.meta["provenance"]["policy"] == "mbrl_p0" and cb.k == 10
    cb = GovernorCallback("default", budget_steps=40, tolerance=0.005)
    assert cb.governor.policy.meta["heuristic"]["name"] == "learned_curve" and cb.k == 10
    cb = GovernorCallback("default", budget_steps=40, shield=False)
    assert cb.governor.kind == "agent" and cb.governor.meta["provenance"]["shipped_as"] == "default"


def test_governor_callback_takes_a_heuristic_spec_string():
    cb = GovernorCallback("patience:patience=3,threshold=0.01", budget_steps=40, interval_steps=4)
    assert type(cb.governor).__name__ == "PatienceStop" and cb.k == 4
    assert "stop" in cb.action_names
    cb = GovernorCallback("fixed_budget", budget_steps=40)
    assert type(cb.governor).__name__ == "FixedBudget" and cb.k == 20


def test_an_unknown_name_is_one_sentence():
    with pytest.raises(ConfigError, match="neither an artifact folder") as err:
        GovernorCallback("defualt", budget_steps=40)
    assert "\n" not in str(err.value)
