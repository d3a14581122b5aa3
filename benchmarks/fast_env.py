"""govgym/FineTuneFast-v1 vs govgym/FineTune-v1 steps per second, and PPO end to end on the fast backend.

    python benchmarks/fast_env.py                       # first train instance, the packaged fast model
    python benchmarks/fast_env.py --ppo-steps 100000 --algos maskable_ppo dqn

1. The same instance and episode seed in both envs, fixed-budget path (continue to the end): the real
   env runs it once after a warm-up reset (base model, data and strategy probes cached; the timed episode
   still includes its own reset and initial eval) (live fine-tuning, each step K optimizer steps + an eval), the fast env as many
   times as fit in ``--fast-seconds``. Both sides must agree on what they computed: the same number of
   intervals and the same budget fraction at every step (the fast backend's mechanics). Printed:
   steps/s of each and the ratio (goal >= 1000x).
2. SB3 end to end on the fast backend (rollouts + updates, one process, DummyVecEnv of ``--n-envs``):
   env steps per second of ``model.learn`` for each algorithm (goal >= 1k for PPO on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--instance", default="", help="train instance (default: the first of the packaged v1 set)"
    )
    ap.add_argument(
        "--model", default="", help="fast model file (default: the packaged configs/fast_v1.json)"
    )
    ap.add_argument("--fast-seconds", type=float, default=10.0)
    ap.add_argument("--ppo-steps", type=int, default=50_000)
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--algos", nargs="*", default=["maskable_ppo"])
    args = ap.parse_args()

    import torch

    from govgym.envs.fast_env import FineTuneFastEnv
    from govgym.envs.finetune_env import FineTuneEnv
    from govgym.envs.instances import load_instances

    iset = load_instances()
    name = args.instance or iset.train[0].name
    fast = FineTuneFastEnv(iset, split="train", model=args.model or None)
    real = FineTuneEnv(iset, split="train")

    def path(env: object, seed: int) -> list[float]:
        env.reset(options={"instance": name, "episode_seed": seed})
        fr = []
        while True:
            _, _, term, trunc, info = env.step(0)
            fr.append(info["budget_frac"])
            if term or trunc:
                return fr

    real.reset(options={"instance": name, "episode_seed": 0})  # warm: base model, data and probes cached
    t0 = time.perf_counter()
    real_frac = path(real, 0)
    real_s = time.perf_counter() - t0
    real_rate = len(real_frac) / real_s
    n, t0, fast_frac = 0, time.perf_counter(), []
    while time.perf_counter() - t0 < args.fast_seconds:
        fast_frac = path(fast, n)
        n += len(fast_frac)
    fast_rate = n / (time.perf_counter() - t0)
    assert len(fast_frac) == len(real_frac), (len(fast_frac), len(real_frac))
    err = float(np.max(np.abs(np.array(fast_frac) - np.array(real_frac))))
    assert err < 1e-3, f"budget fractions differ by {err}"
    print(
        f"instance {name}, fixed-budget path of {len(real_frac)} intervals (budget fractions agree within {err:.1e})"
    )
    print(
        f"  real env  (FineTune-v1):     {real_rate:10.3f} steps/s  ({real_s:.1f} s for one episode, torch threads {torch.get_num_threads()})"
    )
    print(f"  fast env  (FineTuneFast-v1): {fast_rate:10.1f} steps/s  ({n} steps)")
    print(f"  ratio fast / real: {fast_rate / real_rate:,.0f}x  (goal >= 1000x)")

    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from govgym.agents.train import algo_class

    for algo in args.algos:
        venv = VecNormalize(
            DummyVecEnv(
                [lambda: FineTuneFastEnv(iset, split="train", model=args.model or None)] * args.n_envs
            ),
            norm_reward=False,
        )
        cls = algo_class(algo)
        kw = (
            {"n_steps": 256, "batch_size": 256, "n_epochs": 5} if algo != "dqn" else {"learning_starts": 1000}
        )
        model = cls("MlpPolicy", venv, seed=0, verbose=0, **kw)
        t0 = time.perf_counter()
        model.learn(args.ppo_steps)
        s = time.perf_counter() - t0
        print(
            f"  {algo} end to end on the fast backend ({args.n_envs} envs): {model.num_timesteps / s:,.0f} env steps/s ({model.num_timesteps} steps in {s:.0f} s)"
        )


if __name__ == "__main__":
    main()
