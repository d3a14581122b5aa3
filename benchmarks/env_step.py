"""FineTuneEnv.step(continue) vs the run's own work for one interval, side by side in one process.

    python benchmarks/env_step.py                         # default (FineTune-v1) set, first train instance
    python benchmarks/env_step.py --instance m-roomy-n10-b1.5-l1 --rounds 8

Two runs of the same instance and seed: one inside the env, one bare. Each round times one env step
(advance K + evaluate + reward + observation) against the bare run's ``advance(K)`` followed by
``evaluate()`` — the work an interval needs by definition — interleaved, alternating which goes first,
so machine noise hits both.
The env's extra work per interval is the signal tracker and the info dict; per optimizer step it
adds nothing (the step loop is the run's). Also printed: env step vs bare ``advance(K)`` alone, which
shows what the interval's held-out evaluation costs. Goal: env/run ratio <= 1.01.
"""

from __future__ import annotations

import argparse
import copy
import time

from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--instances", default="", help="instance-set YAML (default: packaged configs/instances_v1.yaml)"
    )
    ap.add_argument("--instance", default="", help="instance name (default: first of the train split)")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()

    iset = load_instances(args.instances or None)
    inst = iset.get(args.instance) if args.instance else iset.train[0]
    inst.budget_tflops, inst.budget_epochs = 1e6, None  # no truncation while timing
    env = FineTuneEnv(iset, split="train", wall_time_info=False)
    env.reset(seed=0, options={"instance": inst.name, "episode_seed": 0})
    cfg = copy.deepcopy(env.run.cfg)  # as the env planned it (v1: schedule over the budget)
    bare = FineTuneRun(cfg, workload=load_workload(cfg, progress=False), progress=False)
    k = env.ecfg.interval_steps
    bare.evaluate()
    env.step(0)  # warm-up: the first interval measures FLOPs and memory once in both
    bare.advance(k)
    bare.evaluate()
    t_env = t_run = t_adv = 0.0
    ratios = []

    def env_step() -> float:
        t0 = time.perf_counter()
        env.step(0)
        return time.perf_counter() - t0

    def bare_step() -> tuple[float, float]:
        t0 = time.perf_counter()
        bare.advance(k)
        t1 = time.perf_counter()
        bare.evaluate()
        return time.perf_counter() - t0, t1 - t0

    for r in range(args.rounds):
        # alternate who goes first, so a slow or fast stretch of the machine hits both alike
        if r % 2:
            (run_s, adv_s), env_s = bare_step(), env_step()
        else:
            env_s, (run_s, adv_s) = env_step(), bare_step()
        t_env, t_run, t_adv = t_env + env_s, t_run + run_s, t_adv + adv_s
        ratios.append(env_s / run_s)
    n = args.rounds
    print(
        f"instance {inst.name} (FineTune-v{env.version}): K = {k} optimizer steps per env step, {n} timed rounds, "
        f"strategy {env.run.strategy}"
    )
    print(f"env.step(continue)            : {1e3 * t_env / n:8.1f} ms  ({t_env / n:.2f} s per env step)")
    print(f"run.advance(K) + evaluate()   : {1e3 * t_run / n:8.1f} ms")
    print(f"run.advance(K) alone          : {1e3 * t_adv / n:8.1f} ms")
    print(
        f"ratio env / (advance+evaluate): {t_env / t_run:.4f}   (goal <= 1.01); median of per-round ratios "
        f"{sorted(ratios)[n // 2]:.4f}, range {min(ratios):.3f}-{max(ratios):.3f}"
    )
    print(
        f"ratio env / advance alone     : {t_env / t_adv:.4f}   (the interval's held-out eval is part of an env step)"
    )


if __name__ == "__main__":
    main()
