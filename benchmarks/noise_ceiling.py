"""How much of the oracle's room is real? Held-out fixed runs re-run with an independent audit eval set (issue 20)

    python benchmarks/noise_ceiling.py collect a=configs/instances_v2_f3.yaml:test-a:data/heldout_v2/f3/a/memo \
        b=... c=... --seeds 0 --out runs/noise_ceiling            # real runs (1 thread each; resumable)
    python benchmarks/noise_ceiling.py judge a=... b=... c=... --out runs/noise_ceiling \
        --governors marginal_gain patience early_stopping learned_curve+shield mbrl_p0=data/agents_v2/mbrl_p0+shield

Every governor is judged, and every "regret" of issue 20 is measured, on the env's eval split: 64 fixed
examples evaluated after each interval. The oracle stop is the best point of that curve *in hindsight*, so
part of its room over a rule may be the eval set's own fluctuations, which no governor that sees only the
past can foresee. ``collect`` re-runs each held-out fixed run (every action continue, the same instance and
episode seed as its committed step tree) and, after each interval, also evaluates the model on an *audit*
set: up to ``--audit`` clean examples of the same task that neither the run's train nor its eval split holds
(the rows after both in the run's own hash order). Nothing the run sees changes: the audit pass is a plain
forward under ``no_grad``, not counted in any FLOP ledger, and the env's eval losses are checked against the
committed tree's (``max_dA``). ``judge`` then values the stops on both curves, with the FLOP cost per interval
taken from the env's rewards (so only the quality term changes):

- ``room_A``: the stop-only oracle on the env's eval minus the governor, both on the env's eval (issue 20's
  regret on fixed paths);
- ``room_audit``: the same two stops valued on the audit set (does the oracle's advantage survive on data its
  choice did not see?);
- ``room_A_true``: an oracle that knows the audit curve (a better view of the true curve) but not the eval
  set's noise, valued on the env's eval — the part of the room a governor that predicted the run perfectly
  could still take, scored as the judge scores it.

Paired bootstrap 95% CIs by instance. A fast test checks the rerun's eval losses equal a memo's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np


# ----------------------------------------------------------------------------------------------- collect
def audit_rows(run: Any, cfg: Any, n: int) -> tuple[Any, Any]:
    """(input_ids, labels) of up to ``n`` clean audit rows: the task's rows after the run's eval and train
    split in its own hash order (``efficiency.workload.hash_order``), tokenized as its eval split is. The
    reconstruction is checked: the same order's first rows must tokenize to the run's eval ids exactly."""
    import datasets
    import torch

    from govgym.efficiency import corpus, tasks
    from govgym.efficiency.workload import _tokenize, hash_order, quiet_libraries

    d = cfg.data
    examples = tasks.task_examples(corpus.current_manifest(), d.task)
    order = hash_order([e["key"] for e in examples], d.seed)
    n_train = min(d.max_examples, len(examples) - d.eval_examples)

    def tok(idx: list[int]) -> Any:
        cols = ("key", "prompt", "response", "text")
        ds = datasets.Dataset.from_dict({k: [examples[i][k] for i in idx] for k in cols})
        with quiet_libraries():
            return _tokenize(ds, run.tokenizer, d.seq_len, d.response_only)

    ev = tok(order[: d.eval_examples])
    if not torch.equal(torch.tensor(ev["input_ids"]), run.eval_ids.cpu()):
        raise RuntimeError("the audit split's reconstruction does not reproduce the run's eval split")
    rest = order[d.eval_examples + n_train :][:n]
    if len(rest) < 32:
        raise RuntimeError(f"task {d.task!r}: only {len(rest)} rows left beyond train and eval")
    au = tok(rest)
    return torch.tensor(au["input_ids"]).to(run.device), torch.tensor(au["labels"]).to(run.device)


def rerun(task: tuple[str, str, str, str, int, int]) -> dict[str, Any]:
    """One held-out fixed run again, the audit loss beside each eval; checked against the committed tree."""
    from govgym.agents.curvetrain import fixed_path
    from govgym.agents.harness import task_env
    from govgym.envs.memo import load_nodes

    name, instances, split, tree_file, seed, n_audit = task
    inst = Path(tree_file).name.removesuffix(f"-{seed}.tree")
    env = task_env(instances, split)
    env.reset(options={"instance": inst, "episode_seed": seed})
    ids, labels = audit_rows(env.run, env.run.cfg, n_audit)
    evals, audit, rewards, error = [float(env.e0)], [env.run.loss_on(ids, labels)], [], False
    while True:
        _, r, term, trunc, info = env.step(0)
        rewards.append(float(r))
        if info.get("error"):
            error = True
            break
        evals.append(float(info["eval_loss"]))
        audit.append(env.run.loss_on(ids, labels))
        if term or trunc:
            break
    memo = fixed_path(load_nodes(Path(tree_file)))
    if memo is None or len(memo.evals) != len(evals) or memo.error != error:
        raise RuntimeError(f"{inst} seed {seed}: the rerun's fixed path differs in length from its tree")
    return {
        "instance": inst,
        "episode_seed": seed,
        "set": name,
        "n_audit": len(ids),
        "evals": evals,
        "audit": audit,
        "rewards": rewards,
        "error": error,
        "max_dA": float(np.max(np.abs(np.array(evals) - np.array(memo.evals)))),
    }


def parse_sets(specs: list[str]) -> list[tuple[str, str, str, str]]:
    return [(s.split("=", 1)[0], *s.split("=", 1)[1].split(":")) for s in specs]


def collect(sets: list[str], seeds: list[int], n_audit: int, workers: int, out: Path) -> None:
    from tqdm import tqdm

    from govgym.envs.fastfit import tree_index
    from govgym.envs.instances import load_instances

    out.mkdir(parents=True, exist_ok=True)
    file = out / "reruns.jsonl"
    done = set()
    if file.exists():
        for line in file.read_text().splitlines():
            r = json.loads(line)
            done.add((r["set"], r["instance"], r["episode_seed"]))
    tasks = []
    for seed in seeds:  # seed-major: a stopped collection holds whole seeds of every set
        for name, instances, split, memo in parse_sets(sets):
            for inst, s, tree in tree_index(load_instances(instances), memo, split):
                if s == seed and (name, inst, s) not in done:
                    tasks.append((name, instances, split, str(tree), s, n_audit))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ctx = mp.get_context("spawn")
    # a fresh worker every 24 runs: a long-lived one grew by ~130 MB per run (7 GB after 50); a new one
    # spends ~30 s on its first (imports, the stdlib corpus)
    with ctx.Pool(workers, initializer=_one_thread, maxtasksperchild=24) as pool, file.open("a") as fh:
        for r in tqdm(pool.imap_unordered(rerun, tasks), total=len(tasks), desc="fixed runs + audit"):
            fh.write(json.dumps(r) + "\n")
            fh.flush()


def _one_thread() -> None:
    """Each worker on one thread, as the committed trees were run (their memo namespace ends in ``-t1``)."""
    import torch

    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------- judge
def curves(r: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """(return of stopping after each interval on the env's eval, the same on the audit set, the last
    interval a stop may follow). The audit curve keeps each interval's FLOP cost (from the rewards); an
    error's interval (its penalty) is the same on both."""
    e, a, rw = np.array(r["evals"]), np.array(r["audit"]), np.array(r["rewards"])
    cum_a = np.concatenate([[0.0], np.cumsum(rw)])
    n = len(e)  # stops may follow the reset and every interval that ended without an error
    cost = (e[0] - e[1:n]) / e[0] - cum_a[1:n]  # lambda x FLOP share so far
    cum_b = np.concatenate([[0.0], (a[0] - a[1:n]) / a[0] - cost])
    if r["error"]:
        cum_b = np.append(cum_b, cum_b[-1] + cum_a[-1] - cum_a[n - 1])
    return cum_a, cum_b, n - 1


def judge(sets: list[str], governors: list[str], knobs: str, out: Path) -> None:
    from predictability import first_stops, fixed_paths  # benchmarks/ (the script's folder) is on sys.path

    from govgym.agents.bootstrap import clustered_bootstrap
    from govgym.agents.harness import task_env
    from govgym.results import format_table, write_json, write_rows

    if not (out / "reruns.jsonl").is_file():
        raise SystemExit(f"{out / 'reruns.jsonl'}: no reruns there; run `collect` with the same --out first")
    reruns = {}
    for line in (out / "reruns.jsonl").read_text().splitlines():
        r = json.loads(line)
        reruns[(r["set"], r["instance"], r["episode_seed"])] = r
    per: list[dict[str, Any]] = []  # one row per (governor, path)
    noise = []
    for name, instances, split, memo in parse_sets(sets):
        paths = [p for p in fixed_paths(instances, split, memo) if (name, p[0], p[1]) in reruns]
        stops = first_stops(paths, governors, knobs, task_env(instances, split).action_names)
        for k, (inst, seed, _path) in enumerate(paths):
            r = reruns[(name, inst, seed)]
            ca, cb, last = curves(r)
            oa, ob = int(np.argmax(ca[: last + 1])), int(np.argmax(cb[: last + 1]))
            e, a = np.array(r["evals"]), np.array(r["audit"])
            noise.append(
                {
                    "set": name,
                    "instance": inst,
                    "steps": last,
                    "error": bool(r["error"]),
                    "corr_dE": float(np.corrcoef(np.diff(e / e[0]), np.diff(a / a[0]))[0, 1])
                    if last > 2
                    else np.nan,
                    "same_oracle_stop": float(oa == ob),
                    "oracle_gap_A": float(ca[oa] - ca[ob]),
                    "max_dA": r["max_dA"],
                }
            )
            for gov, rows in stops.items():
                t = rows[k]["stop"]
                per.append(
                    {
                        "set": name,
                        "governor": gov,
                        "instance": inst,
                        "episode_seed": seed,
                        "error": bool(r["error"]),
                        "room_A": float(ca[oa] - ca[t]),
                        "room_audit": float(cb[oa] - cb[t]),
                        "room_A_true": float(ca[ob] - ca[t]),
                        "room_audit_own": float(cb[ob] - cb[t]),
                    }
                )
    table = []
    labels = list(dict.fromkeys(r["governor"] for r in per))
    for name, paths in [
        (n, k) for k in ("all", "no error") for n in [*dict.fromkeys(r["set"] for r in per), "pooled"]
    ]:
        for gov in labels:
            rows = [
                r
                for r in per
                if r["governor"] == gov
                and name in ("pooled", r["set"])
                and (paths == "all" or not r["error"])
            ]
            row: dict[str, Any] = {"set": name, "paths": paths, "governor": gov, "n": len(rows)}
            for key in ("room_A", "room_audit", "room_A_true"):
                by: dict[str, list[float]] = {}  # an instance's seeds resample together
                for r in rows:
                    by.setdefault(f"{r['set']}/{r['instance']}", []).append(r[key])
                b = clustered_bootstrap(by)
                row[key] = f"{b['mean']:+.4f} [{b['lo']:+.4f}, {b['hi']:+.4f}]"
                row[f"{key}_mean"] = b["mean"]
            ra = np.array([r["room_A"] for r in rows])
            rt = np.array([r["room_A_true"] for r in rows])
            row["share_true"] = float(rt.mean() / ra.mean()) if ra.mean() > 0 else float("nan")
            table.append(row)
    summary = {
        "paths": len(noise),
        "ended_in_error": int(sum(n["error"] for n in noise)),
        "corr_dE_median": float(np.nanmedian([n["corr_dE"] for n in noise])),
        "same_oracle_stop": float(np.mean([n["same_oracle_stop"] for n in noise])),
        "oracle_gap_A_mean": float(np.mean([n["oracle_gap_A"] for n in noise])),
        "max_dA": float(np.max([n["max_dA"] for n in noise])),
    }
    show = ["set", "paths", "governor", "n", "room_A", "room_audit", "room_A_true", "share_true"]
    print(format_table([{k: r[k] for k in show} for r in table]))
    print(json.dumps(summary, indent=1))
    write_rows(out, "noise_ceiling", table)
    write_rows(out, "per_path", per)
    write_rows(out, "noise", noise)
    write_json(out / "noise_ceiling.json", {"summary": summary, "rows": table})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["collect", "judge"])
    ap.add_argument("sets", nargs="+", help="NAME=INSTANCES:SPLIT:MEMO (held-out fixed paths)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument(
        "--audit", type=int, default=256, help="audit rows per run (fewer where the task has fewer)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--knobs", default="configs/heuristics_v2.yaml")
    ap.add_argument("--governors", nargs="+", default=["marginal_gain", "patience", "early_stopping"])
    ap.add_argument("--out", default="runs/noise_ceiling")
    args = ap.parse_args()
    if args.mode == "collect":
        collect(args.sets, args.seeds, args.audit, args.workers, Path(args.out))
    else:
        judge(args.sets, args.governors, args.knobs, Path(args.out))


if __name__ == "__main__":
    main()
