"""Exported governors (issue 10, item 1): same actions as the source, numpy only, refused when tampered.

One tiny MaskablePPO agent is trained per module (8 real env steps on tests/data/tiny_instances.yaml,
as in test_safe_load.py); its exported Governor is compared with SB3's own forward (``AgentPolicy``)
on every observation of real episodes the agent plays, with the env's masks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from govgym.agents.heuristics import POLICIES, make_policy
from govgym.deploy.artifact import ArtifactError, export, load_governor
from govgym.efficiency.signals import HIGH, LOW, spec_hash
from govgym.errors import ConfigError
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny_instances.yaml")


@pytest.fixture(scope="module")
def artifact(agent_dir, tmp_path_factory):
    from govgym.agents.policies import AgentPolicy

    out = tmp_path_factory.mktemp("gov") / "gov"
    export(agent_dir / "final.zip", out, reference=AgentPolicy(agent_dir))
    return out


@pytest.fixture
def copy(artifact, tmp_path):
    """A private copy of the exported artifact (tests edit it)."""
    return Path(shutil.copytree(artifact, tmp_path / "gov"))


def _random_batch(n: int, n_actions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.uniform(LOW, HIGH, size=(n, len(LOW))).astype(np.float32)
    masks = rng.random((n, n_actions)) < 0.6
    masks[:, 0] |= ~masks.any(1)
    return obs, masks


def _fixed_budget_episodes() -> list[np.ndarray]:
    data = json.loads((DATA / "fixed_budget_traces.json").read_text())
    return [np.asarray(e["observations"], dtype=np.float32) for e in data["episodes"]]


# ---------------------------------------------------------------------------- (a) agents: same actions
def test_exported_agent_acts_as_sb3_on_every_observation_of_real_episodes(agent_dir, artifact, module_cache):
    """The agent plays real episodes; at every step, with the env's masks, the artifact picks SB3's action."""
    from govgym.agents.policies import AgentPolicy
    from govgym.envs.finetune_env import FineTuneEnv

    sb3 = AgentPolicy(agent_dir)
    gov = load_governor(artifact)
    assert (
        gov.kind == "agent" and gov.interval_steps == 2 and gov.meta["provenance"]["algo"] == "maskable_ppo"
    )
    checked = 0
    for split, instance in (("train", "t-squeeze"), ("test", "t-lora")):
        env = FineTuneEnv(TINY, split=split)
        assert gov.action_names == env.action_names
        obs, _ = env.reset(options={"instance": instance, "episode_seed": 0})
        done = False
        while not done:
            mask = env.action_masks()
            theirs, _ = sb3.predict(obs, action_masks=mask)
            mine, _ = gov.predict(obs, action_masks=mask)
            assert mine.shape == () and int(mine) == int(theirs), (split, checked)
            obs, _, term, trunc, _ = env.step(int(theirs))
            done = term or trunc
            checked += 1
    assert checked >= 4

    # recorded fixed-budget episodes and random in-range observations with random masks, batched
    obs = np.concatenate([*_fixed_budget_episodes(), _random_batch(2000, 7)[0]])
    masks = _random_batch(len(obs), 7, seed=1)[1]
    mine, theirs = gov.predict(obs, action_masks=masks)[0], sb3.predict(obs, action_masks=masks)[0]
    assert mine.shape == (len(obs),) and np.array_equal(mine, theirs)
    assert masks[np.arange(len(obs)), mine].all()
    assert len(set(mine.tolist())) > 1  # real decisions are compared, not one constant action
    assert np.array_equal(gov.predict(obs)[0], sb3.predict(obs)[0])  # without masks too


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_ppo_and_dqn_agents_export_exactly(algo, tmp_path):
    """The other policy classes (ActorCriticPolicy, DQNPolicy; ReLU, a 2x16 net), written as train() writes them."""
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from govgym.agents.policies import AgentPolicy, write_agent
    from govgym.agents.train import algo_class
    from govgym.envs.finetune_env import FineTuneEnv

    venv = VecNormalize(DummyVecEnv([lambda: FineTuneEnv(TINY, wall_time_info=False)]), norm_reward=False)
    kw = {"policy_kwargs": {"net_arch": [16, 16], "activation_fn": torch.nn.ReLU}}
    model = algo_class(algo)(
        "MlpPolicy", venv, seed=1, device="cpu", **({"learning_starts": 0} if algo == "dqn" else {}), **kw
    )
    obs, masks = _random_batch(2000, 7, seed=2)
    venv.obs_rms.update(obs.astype(np.float64))
    write_agent(
        tmp_path / "agent",
        model,
        venv,
        {
            "algo": algo,
            "obs_spec": spec_hash(),
            "action_names": venv.get_attr("action_names")[0],
            "config": {"instances": TINY},
        },
    )
    export(tmp_path / "agent", tmp_path / "gov", reference=AgentPolicy(tmp_path / "agent"))
    gov = load_governor(tmp_path / "gov")
    theirs, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    assert np.array_equal(gov.predict(obs, action_masks=masks)[0], theirs)  # unmasked policies ignore masks
    assert gov.meta["network"]["activations"] == ["ReLU", "ReLU", ""]


def test_export_refuses_an_artifact_that_acts_otherwise(agent_dir, tmp_path):
    """The export-time check can fail: against another policy as reference, nothing is left behind."""
    with pytest.raises(ConfigError, match="picks another action than the source policy"):
        export(agent_dir, tmp_path / "gov", reference=make_policy("random", [""] * 7, seed=3))
    assert not (tmp_path / "gov" / "governor.json").exists()
    assert not (tmp_path / "gov" / "policy.safetensors").exists()


# ---------------------------------------------------------------------------- (b) heuristics
@pytest.mark.parametrize("spec", [*POLICIES, "marginal_gain:kappa=4", "patience:patience=3,threshold=0.01"])
def test_every_heuristic_exports_and_acts_as_make_policy(spec, tmp_path):
    export(spec, tmp_path / "gov", instances=TINY)
    gov = load_governor(tmp_path / "gov")
    h = gov.meta["heuristic"]
    assert gov.kind == "heuristic" and h["name"] == spec.split(":")[0] and gov.interval_steps == 2
    assert not (tmp_path / "gov" / "policy.safetensors").exists()
    ref = make_policy(h["name"], gov.action_names, **h["knobs"])
    if ":" in spec:  # explicit knobs are kept as given
        assert h["knobs"] == {
            k: yaml.safe_load(v) for k, v in (p.split("=") for p in spec.split(":")[1].split(","))
        }
    rng = np.random.default_rng(0)
    n = len(gov.action_names)
    for episode in _fixed_budget_episodes():  # each recorded episode in order, as the env feeds them
        for t, obs in enumerate(episode):
            mask = rng.random(n) < 0.7
            mask[0] = True
            a, _ = gov.predict(obs, episode_start=np.array([t == 0]), action_masks=mask)
            b, _ = ref.predict(obs, episode_start=np.array([t == 0]), action_masks=mask)
            assert int(a) == int(b), (spec, t)


def test_heuristic_knobs_are_checked_at_export(tmp_path):
    with pytest.raises(ConfigError, match="unknown knob 'bogus'"):
        export("patience:bogus=1", tmp_path / "gov")
    with pytest.raises(ConfigError, match="neither an agent"):
        export("no_such_policy", tmp_path / "gov")
    assert not (tmp_path / "gov").exists()


def test_a_bare_heuristic_exports_with_a_knobs_file_as_evaluate_takes_it(tmp_path, capsys):
    """``govgym export marginal_gain knobs=configs/heuristics_v2.yaml``: the file's knobs, not the packaged v1 ones;
    a knobs path that is not a file is one sentence and writes nothing."""
    from govgym.agents.specs import load_knobs
    from govgym.cli import main

    v2 = str(Path(__file__).resolve().parents[1] / "configs" / "heuristics_v2.yaml")
    assert main(["export", "marginal_gain", "--out", str(tmp_path / "v2"), f"knobs={v2}"]) == 0
    h = load_governor(tmp_path / "v2").meta["heuristic"]
    assert (
        h["knobs"]
        == load_knobs(v2)["marginal_gain"]
        != load_governor(export("marginal_gain", tmp_path / "v1")).meta["heuristic"]["knobs"]
    )
    assert main(["export", "marginal_gain", "--out", str(tmp_path / "z"), "knobs=/nonexistent/k.yaml"]) == 2
    err = capsys.readouterr().err
    assert (
        "/nonexistent/k.yaml is not a file" in err
        and "Traceback" not in err
        and not (tmp_path / "z").exists()
    )


# ---------------------------------------------------------------------------- (c) refused artifacts
def _resign(folder: Path, edit) -> None:
    """Edit governor.json and give it a valid own hash (a forger who knows the format)."""
    from govgym.sealed import seal

    meta = json.loads((folder / "governor.json").read_text())
    edit(meta)
    seal(meta)
    (folder / "governor.json").write_text(json.dumps(meta))


def test_truncated_weights_are_refused(copy):
    p = copy / "policy.safetensors"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(
        ArtifactError, match="policy.safetensors holds .* bytes, governor.json expects .*: it was truncated"
    ):
        load_governor(copy)


def test_edited_weights_are_refused(copy):
    p = copy / "policy.safetensors"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(
        ArtifactError,
        match="policy.safetensors fails its sha256 in governor.json: its bytes were changed after export",
    ):
        load_governor(copy)


def test_edited_governor_json_is_refused(copy):
    meta = json.loads((copy / "governor.json").read_text())
    meta["interval_steps"] = 50
    (copy / "governor.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="fails its content hash.*edited after `govgym export`"):
        load_governor(copy)


def test_truncated_governor_json_is_refused(copy):
    p = copy / "governor.json"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ArtifactError, match="not valid JSON.*truncated or edited"):
        load_governor(copy)


def test_another_observation_spec_is_refused(copy):
    _resign(copy, lambda m: m["observation"].update(spec_hash="0123456789abcdef"))
    with pytest.raises(ArtifactError, match="made for another observation spec.*Re-export"):
        load_governor(copy)


def test_a_weights_name_outside_the_folder_is_refused(copy):
    (copy.parent / "outside.safetensors").write_bytes((copy / "policy.safetensors").read_bytes())
    _resign(copy, lambda m: m["files"]["policy"].update(name="../outside.safetensors"))
    with pytest.raises(ArtifactError, match="not a plain file name inside the artifact folder"):
        load_governor(copy)


def test_another_format_version_is_refused(copy):
    _resign(copy, lambda m: m.update(version=99))
    with pytest.raises(ArtifactError, match="format version 99"):
        load_governor(copy)


def test_refusals_are_one_sentence_from_the_cli_before_any_run(copy, tmp_path, capsys):
    """A refused artifact given to `govgym deploy` is exit status 2 and one line naming it, never a traceback,
    and it is refused before anything is trained or written (the output folder is never created)."""
    from govgym.cli import main

    _resign(copy, lambda m: m.update(version=99))
    out = tmp_path / "out"
    assert main(["deploy", f"governor={copy}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("govgym deploy: error: governor:")
        and "format version 99" in err[0]
    )
    assert not out.exists()


# ---------------------------------------------------------------------------- (d) numpy only
BLOCKER = """
import builtins, importlib.abc, pickle, sys
BLOCKED = ("stable_baselines3", "sb3_contrib", "gymnasium", "torch")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
def no_unpickling(*a, **k):
    raise RuntimeError("pickle loading is blocked")
pickle.load = pickle.loads = no_unpickling
"""


def test_artifact_runs_without_sb3_gymnasium_torch_or_pickle(artifact, tmp_path):
    """In a process where SB3, gymnasium, torch and unpickling are blocked, load and run both kinds."""
    export("marginal_gain:kappa=4", tmp_path / "h", instances=TINY)
    code = BLOCKER + textwrap.dedent(
        f"""
        import numpy as np
        from govgym.deploy.artifact import load_governor
        for path in ({str(artifact)!r}, {str(tmp_path / "h")!r}):
            gov = load_governor(path)
            obs = np.random.default_rng(0).uniform(0, 1, size=(4, 20)).astype(np.float32)
            a, _ = gov.predict(obs, action_masks=np.ones((4, len(gov.action_names)), bool))
            assert a.shape == (4,)
            print(gov.kind, int(gov.predict(obs[0])[0]))
        assert not any(m.split(".")[0] in ("stable_baselines3", "sb3_contrib", "gymnasium", "torch") for m in sys.modules)
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "ok" and "agent" in r.stdout and "heuristic" in r.stdout


def test_the_blocker_blocks():
    """The test above can fail: the same blocker makes importing SB3 fail."""
    code = BLOCKER + "import stable_baselines3\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "blocked: stable_baselines3" in r.stderr


# ---------------------------------------------------------------------------- CLI
def test_cli_export_prints_size_and_load_time(agent_dir, tmp_path, capsys):
    # in process (a subprocess costs ~9 s of importing torch; test_cli.py runs the installed command)
    r = run_cli(["export", str(agent_dir / "final.zip"), "-o", str(tmp_path / "a")], check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "artifact size" in r.stdout and "load time" in r.stdout and "policy.safetensors" in r.stdout, (
        r.stdout
    )
    assert load_governor(tmp_path / "a").kind == "agent"

    from govgym.cli import main

    assert main(["export", "marginal_gain:kappa=4", "--out", str(tmp_path / "h"), f"instances={TINY}"]) == 0
    assert "heuristic" in capsys.readouterr().out and load_governor(tmp_path / "h").interval_steps == 2
    assert main(["export", "no_such_policy", "-o", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "neither an agent" in err and "Traceback" not in err
