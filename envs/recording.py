"""Trace recording, episode states and replay/validate.

- ``TraceRecorder`` (a gymnasium Wrapper) keeps every step of an episode — observation, action,
  reward, the raw info figures — and, when the episode ends, writes it as one Parquet file
  (pyarrow) into a trace folder, atomically (temp file + rename). A crash mid-episode loses at most
  that episode; earlier files are never touched. ``load_traces`` reads a folder with ``datasets``.
- ``save_state`` / ``replay``: an episode is (instance, seed, action log); replay re-runs it and
  reports whether every observation and reward matches (CompilerGym's ``validate``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import datasets
import gymnasium as gym
import numpy as np

from govgym import __version__
from govgym.efficiency.signals import FEATURE_NAMES, spec_hash
from govgym.efficiency.workload import quiet_libraries
from govgym.envs.finetune_env import FineTuneEnv
from govgym.results import atomic_path, atomic_write
from govgym.typed import ConfigError

TRACE_FORMAT = 1
INFO_FIELDS = (
    "eval_loss",
    "train_loss",
    "flops_used",
    "budget_frac",
    "strategy",
    "kept_fraction",
    "cap_mb",
    "step",
    "wall_time",
)


class TraceRecorder(gym.Wrapper):
    """Write each finished episode to ``folder/<policy>-<instance>-<seed>-<uid>.parquet``."""

    def __init__(self, env: gym.Env, folder: str | Path, policy: str = "unknown"):
        super().__init__(env)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.policy = policy
        self.rows: list[dict[str, Any]] = []

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.rows = [self._row(0, -1, 0.0, obs, info, False, False)]
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.rows.append(self._row(len(self.rows), int(action), reward, obs, info, terminated, truncated))
        if terminated or truncated:
            self.flush()
        return obs, reward, terminated, truncated, info

    def _row(
        self, t: int, action: int, reward: float, obs: Any, info: dict, term: bool, trunc: bool
    ) -> dict[str, Any]:
        env = self.env.unwrapped
        row = {
            "policy": self.policy,
            "instance": info.get("instance"),
            "episode_seed": info.get("episode_seed"),
            "t": t,
            "action": action,
            "action_name": env.action_names[action] if action >= 0 else "reset",
            "reward": float(reward),
            "terminated": term,
            "truncated": trunc,
            "error": info.get("error") or "",
            "invalid_action": bool(info.get("invalid_action")),
            "obs": np.asarray(obs, dtype=np.float32).tolist(),
            "memory_peak_mb": float(info.get("memory_mb", {}).get("peak", 0.0)),
            "lam": float(env.instance.lam),
        }
        for k in INFO_FIELDS:
            v = info.get(k)
            row[k] = (
                float(v)
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else (v if v is not None else float("nan"))
            )
        return row

    def flush(self) -> Path | None:
        """Write the buffered episode (called automatically when it ends)."""
        if len(self.rows) < 2:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        r0 = self.rows[0]
        meta = {
            "format": str(TRACE_FORMAT),
            "govgym_version": __version__,
            "obs_spec": spec_hash(),
            "features": json.dumps(FEATURE_NAMES),
        }
        table = pa.Table.from_pylist(self.rows).replace_schema_metadata(meta)
        name = f"{self.policy}-{r0['instance']}-{r0['episode_seed']}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(self.folder / name) as tmp:
            pq.write_table(table, tmp)
        self.rows = []
        return self.folder / name


def load_traces(folder: str | Path):
    """All complete episodes in ``folder`` as one ``datasets.Dataset`` (temp files are ignored)."""
    import pyarrow.parquet as pq

    files = sorted(str(p) for p in Path(folder).glob("*.parquet"))
    if not files:
        raise ConfigError(
            f"traces: no .parquet episodes in {folder}; record some with `govgym collect --out {folder}`."
        )
    for f in files:
        meta = pq.read_schema(f).metadata or {}
        if meta.get(b"obs_spec", b"").decode() != spec_hash():
            raise ConfigError(
                f"traces: {f} was recorded with another observation spec; re-record it with this govgym."
            )
    with quiet_libraries():  # no "Generating train split" bar per call
        return datasets.load_dataset("parquet", data_files=files, split="train")


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    return atomic_write(path, json.dumps(state, indent=1))


def load_state(path: str | Path) -> dict[str, Any]:
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"state: cannot read {path} ({err}); pass a JSON written by env.state() / govgym collect."
        ) from None
    for key in ("instance", "episode_seed", "actions", "observations", "rewards"):
        if key not in state:
            raise ConfigError(f"state: {path} has no '{key}'; it is not an episode state written by govgym.")
    if state.get("obs_spec") != spec_hash():
        raise ConfigError(
            f"state: {path} was written with another observation spec ({state.get('obs_spec')})."
        )
    check_state(state, str(path))
    return state


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_state(state: dict[str, Any], where: str = "state") -> None:
    """Raise ConfigError unless the state's fields have the types ``FineTuneEnv.state()`` writes.

    Counts are not checked here: a state whose lists disagree in length is reported INVALID by
    :func:`replay` (with the reason), not refused.
    """
    fix = "pass a JSON written by env.state() / govgym collect, unedited."
    if not isinstance(state.get("instance"), str) or not _is_int(state.get("episode_seed")):
        raise ConfigError(f"state: {where}: 'instance' must be a name and 'episode_seed' an integer; {fix}")
    if state.get("interval_steps") is not None and not _is_int(state["interval_steps"]):
        raise ConfigError(
            f"state: {where}: 'interval_steps' must be an integer, got {state['interval_steps']!r}; {fix}"
        )
    for key in ("actions", "observations", "rewards"):
        if not isinstance(state[key], list):
            raise ConfigError(f"state: {where}: {key!r} must be a list, got {state[key]!r}; {fix}")
    for t, a in enumerate(state["actions"]):
        if not _is_int(a):
            raise ConfigError(f"state: {where}: actions[{t}] is {a!r}, not an integer action index; {fix}")
    if not state["observations"]:
        raise ConfigError(
            f"state: {where}: 'observations' is empty; it holds at least the reset observation. {fix}"
        )
    n_feat = len(FEATURE_NAMES)
    for t, o in enumerate(state["observations"]):
        if not isinstance(o, list) or len(o) != n_feat or not all(_is_number(v) for v in o):
            raise ConfigError(f"state: {where}: observations[{t}] is not a list of {n_feat} numbers; {fix}")
    for t, r in enumerate(state["rewards"]):
        if not _is_number(r):
            raise ConfigError(f"state: {where}: rewards[{t}] is {r!r}, not a number; {fix}")


def _count_mismatch(state: dict[str, Any]) -> dict[str, Any] | None:
    n_a, n_o, n_r = (len(state[k]) for k in ("actions", "observations", "rewards"))
    if n_o == n_a + 1 and n_r == n_a:
        return None
    return {
        "t": 0,
        "what": f"counts (state holds {n_a} actions, {n_o} observations, {n_r} rewards; an episode has "
        "one observation more than actions and one reward per action)",
        "got": [n_a, n_o, n_r],
        "want": [n_a, n_a + 1, n_a],
    }


def replay(state: dict[str, Any], instances: Any = None) -> dict[str, Any]:
    """Re-run an episode from (instance, seed, action log); compare every observation and reward."""

    check_state(state)
    counts = _count_mismatch(state)
    if counts is not None:  # an edited or cut log: nothing to re-run it against
        return {
            "valid": False,
            "steps": len(state["actions"]),
            "mismatches": [counts],
            "instance": state["instance"],
        }
    env = FineTuneEnv(
        instances if instances is not None else (state.get("instances") or None),
        split=state.get("split", "train"),
        interval_steps=state.get("interval_steps"),
    )
    n = int(env.action_space.n)
    for t, a in enumerate(state["actions"]):
        if not 0 <= a < n:
            raise ConfigError(
                f"state: actions[{t}] is {a}, outside this env's Discrete({n}) ({', '.join(env.action_names)})."
            )
    obs, _ = env.reset(options={"instance": state["instance"], "episode_seed": state["episode_seed"]})
    mismatches: list[dict[str, Any]] = []

    def check(t: int, what: str, got: Any, want: Any) -> None:
        if not np.array_equal(np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)):
            mismatches.append({"t": t, "what": what, "got": np.asarray(got).tolist(), "want": want})

    check(0, "observation", obs, state["observations"][0])
    for t, a in enumerate(state["actions"], start=1):
        obs, r, term, trunc, info = env.step(a)
        check(t, "observation", obs, state["observations"][t])
        check(t, "reward", r, state["rewards"][t - 1])
        if (term or trunc) and t < len(state["actions"]):
            mismatches.append(
                {"t": t, "what": "episode ended early", "got": info.get("error", "end"), "want": "more steps"}
            )
            break
    return {
        "valid": not mismatches,
        "steps": len(state["actions"]),
        "mismatches": mismatches[:10],
        "instance": state["instance"],
    }
