"""Nothing loaded from a file runs code: agents, run snapshots and memo trees (issue 12, section 1).

Each payload test first shows that its payload is live (the unsafe loader it replaces would run it:
a marker file appears), then that govgym's loader refuses or ignores the file and the marker stays absent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from govgym.efficiency.run import FineTuneRun, RunError
from govgym.typed import ConfigError
from tests.conftest import tiny_cfg, tiny_workload

TINY = str(Path(__file__).parent / "data" / "tiny_instances.yaml")


class Payload:
    """Unpickling this writes ``marker``: what a malicious file would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture
def agent(agent_dir, tmp_path):
    """A private copy of the trained agent's folder (tests edit it)."""
    return Path(
        shutil.copytree(agent_dir, tmp_path / "agent", ignore=shutil.ignore_patterns("tb", "checkpoints"))
    )


def _obs_batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from govgym.efficiency.signals import HIGH, LOW

    rng = np.random.default_rng(seed)
    obs = rng.uniform(LOW, HIGH, size=(n, len(LOW))).astype(np.float32)
    masks = rng.random((n, 7)) < 0.6
    masks[:, 0] = masks[:, 0] | ~masks.any(1)  # at least one valid action
    return obs, masks


# ---------------------------------------------------------------------------- agents
def test_agent_from_safetensors_acts_exactly_as_sb3s_own_load(agent):
    from sb3_contrib import MaskablePPO

    from govgym.agents.policies import AgentPolicy

    sb3 = MaskablePPO.load(str(agent / "final.zip"), device="cpu")  # the trusted path: our own fresh files
    with (agent / "vecnormalize.pkl").open("rb") as f:
        vecnorm = pickle.load(f)
    ours = AgentPolicy(agent)
    obs, masks = _obs_batch(512)
    assert np.array_equal(ours.normalize_obs(obs), vecnorm.normalize_obs(obs))
    theirs, _ = sb3.predict(vecnorm.normalize_obs(obs), deterministic=True, action_masks=masks)
    mine, _ = ours.predict(obs, deterministic=True, action_masks=masks)
    assert mine.shape == (512,) and np.array_equal(mine, theirs)
    assert masks[np.arange(512), mine].all()  # masked actions are never picked
    unmasked, _ = sb3.predict(vecnorm.normalize_obs(obs), deterministic=True)
    assert np.array_equal(ours.predict(obs)[0], unmasked)
    assert len(set(mine.tolist())) > 1  # the check compares real decisions, not one constant action
    one, _ = ours.predict(obs[3], action_masks=masks[3])  # a single observation: a 0-d array, as SB3 gives
    assert one.shape == () and int(one) == mine[3]


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_ppo_and_dqn_agents_round_trip(algo, tmp_path):
    """The other policy classes (ActorCriticPolicy, DQNPolicy), written as train() writes them, untrained."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from govgym.agents.policies import AgentPolicy, write_agent
    from govgym.agents.train import algo_class
    from govgym.efficiency.signals import spec_hash
    from govgym.envs.finetune_env import FineTuneEnv

    venv = VecNormalize(DummyVecEnv([lambda: FineTuneEnv(TINY, wall_time_info=False)]), norm_reward=False)
    kw = {"policy_kwargs": {"net_arch": [16, 16], "activation_fn": torch.nn.ReLU}}
    model = algo_class(algo)(
        "MlpPolicy", venv, seed=1, device="cpu", **({"learning_starts": 0} if algo == "dqn" else {}), **kw
    )
    obs, _ = _obs_batch(256, seed=2)
    venv.obs_rms.update(obs.astype(np.float64))
    write_agent(tmp_path, model, venv, {"algo": algo, "obs_spec": spec_hash()})
    ours = AgentPolicy(tmp_path)
    theirs, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    assert np.array_equal(ours.predict(obs)[0], theirs)
    assert (
        type(ours.policy).__name__ == type(model.policy).__name__
        and ours.meta["policy_kwargs"]["activation_fn"] == "ReLU"
    )


def test_agent_runs_under_sb3_evaluate_policy(agent, module_cache):
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from govgym.agents.policies import AgentPolicy
    from govgym.envs.memo import MemoFineTuneEnv

    venv = DummyVecEnv(
        [lambda: MemoFineTuneEnv(TINY, split="train", seeds=[0])] * 2
    )  # batched observations (2, 20)
    mean, std = evaluate_policy(AgentPolicy(agent), venv, n_eval_episodes=2, warn=False)
    assert np.isfinite(mean) and np.isfinite(std)


def test_s1_payload_in_agent_zip_never_runs(agent, tmp_path):
    from sb3_contrib import MaskablePPO

    from govgym.agents.policies import AgentPolicy, build_policy, parse_spec

    marker = tmp_path / "s1-ran"
    zpath = agent / "final.zip"
    with zipfile.ZipFile(zpath) as z:
        files = {n: z.read(n) for n in z.namelist()}
    data = json.loads(files["data"])
    data["policy_kwargs"] = {
        ":type:": "<class 'dict'>",
        ":serialized:": base64.b64encode(pickle.dumps(Payload(marker))).decode(),
    }
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zpath, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):  # SB3's loader runs the payload (then may fail): the control
            MaskablePPO.load(str(zpath))
    assert marker.exists()
    marker.unlink()
    spec = parse_spec(str(zpath))
    policy = build_policy(spec, json.loads((agent / "agent.json").read_text())["action_names"])
    obs, masks = _obs_batch(4)
    policy.predict(obs, action_masks=masks)
    AgentPolicy(agent)
    assert not marker.exists()


def test_s2_payload_in_vecnormalize_never_runs(agent, tmp_path):
    from govgym.agents.policies import AgentPolicy, parse_spec

    marker = tmp_path / "s2-ran"
    blob = pickle.dumps(Payload(marker))
    pickle.loads(blob)  # the old loader's pickle.load: the payload is live
    assert marker.exists()
    marker.unlink()
    (agent / "vecnormalize.pkl").write_bytes(blob)
    AgentPolicy(agent).predict(_obs_batch(2)[0])
    parse_spec(str(agent))
    assert not marker.exists()


def _rehash(agent: Path, edit) -> None:
    """Edit agent.json and give it a valid own hash (a forger who knows the format)."""
    from govgym.agents.policies import canonical_meta
    from govgym.sealed import sha256_bytes

    meta = json.loads((agent / "agent.json").read_text())
    edit(meta)
    meta["sha256"] = sha256_bytes(canonical_meta(meta))
    (agent / "agent.json").write_text(json.dumps(meta))


def test_s5_edited_agent_files_are_refused_by_content_hash(agent):
    from govgym.agents.policies import AgentPolicy, parse_spec

    meta_text = (agent / "agent.json").read_text()
    meta = json.loads(meta_text)
    meta["n_actions"] = 6  # an edited field, hash left as it was
    (agent / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="agent.json fails its content hash"):
        parse_spec(str(agent / "final.zip"))
    (agent / "agent.json").write_text(meta_text)
    blob = bytearray((agent / "policy.safetensors").read_bytes())
    blob[-5] ^= 0xFF  # one weight's byte
    (agent / "policy.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="policy.safetensors fails the content hash"):
        AgentPolicy(agent)
    with pytest.raises(ConfigError, match="fails the content hash"):
        parse_spec(str(agent))
    (agent / "policy.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing"):
        AgentPolicy(agent)


def test_agent_file_names_are_confined_to_its_folder(agent, tmp_path):
    from govgym.agents.policies import AgentPolicy

    shutil.copy(agent / "obs_norm.json", tmp_path / "obs_norm.json")  # a real file one level up
    for name in ("../obs_norm.json", "/etc/passwd", "..", "sub/obs_norm.json"):
        _rehash(agent, lambda m, n=name: m["files"]["obs_norm"].update(name=n))
        with pytest.raises(ConfigError, match="not a plain file name|outside"):
            AgentPolicy(agent)


def test_agent_metadata_is_checked(agent):
    from govgym.agents.policies import AgentPolicy, build_policy, parse_spec

    _rehash(agent, lambda m: m.update(format=1))
    with pytest.raises(ConfigError, match="format 1.*reads format 2"):
        parse_spec(str(agent))
    _rehash(agent, lambda m: m.update(format=2, policy_class="builtins.eval"))
    with pytest.raises(ConfigError, match="policy class"):
        AgentPolicy(agent)
    _rehash(
        agent,
        lambda m: m.update(policy_class="MaskableActorCriticPolicy", policy_kwargs={"activation_fn": "Exec"}),
    )
    with pytest.raises(ConfigError, match="activation_fn"):
        AgentPolicy(agent)
    _rehash(agent, lambda m: m.update(policy_kwargs={}))
    spec = parse_spec(str(agent))
    with pytest.raises(ConfigError, match="trained with actions"):
        build_policy(spec, ["continue", "stop"])


# ---------------------------------------------------------------------------- run snapshots
@pytest.fixture
def saved_run(tmp_path):
    run = FineTuneRun(tiny_cfg(), workload=tiny_workload())
    run.advance(3)
    return run, run.save(tmp_path / "snap.gvs")


def _fresh_run() -> FineTuneRun:
    return FineTuneRun(tiny_cfg(), workload=tiny_workload())


def test_s4_snapshot_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "s4-ran"
    path = tmp_path / "evil.pt"
    torch.save({"version": 2, "model": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the old loader: the payload is live
    assert marker.exists()
    marker.unlink()
    with pytest.raises(
        RunError, match="not a 'govgym-run-snapshot' file.*not loaded, because unpickling can run code"
    ):
        _fresh_run().load(path)
    assert not marker.exists()


def test_f5_f6_f7_broken_snapshots_are_clear_errors(saved_run, tmp_path):
    """F5 (empty / truncated snapshot), F6 (a text file), F7 (flipped bytes): a RunError sentence each."""
    run, path = saved_run
    data = path.read_bytes()
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a snapshot\n")
    cases = {
        "text": (text, "is not a 'govgym-run-snapshot' file"),
        "empty": (tmp_path / "empty", "is empty"),
        "truncated": (tmp_path / "cut", "truncated or edited"),
        "flipped": (tmp_path / "flipped", "fails its content hash"),
        "version": (tmp_path / "v9", "format version 9"),
        "missing": (tmp_path / "nowhere", "cannot read run snapshot"),
    }
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    for i in range(len(data) - 2000, len(data)):  # 2,000 bytes of the last tensors
        flipped[i] ^= 0x55
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    (tmp_path / "v9").write_bytes(data.replace(b'"version": 2', b'"version": 9', 1))
    other = _fresh_run()
    before = [p.detach().clone() for p in other.model.parameters()]
    for p, msg in cases.values():
        with pytest.raises(RunError, match=msg):
            other.load(p)
    assert all(
        torch.equal(a, b) for a, b in zip(before, other.model.parameters())
    )  # refused before touching the run
    other.load(path)  # the intact file still loads
    assert other.step == run.step


@pytest.mark.parametrize("strategy", ["qlora", "int8+adam8"])
def test_quantized_snapshots_round_trip_exactly(strategy, tmp_path):
    """bitsandbytes 4-bit (packed weights + quant state) and int8 (+ 8-bit AdamW state) resume bit-identically."""
    run = _fresh_run()
    run.advance(1)
    run.switch_strategy(strategy)
    run.advance(1)  # adapters' optimizer state exists when saved
    path = run.save(tmp_path / "q.gvs")
    first = run.advance(2).losses
    other = _fresh_run()
    other.load(path)
    assert other.strategy.name == strategy and other.advance(2).losses == first


def test_snapshot_of_another_model_is_refused(saved_run):
    _, path = saved_run
    other = FineTuneRun(tiny_cfg(), workload=tiny_workload(hidden=48, inter=96))
    with pytest.raises(RunError, match="does not fit this run's model"):
        other.load(path)


# ---------------------------------------------------------------------------- memo trees
def test_s3_memo_tree_payload_is_ignored_never_run(tmp_path):
    from govgym.agents.pretrain import load_demonstrations
    from govgym.envs.memo import EpisodeTree, load_tree, tree_path

    marker = tmp_path / "s3-ran"
    blob = pickle.dumps({(): Payload(marker)})
    pickle.loads(blob)  # the old loader: the payload is live
    assert marker.exists()
    marker.unlink()
    folder = tmp_path / "memo"
    folder.mkdir()
    tree_path(folder, "t-free", 0).write_bytes(blob)  # a pickle under the tree's name
    (folder / "t-free-1.pkl").write_bytes(blob)  # an old-format file: never even opened
    with pytest.warns(UserWarning, match="skipping"):
        assert load_tree(EpisodeTree(None, "t-free", 0), folder) is False
    with pytest.warns(UserWarning, match="skipping"):
        assert len(load_demonstrations([folder], ["t-free"], stop=6).actions) == 0
    assert not marker.exists()


def test_memo_tree_crafted_content_is_refused(tmp_path):
    from govgym.efficiency import safefile
    from govgym.envs import memo

    folder = tmp_path / "memo"
    # a well-formed, correctly hashed file whose content asks for a type govgym never writes
    body = {
        "nodes": [
            {
                "prefix": [],
                "obs": {"__reduce__": ["os.system", "touch x"]},
                "reward": 0.0,
                "terminated": False,
                "truncated": False,
                "info": {},
                "mask": [True],
            }
        ]
    }
    safefile.write(memo.tree_path(folder, "t-free", 0), memo.TREE_FORMAT, memo.TREE_VERSION, body)
    with pytest.warns(UserWarning, match="not one govgym writes"):
        assert memo.load_tree(memo.EpisodeTree(None, "t-free", 0), folder) is False
    # a real tree with one byte changed: the content hash refuses it
    good = memo.EpisodeTree(None, "t-free", 1)
    good.nodes[()] = memo.StepOutcome(
        np.linspace(0, 1, 20, dtype=np.float32) / 3,
        0.0,
        False,
        False,
        {"eval_loss": float("nan")},
        np.ones(7, bool),
    )
    path = memo.tree_path(folder, "t-free", 1)
    memo.save_tree(good, folder)
    back = memo.EpisodeTree(None, "t-free", 1)
    assert memo.load_tree(back, folder) and np.array_equal(back.nodes[()].obs, good.nodes[()].obs)
    assert np.isnan(back.nodes[()].info["eval_loss"])  # a diverged run's NaN survives (strict JSON inside)
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="content hash"):
        assert memo.load_tree(memo.EpisodeTree(None, "t-free", 1), folder) is False


def test_names_cannot_leave_their_folder(tmp_path):
    from govgym.efficiency.safefile import UnsafeFileError, confined
    from govgym.envs.memo import EpisodeTree, save_tree, tree_path

    for name in ("../../etc/x", "a/b", "..", "..x", "a\\b"):
        with pytest.raises(UnsafeFileError):
            tree_path(tmp_path, name, 0)
    for name in ("", ".", "..", "/abs"):
        with pytest.raises(UnsafeFileError):
            confined(tmp_path, name)
    with pytest.raises(ConfigError, match="outside|plain file name"):
        save_tree(EpisodeTree(None, "../../x", 0), tmp_path / "memo")
    assert not list(tmp_path.rglob("x-0.tree"))
    assert confined(tmp_path, "a..b") == (tmp_path / "a..b").resolve()
    (tmp_path / "evil.tree").symlink_to("/etc/passwd")  # a plain name that resolves elsewhere
    with pytest.raises(UnsafeFileError, match="outside"):
        confined(tmp_path, "evil.tree")
