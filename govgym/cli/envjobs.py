"""CLI jobs over the environment: collect traces, replay/validate a state, plot recorded episodes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from govgym.agents.heuristics import make_policy
from govgym.agents.scaleout import task_results
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances
from govgym.envs.memo import worker_threads
from govgym.envs.recording import TraceRecorder, load_state, load_traces, replay, save_state
from govgym.plots import pyplot, save_figure
from govgym.results import format_table, write_rows

_ENVS: dict[tuple[str, str], Any] = {}


def collect_episode(task: tuple[str, str, str, int, str, int, str]) -> dict[str, Any]:
    """One recorded episode of one policy (one task of ``collect``); writes its own trace and state files.

    The env is made once per worker process and reused; the policy is made per episode, seeded with
    the episode's seed, so an episode is the same whether it runs alone, in a pool or on Ray.
    """
    instances, split, pname, ep, inst, episode_seed, out = task
    key = (instances, split)
    if key not in _ENVS:
        _ENVS[key] = FineTuneEnv(instances or None, split=split, wall_time_info=True)
    env = TraceRecorder(_ENVS[key], Path(out) / "traces", policy=pname)  # one Parquet file per episode
    policy = make_policy(pname, env.unwrapped.action_names, episode_seed)
    obs, info = env.reset(seed=episode_seed, options={"instance": inst})
    ret, done, n = 0.0, False, 0
    while not done:
        a, _ = policy.predict(obs, episode_start=n == 0, action_masks=env.unwrapped.action_masks())
        obs, r, term, trunc, info = env.step(a)
        ret, n, done = ret + r, n + 1, term or trunc
    save_state(env.unwrapped.state(), Path(out) / "states" / f"{pname}-{inst}-{ep}.json")
    return {
        "policy": pname,
        "episode": ep,
        "instance": inst,
        "steps": n,
        "return": ret,
        "final_eval": info.get("eval_loss"),
        "budget_frac": info["budget_frac"],
        "error": info.get("error", ""),
        "sec": info.get("wall_time", float("nan")),
    }


def collect(
    instances: str | None,
    split: str,
    policies: list[str],
    episodes: int,
    out: Path,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
    backend: str = "local",
    ray_address: str = "",
) -> list[dict[str, Any]]:
    """Run each policy over ``episodes`` instances of ``split``; record traces and episode states.

    Each (policy, episode) is one task (``collect_episode``) on ``backend`` with ``workers`` cores
    (``agents/scaleout.py``): it writes its own trace and state; the episode table is written here.
    """

    iset = load_instances(instances)
    pool = iset.split(split)
    src = str(Path(iset.source).resolve())  # Ray's worker processes need not share our working directory
    tasks = [
        (src, split, pname, ep, pool[ep % len(pool)].name, seed * 10_000 + ep, str(Path(out).resolve()))
        for pname in policies
        for ep in range(episodes)
    ]
    bar = tqdm(total=len(tasks), desc="collect", unit="episode", dynamic_ncols=True, disable=not progress)
    rows = []
    gen = task_results(collect_episode, tasks, workers, worker_threads(workers), backend, ray_address)
    with contextlib.closing(gen) as results:
        for row in results:
            rows.append(row)
            bar.update(1)
            bar.set_postfix(policy=row["policy"], sec_per_step=f"{row['sec'] / max(row['steps'], 1):.2f}")
    bar.close()
    rows.sort(key=lambda r: (policies.index(r["policy"]), r["episode"]))  # as they would run one by one
    print(format_table(rows))
    write_rows(out, "episodes", rows, {"instances": iset.source, "split": split, "policies": policies})
    plot_traces(out / "traces", out / "traces.png")
    print(f"wrote {out}/traces/*.parquet, {out}/states/*.json, {out}/episodes.csv/json, {out}/traces.png")
    return rows


def replay_state(path: Path, instances: str | None) -> dict[str, Any]:

    report = replay(load_state(path), instances)
    verdict = "VALID: every observation and reward matches" if report["valid"] else "INVALID"
    print(f"{path}: {verdict} ({report['steps']} steps of {report['instance']})")
    for m in report["mismatches"]:
        print(f"  t={m['t']}: {m['what']} differs")
    return report


def plot_traces(folder: Path, out: Path, max_episodes: int = 6) -> Path:
    """Eval loss vs FLOPs for a few recorded episodes, each non-continue action marked."""

    ds = load_traces(folder)
    df = ds.to_pandas()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    markers = {"reprune_hardest": "v", "reprune_easiest": "^", "stop": "X"}
    # round-robin over policies, so a folder of many continue episodes still shows the others' actions
    by_policy: dict[str, list[tuple]] = {}
    for key in dict.fromkeys(zip(df["policy"], df["instance"], df["episode_seed"])):
        by_policy.setdefault(key[0], []).append(key)
    rounds = [
        keys_of[i]
        for i in range(max(map(len, by_policy.values())))
        for keys_of in by_policy.values()
        if i < len(keys_of)
    ]
    keys = rounds[:max_episodes]
    for i, (pol, inst, seed) in enumerate(keys):
        ep = df[(df["policy"] == pol) & (df["instance"] == inst) & (df["episode_seed"] == seed)].sort_values(
            "t"
        )
        x, y = np.asarray(ep["flops_used"]) / 1e12, np.asarray(ep["eval_loss"])
        ax.plot(x, y, "-", color=f"C{i}", label=f"{pol} / {inst}")
        rows = list(ep.to_dict("records"))
        for prev, row in zip(rows, rows[1:]):
            # the action is decided at the previous point, before the interval it shapes
            name, px, py = row["action_name"], prev["flops_used"] / 1e12, prev["eval_loss"]
            if row["error"]:
                ax.annotate(
                    row["error"].split(":")[0],
                    (px, py),
                    color="red",
                    fontsize=8,
                    xytext=(3, -10),
                    textcoords="offset points",
                )
            if name == "continue":
                continue
            ax.plot(px, py, markers.get(name, "s"), color=f"C{i}", ms=9, mec="k")
            if name.startswith("switch"):
                ax.annotate(
                    name.split(":")[1], (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
    ax.set_xlabel("FLOPs used (TFLOP)")
    ax.set_ylabel("eval loss")
    ax.set_title("recorded episodes (▼ drop-hardest, ▲ drop-easiest, ■ switch, X stop)")
    ax.legend(fontsize=7)
    save_figure(fig, out, dpi=110)
    return out


__all__ = ["collect", "collect_episode", "plot_traces", "replay_state"]
