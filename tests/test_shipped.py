"""Issue 19 item 5: governors that ship in the package (``deploy/shipped.py``, ``configs/governors/``).

Each shipped name loads with every artifact check, carries the tuned v1 knobs, and acts as the heuristic
built from the same knobs on recorded observations; the packaged files are what ``write_shipped`` writes
today (a change of knobs or observation spec fails here until they are rebuilt); ``GovernorCallback``
takes a shipped name or a heuristic spec string.
"""

from __future__ import annotations

import json

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


def _actions(gov, episodes, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    out = []
    for episode in episodes:
        for t, obs in enumerate(episode):
            mask = rng.random(len(gov.action_names)) < 0.7
            mask[0] = mask[-1] = True  # continue and stop are always possible
            a, _ = gov.predict(obs, episode_start=np.array([t == 0]), action_masks=mask)
            out.append(int(a))
    return out


@pytest.mark.parametrize("name", shipped.NAMES)
def test_each_shipped_governor_acts_as_its_tuned_heuristic(name):
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


def test_the_default_is_marginal_gain_and_says_why():
    gov = shipped.load_shipped("default")
    assert shipped.DEFAULT == "marginal_gain" and gov.meta["heuristic"]["name"] == "marginal_gain"
    assert "issue 20" in gov.meta["provenance"]["why_default"]


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


@pytest.mark.parametrize(
    "spec, policy", [("default", "MarginalGainStop"), ("patience", "PatienceStop"), ("zeus", "ZeusStop")]
)
def test_governor_callback_takes_a_shipped_name(spec, policy):
    cb = GovernorCallback(spec, budget_steps=40)
    assert cb.governor.meta["heuristic"]["name"] == shipped.resolve(spec)
    assert cb.k == 20 and cb._governor_ref == spec  # a string: restorable from a checkpoint's arguments
    assert type(cb.governor._heuristic).__name__ == policy


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
