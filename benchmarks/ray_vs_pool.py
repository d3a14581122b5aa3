"""`govgym evaluate`'s tasks on the local process pool vs on a local Ray: tasks per minute, same results.

    python benchmarks/ray_vs_pool.py                            # tiny instances, 2 workers / 2 CPUs each side
    python benchmarks/ray_vs_pool.py --seeds 12 --rounds 3      # more tasks (longer, steadier figure)

The same (instance, seed) task list (every policy on each, through the step tree, no memo: every
step is real) runs twice in this process through ``run_tasks``: once on the local spawned pool
(``backend=local``, ``workers`` processes) and once as Ray tasks on a local Ray started with
``ray.init(num_cpus=workers)`` (``backend=ray``). Both give each task the same torch thread count,
so their returns must match bit for bit (checked). Wall time is end to end, as a user waits for it:
starting the pool's processes or Ray (and its workers importing torch) is included, so a short task
list favours whichever starts faster; the per-task compute time (the tasks' own ``seconds``) is
printed beside it. With ``--rounds R`` the two sides alternate R times (pool, Ray, pool, Ray, ...),
each round a fresh pool / a fresh Ray, so a shared machine's changing load hits both alike; the
figures are totals over the rounds. Needs the Ray extra: ``pip install "govgym[ray]"``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from govgym.agents.evaluate import run_tasks
from govgym.agents.policies import parse_spec
from govgym.agents.scaleout import require_ray
from govgym.envs.instances import load_instances

TINY = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny_instances.yaml"


def returns(results: list[dict]) -> dict[tuple[str, int, str], float]:
    """{(instance, seed, policy): episode return}."""
    return {
        (r["instance"], r["episode_seed"], e["policy"]): sum(e["rewards"])
        for r in results
        for e in r["episodes"]
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", default=str(TINY), help="instance-set YAML (default: the tests' tiny set)")
    ap.add_argument("--split", default="train", help="instance split whose instances are the tasks")
    ap.add_argument(
        "--seeds", type=int, default=8, help="episode seeds per instance (tasks = instances x seeds)"
    )
    ap.add_argument("--workers", type=int, default=2, help="pool processes / local Ray CPUs")
    ap.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds per side (each a fresh pool / Ray)"
    )
    ap.add_argument(
        "--policies",
        default="fixed_budget,patience:patience=1,memory_reactive,random",
        help="policy specs run on every task (comma-separated)",
    )
    args = ap.parse_args()
    require_ray("--backend")

    names = [i.name for i in load_instances(args.instances).split(args.split)]
    seeds = list(range(args.seeds))
    specs = [parse_spec(p) for p in args.policies.split(",")]
    n = len(names) * len(seeds)
    print(
        f"{n} tasks per round ({len(names)} {args.split} instances x {len(seeds)} seeds), {len(specs)} policies "
        f"each; {args.workers} workers; {args.rounds} rounds per side"
    )
    side = {b: {"wall": 0.0, "task_s": 0.0, "steps": 0, "returns": []} for b in ("local", "ray")}
    for rnd in range(args.rounds):
        for backend in ("local", "ray"):
            t0 = time.perf_counter()
            res = run_tasks(
                args.instances, args.split, names, seeds, specs, args.workers, desc=backend, backend=backend
            )
            wall = time.perf_counter() - t0
            s = side[backend]
            s["wall"] += wall
            s["task_s"] += sum(r["seconds"] for r in res)
            s["steps"] += sum(r["real_steps"] for r in res)
            s["returns"].append(returns(res))
            print(
                f"round {rnd + 1}, {backend:>5}: {wall:6.1f} s wall, {n / wall * 60:6.1f} tasks/min",
                flush=True,
            )
    for backend, s in side.items():
        s["per_min"] = n * args.rounds / s["wall"] * 60
        print(
            f"{backend:>5}: {n * args.rounds} tasks in {s['wall']:6.1f} s wall = {s['per_min']:6.1f} tasks/min; "
            f"{s['task_s']:6.1f} s inside tasks; {s['steps']} real env steps"
        )
    every = side["local"]["returns"] + side["ray"]["returns"]
    same = all(r == every[0] for r in every)
    print(
        f"same returns per (instance, seed, policy) in every round on both sides: {'yes' if same else 'NO'} "
        f"({len(every[0])} episodes per round)"
    )
    print(
        f"Ray / pool tasks per minute: {side['ray']['per_min'] / side['local']['per_min']:.2f}x "
        f"(local Ray with {args.workers} CPUs vs a pool of {args.workers} processes)"
    )
    if not same:
        raise SystemExit("the two backends computed different returns")


if __name__ == "__main__":
    main()
