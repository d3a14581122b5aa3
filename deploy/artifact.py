"""Exported governors: one self-describing folder that runs with numpy only (no SB3, gymnasium, pickle).

``export(source, out_dir)`` writes an artifact folder from a trained agent (its folder, ``DIR/final.zip``
or ``DIR/agent.json``) or a heuristic spec (``patience``, ``marginal_gain:kappa=4``):

- ``governor.json`` — format name and version, govgym version, kind ('agent' | 'heuristic'), the
  observation spec (feature names in order and ``spec_hash()``), normalization statistics, action
  names, the decision interval K it was trained with, provenance (instances, algo, env steps, source),
  the network's layers (agent) or the heuristic's name and knobs, the sha256 of every file, and a
  sha256 of its own canonical content;
- ``policy.safetensors`` (agents only) — plain float32 arrays ``layer{i}.weight`` / ``layer{i}.bias``.

``load_governor(path)`` checks format and version, every hash, that file names stay inside the folder
and that the observation spec equals the running code's; it returns a ``Governor`` whose ``predict``
has SB3's shapes. For an agent it is the deterministic forward of SB3's action path done in numpy:
normalize (VecNormalize's formula), the policy MLP with its activation, the action logits, masked
actions removed (as MaskablePPO does), argmax; for DQN the Q-network and argmax.
"""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from govgym import __version__, sealed
from govgym.agents import specs
from govgym.agents.heuristics import POLICIES, make_policy
from govgym.deploy.governor import Governor
from govgym.deploy.validate import ACTIVATIONS, check_governor_values
from govgym.efficiency.signals import FEATURE_NAMES, HIGH, LOW, spec_hash
from govgym.efficiency.strategy import Strategy
from govgym.envs.actions import action_names
from govgym.errors import ConfigError
from govgym.results import atomic_write
from govgym.typed import load_yaml

FORMAT = "govgym-governor"
VERSION = 1
META_FILE = "governor.json"
WEIGHTS_FILE = "policy.safetensors"
DEFAULT_ACTIVATION = {"maskable_ppo": "Tanh", "ppo": "Tanh", "dqn": "ReLU", "cql": "ReLU"}
"""SB3's default ``activation_fn`` of ActorCriticPolicy (Tanh) and DQNPolicy (ReLU)."""


class ArtifactError(ConfigError):
    """An exported governor is not what it claims (format, hash, names, observation spec); nothing was used."""


def _confined(folder: Path, name: Any, what: str) -> Path:
    """``folder/name`` if ``name`` is a plain file name inside ``folder`` (``govgym.sealed.confined``)."""
    return sealed.confined(folder, name, what, inside="the artifact folder", error=ArtifactError)


# ---------------------------------------------------------------------------- reading sources
def env_version(instances: str) -> int:
    """The ``env.version`` of an instance-set YAML ('' = the packaged v1 set): which tuned knobs fit it."""
    p = Path(instances) if instances else Path(str(files("govgym.configs") / "instances_v1.yaml"))
    env = (load_yaml(p).get("env", {}) or {}) if p.is_file() else {}
    return int(env.get("version", 0))


def interval_and_actions(instances: str) -> tuple[int, list[str], str]:
    """(env.interval_steps, action names, instances file) of an instance-set YAML ('' = packaged v1 set).

    What ``govgym export`` and ``govgym transfer`` build a heuristic for: the env's decision interval K
    and its action table (``envs.actions.action_names``) over the set's ``env.switch_targets``.
    """
    p = Path(instances) if instances else Path(str(files("govgym.configs") / "instances_v1.yaml"))
    if not p.is_file():
        raise ConfigError(
            f"export: the instance set {p} the policy was trained on is not a file; run from the folder you trained in "
            "or pass instances=PATH."
        )
    env = load_yaml(p).get("env", {}) or {}
    k = env.get("interval_steps", 20)
    targets = env.get("switch_targets", ["full", "lora", "qlora", "lora+gc", "qlora+gc"])
    return int(k), action_names([Strategy.parse(s) for s in targets]), str(p)


def governor_from_spec(
    spec: str,
    action_names: list[str] | None = None,
    k: int | None = None,
    key: str = "governor",
    tolerance: float | None = None,
) -> tuple[Any, str, bool]:
    """(governor, label, is_artifact) of ``spec``: an exported artifact folder (or its governor.json),
    loaded with every check of ``load_governor``, or a heuristic spec built for ``action_names`` with
    decision interval ``k`` (None: the packaged instance set's, as ``govgym export`` builds one).
    ``key`` names the setting in errors. A spec that names a path (it exists, has a path separator, or
    ends in .json) is an artifact. ``default`` is the shipped default (``deploy/shipped.py``) of the
    objective: the price one, or the equal-quality one when ``tolerance`` is given; a bare heuristic name
    takes the tuned v1 knobs.
    """
    import os

    s = spec.strip()
    if Path(s).exists() or "/" in s or os.sep in s or s.endswith(".json"):
        return load_governor(s), Path(s.rstrip("/")).name or s, True
    if s == "default":
        from govgym.deploy.shipped import load_shipped

        gov = load_shipped("default", tolerance)
        return gov, f"default ({gov.meta['provenance']['policy']})", True
    try:  # an agent is not loaded here (no SB3 in deploy/); knobs of v1, the packaged instance set's
        ps = specs.parse_spec(s, knobs_file=specs.default_knobs_path(version=env_version("")))
    except ConfigError as err:
        raise ConfigError(
            f"{key}: {s!r} is neither an artifact folder (none exists there) nor a heuristic spec ({err})"
        ) from None
    if ps.kind != "heuristic":
        raise ConfigError(
            f"{key}: {s!r} is a trained agent; export it first (`govgym export {s} -o FOLDER`) and pass FOLDER."
        )
    if action_names is None or k is None:
        k_set, actions, _ = interval_and_actions("")
        action_names, k = action_names or actions, k or k_set
    gov = make_policy(ps.name, list(action_names), **dict(ps.knobs))
    gov.interval_steps = k  # type: ignore[attr-defined]
    return gov, ps.label, False


def _agent_files(source: Path) -> tuple[Path, dict[str, Any], bytes, dict[str, Any]]:
    """(folder, agent.json, policy bytes, obs_norm) of a trained agent, every check of ``agents.specs`` passed."""
    meta = specs.agent_meta(source)  # format, own content hash, algorithm, observation spec
    policy = specs.verified_bytes(source, meta, "policy")
    norm = specs.verified_bytes(source, meta, "obs_norm")
    try:
        obs_norm = json.loads(norm)
    except ValueError as err:  # the hash matched: a broken writer
        raise ConfigError(f"export: the agent's obs_norm file is not JSON ({err}); retrain it.") from None
    return specs.agent_folder(source), meta, policy, obs_norm


def _network(
    meta: dict[str, Any], state: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The action path of an SB3 policy's state dict as numbered layers, and its description."""
    algo = meta["algo"]
    kw = meta.get("policy_kwargs") or {}
    act = kw.get("activation_fn") or DEFAULT_ACTIVATION[algo]
    if act not in ACTIVATIONS:
        raise ConfigError(f"export: activation {act!r} is not one of {', '.join(ACTIVATIONS)}.")
    if algo in ("dqn", "cql"):
        prefixes, head = ["q_net.q_net."], "q"
    else:
        prefixes, head = ["mlp_extractor.policy_net.", "action_net."], "logits"

    def indices(prefix: str) -> list[str]:
        found = {k[len(prefix) :].rsplit(".", 1)[0] for k in state if k.startswith(prefix)}
        return sorted(found, key=lambda s: int(s) if s.isdigit() else -1)

    linears = []
    for prefix in prefixes:
        keys = indices(prefix) if prefix != "action_net." else [""]
        for key in keys:
            stem = f"{prefix}{key}." if key else prefix
            linears.append((state[f"{stem}weight"], state[f"{stem}bias"]))
    if not linears:
        raise ConfigError("export: the agent's policy.safetensors holds no action network.")
    n_hidden = len(linears) - 1  # every hidden layer is followed by the activation, the output layer is not
    acts = [act if i < n_hidden else "" for i in range(len(linears))]
    weights = {}
    for i, (w, b) in enumerate(linears):
        weights[f"layer{i}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
        weights[f"layer{i}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
    net = {
        "activations": acts,
        "head": head,
        # MaskablePPO masks its logits, a masked-Q agent (govgym offline) its argmax
        "masked": meta.get("policy_class") == "MaskableActorCriticPolicy" or algo in specs.MASKED_Q_ALGOS,
        "shapes": [list(w.shape) for w, _ in linears],
        "policy_class": meta.get("policy_class"),
    }
    return net, weights


def is_agent_source(source: str) -> bool:
    """Whether ``source`` names an agent (a folder, ``.zip`` or ``.json``) rather than a heuristic spec."""
    p = Path(source)
    return source.endswith((".zip", ".json")) or p.is_dir()


# ---------------------------------------------------------------------------- export / load
def export(
    source: str | Path,
    out_dir: str | Path,
    reference: Any = None,
    instances: str = "",
    provenance: dict[str, Any] | None = None,
    knobs: str | Path = "",
) -> Path:
    """Write the artifact of ``source`` to ``out_dir``, load it back and check it acts as the source.

    Args:
        source: an agent folder, ``DIR/final.zip`` or ``DIR/agent.json``; or a heuristic spec
            (``patience``, ``marginal_gain:kappa=4``; without knobs, the tuned ones packaged for the
            instance set's ``env.version``: configs/heuristics_v1.yaml for v1, configs/heuristics.yaml for v0).
        out_dir: the artifact folder (created; its governor.json and policy.safetensors are replaced).
        reference: the source policy the artifact must match (SB3's ``predict``), e.g.
            ``govgym.agents.policies.AgentPolicy(source)``; required for an agent (deploy imports no
            SB3), built here for a heuristic.
        instances: the instance set whose ``env.interval_steps`` is K ('' = the agent's training set,
            or the packaged one for a heuristic).
        provenance: entries added to (or replacing) the artifact's ``provenance`` (e.g. the leaderboard
            a shipped governor was chosen on: ``deploy/shipped.py``).
        knobs: a tuned knobs YAML (``govgym tune``) for a bare heuristic name, instead of the packaged ones
            of the instance set's version (e.g. ``configs/heuristics_v2_eq.yaml``).

    Returns:
        The path of the written governor.json.
    """
    source = str(source)
    out = Path(out_dir)
    weights: dict[str, np.ndarray] = {}
    if is_agent_source(source):
        folder, ameta, policy_bytes, norm = _agent_files(Path(source))
        cfg = ameta.get("config") or {}
        k, _, inst_file = interval_and_actions(instances or cfg.get("instances", ""))
        net, weights = _network(ameta, st_load(policy_bytes))
        actions = list(ameta.get("action_names") or [])
        if net["shapes"][-1][0] != len(actions):
            raise ConfigError(
                f"export: the network has {net['shapes'][-1][0]} outputs for {len(actions)} actions."
            )
        body: dict[str, Any] = {
            "kind": "agent",
            "network": net,
            "normalization": {
                key: norm[key] for key in ("norm_obs", "mean", "var", "count", "clip_obs", "epsilon")
            },
            "provenance": {
                "source": str(folder.resolve()),
                "algo": ameta.get("algo"),
                "env_steps": ameta.get("env_steps"),
                "instances": inst_file,
                "trained_with": ameta.get("govgym_version"),
                "agent_sha256": ameta.get("sha256"),
            },
        }
        if ameta.get("allowed_actions") is not None:  # a stop-only agent (train levers=false) stays one
            body["allowed_actions"] = list(ameta["allowed_actions"])
        if reference is None:
            raise TypeError(
                "export(agent): pass reference=govgym.agents.policies.AgentPolicy(source), the SB3 policy the artifact is checked against."
            )
    else:
        version = env_version(instances)
        name, tuned, label, knobs_file = _heuristic_spec(source, version, knobs)
        k, actions, inst_file = interval_and_actions(instances)
        make_policy(name, actions, **dict(tuned))  # a bad knob is refused before anything is written
        body = {
            "kind": "heuristic",
            "heuristic": {"name": name, "knobs": tuned, "spec": label},
            "provenance": {
                "source": source,
                "algo": "heuristic",
                "env_steps": 0,
                "instances": inst_file,
                "knobs": knobs_file,  # '' = the knobs were given in the spec
            },
        }
        reference = make_policy(name, actions, **dict(tuned))
    body["provenance"].update(provenance or {})
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "govgym_version": __version__,
        "observation": {"features": list(FEATURE_NAMES), "spec_hash": spec_hash()},
        "action_names": actions,
        "interval_steps": k,
        **body,
        "files": {},
    }
    if weights:
        blob = st_save(weights)
        meta["files"]["policy"] = {
            "name": WEIGHTS_FILE,
            "sha256": sealed.sha256_bytes(blob),
            "bytes": len(blob),
        }
        atomic_write(out / WEIGHTS_FILE, blob)
    elif (out / WEIGHTS_FILE).exists():
        (out / WEIGHTS_FILE).unlink()  # a heuristic over an agent's artifact: no stale weights beside it
    sealed.seal(meta)
    path = atomic_write(out / META_FILE, json.dumps(meta, indent=1, allow_nan=False).encode())
    _check_same_actions(load_governor(out), reference, source, out)
    return path


def _heuristic_spec(
    spec: str, version: int = 0, knobs: str | Path = ""
) -> tuple[str, dict[str, Any], str, str]:
    """(name, knobs, spec, knobs file) of ``name`` (the tuned knobs of ``knobs``, else those packaged for env
    ``version``) or ``name:k=v,...`` (knobs file '')."""
    name = spec.strip().partition(":")[0]
    if name not in POLICIES:
        raise ConfigError(
            f"export: {spec!r} is neither an agent (a folder, DIR/final.zip or DIR/agent.json that exists) "
            f"nor a heuristic ({', '.join(POLICIES)})."
        )
    knobs_path = Path(knobs) if knobs else specs.default_knobs_path(version=version)
    ps = specs.parse_spec(spec.strip(), knobs_file=knobs_path)
    return ps.name, dict(ps.knobs), spec.strip(), "" if ":" in spec else knobs_path.name


def _check_same_actions(gov: Governor, reference: Any, source: str, out: Path, n: int = 512) -> None:
    """Refuse (and remove) the artifact unless it picks the source's action on a batch of observations."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(LOW, HIGH, size=(n, len(LOW))).astype(np.float32)
    masks = rng.random((n, gov.n_actions)) < 0.6
    masks[:, 0] |= ~masks.any(1)
    mine = np.array([int(gov.predict(o, action_masks=m)[0]) for o, m in zip(obs, masks)])
    theirs = np.array([int(reference.predict(o, action_masks=m)[0]) for o, m in zip(obs, masks)])
    bad = np.flatnonzero(mine != theirs)
    if bad.size:
        for name in (META_FILE, WEIGHTS_FILE):
            (out / name).unlink(missing_ok=True)
        raise ConfigError(
            f"export: the exported governor of {source} picks another action than the source policy on {bad.size} of {n} "
            f"observations (first: #{bad[0]}, {mine[bad[0]]} vs {theirs[bad[0]]}); the artifact was removed. Report this as a bug."
        )


def load_governor(path: str | Path) -> Governor:
    """The ``Governor`` of an artifact folder (or its governor.json), every check passed; else ``ArtifactError``."""
    path = Path(path)
    folder = path.parent if path.name == META_FILE else path
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ArtifactError(
            f"governor: no {META_FILE} in {folder}; pass a folder written by `govgym export SOURCE -o FOLDER`."
        )
    meta = sealed.read_object(
        meta_path, "governor", "it was truncated or edited; export it again.", ArtifactError
    )
    if meta.get("format") != FORMAT:
        raise ArtifactError(
            f"governor: {meta_path} is not a '{FORMAT}' file (format {meta.get('format')!r})."
        )
    if meta.get("version") != VERSION:
        raise ArtifactError(
            f"governor: {meta_path} has format version {meta.get('version')!r}; this govgym reads version {VERSION}. "
            "Export it again with this govgym."
        )
    if not sealed.is_sealed(meta):
        raise ArtifactError(
            f"governor: {meta_path} fails its content hash (sha256): it was edited after `govgym export` wrote it. "
            "Refused; export it again."
        )
    obs = meta.get("observation") or {}
    if obs.get("spec_hash") != spec_hash() or list(obs.get("features") or []) != list(FEATURE_NAMES):
        raise ArtifactError(
            f"governor: {folder} was made for another observation spec ({obs.get('spec_hash')}) than this govgym computes "
            f"({spec_hash()}): its inputs would mean something else. Re-export it from an agent trained with this "
            "version (`govgym export SOURCE -o FOLDER`), retraining the agent if needed."
        )
    if meta.get("kind") not in ("agent", "heuristic"):
        raise ArtifactError(
            f"governor: {meta_path} has kind {meta.get('kind')!r}; expected 'agent' or 'heuristic'."
        )
    weights = None
    if meta["kind"] == "agent":
        entry = (meta.get("files") or {}).get("policy")
        if not isinstance(entry, dict):
            raise ArtifactError(f"governor: {meta_path} names no policy file.")
        file = _confined(folder, entry.get("name"), f"governor: {META_FILE} files.policy")
        if not file.is_file():
            raise ArtifactError(
                f"governor: {file.name} is missing from {folder}; copy the whole artifact folder."
            )
        data = file.read_bytes()
        if len(data) != entry.get("bytes"):
            raise ArtifactError(
                f"governor: {file} holds {len(data)} bytes, governor.json expects {entry.get('bytes')}: it was truncated "
                "(cut off while written or copied). Refused; copy or export it again."
            )
        if sealed.sha256_bytes(data) != entry.get("sha256"):
            raise ArtifactError(
                f"governor: {file} fails its sha256 in governor.json: its bytes were changed after export (corruption "
                "or tampering). Refused; export it again."
            )
        try:
            weights = st_load(data)
        except Exception as err:  # the hash matched: a broken writer, still never executed
            raise ArtifactError(
                f"governor: {file.name} cannot be parsed ({type(err).__name__}); export it again."
            ) from None
    check_governor_values(meta, weights, str(meta_path), len(FEATURE_NAMES), ArtifactError)
    try:
        return Governor(meta, weights)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(
            f"governor: {meta_path} does not describe a runnable policy ({type(err).__name__}: {err}); export it again."
        ) from None


def timed_load(path: str | Path) -> tuple[Governor, float]:
    """(governor, load time in seconds)."""
    t = time.perf_counter()
    gov = load_governor(path)
    return gov, time.perf_counter() - t


def artifact_bytes(path: str | Path) -> int:
    """Total size of an artifact folder's files."""
    folder = Path(path)
    folder = folder.parent if folder.name == META_FILE else folder
    return sum(f.stat().st_size for f in (folder / META_FILE, folder / WEIGHTS_FILE) if f.is_file())


__all__ = [
    "env_version",
    "governor_from_spec",
    "interval_and_actions",
    "ArtifactError",
    "Governor",
    "artifact_bytes",
    "export",
    "is_agent_source",
    "load_governor",
    "timed_load",
]
