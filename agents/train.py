"""Train governor agents with Stable-Baselines3 on vectorized FineTuneEnvs (train split only).

    govgym train algo=maskable_ppo timesteps=2000 --out runs/train/mppo
    govgym train ... --resume          # continue from the last checkpoint after the process was killed

Writes ``<out>/agent.json``, ``policy.safetensors`` and ``obs_norm.json``: the agent as evaluation,
replay and deployment load it, with content hashes and no pickle (agents/policies.py). SB3's own
``final.zip``, ``vecnormalize.pkl`` and ``checkpoints/`` are kept for ``--resume`` only. **Trusted
files only: resuming unpickles SB3's own files** — resume only from a folder you trained yourself.

A script in CleanRL's order: config, seeding, build (SubprocVecEnv on both cores + VecNormalize,
whose statistics are saved with every checkpoint), callbacks (checkpoints, periodic evaluation on
train instances, progress bar), learn, save. TensorBoard logs go to ``<out>/tb``.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from govgym import __version__
from govgym.agents.callbacks import WallClock
from govgym.agents.policies import write_agent
from govgym.agents.pretrain import behaviour_clone, load_demonstrations
from govgym.agents.specs import TRAIN_ALGOS as ALGOS
from govgym.efficiency.signals import FEATURE_NAMES, spec_hash
from govgym.envs.allowed import STOP_ONLY
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.instances import load_instances
from govgym.envs.memo import MemoFineTuneEnv, memo_folder, memo_siblings, worker_threads
from govgym.typed import ConfigError, check_choice, check_range, to_dict


@dataclass
class TrainConfig:
    """What to train and for how long."""

    algo: str = "maskable_ppo"
    """maskable_ppo (sb3-contrib, uses action_masks) | ppo | dqn (SB3)."""
    timesteps: int = 2000
    """Env steps to train for (one env step = K optimizer steps of a real run, ~2 s here)."""
    n_envs: int = 4
    """Parallel envs (SubprocVecEnv, one torch thread each): two per core on 2 cores, because memo hits
    make steps uneven and the envs step in lockstep (with one env per core, one idled ~half the time)."""
    n_steps: int = 32
    """PPO rollout length per env (batch = n_steps x n_envs)."""
    checkpoint_every: int = 128
    """Save model + VecNormalize every this many env steps (summed over envs)."""
    eval_every: int = 1024
    """Evaluate on train instances every this many env steps (0 = never); 2 episodes, in this process."""
    seeds_per_instance: int = 4
    """Episode seeds per train instance, each (instance, seed) memoized exactly (envs/memo.py): paths
    taken before cost nothing. 0 = the plain env, a fresh seed every episode (no memo)."""
    memo: str = "runs/memo"
    """Folder of saved exact step trees (shared with `govgym tune`/`evaluate`): train paths already run
    there, e.g. every tuned heuristic's, are free from the start; new ones are added. '' = in memory only."""
    pretrain: bool = True
    """PPO: before RL, behaviour-clone the hindsight-best action at every state of the saved *train*
    trees in ``memo`` (agents/pretrain.py); skipped when there are none."""
    pretrain_epochs: int = 300
    """Passes over the demonstrations."""
    max_minutes: float = 0.0
    """Stop after this many minutes of training in this process (0 = run all timesteps)."""
    continue_prior: float = 2.0
    """PPO: initial logit bonus of 'continue' (2.0: ~55% of the first rollouts' actions instead of 1/7).
    Today's practice is to keep training; exploring from there spends fewer real steps on pointless
    reprunes (each scores the whole training set) while every action keeps a real probability."""
    seed: int = 0
    """Seed of the algorithm and of the envs' instance sampling."""
    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, FineTune-v1; configs/instances.yaml is v0's)."""
    env: str = "real"
    """real: live runs, memoized | fast: the fast backend (a model fitted from real runs, thousands of steps a
    second; RL from scratch, no cloning)."""
    fast_model: str = ""
    """env=fast: the fast model file ('' = the packaged configs/fast_v1.json)."""
    randomize: float = 0.0
    """env=fast: probability that an episode is a random instance drawn around the families (domain randomization)."""
    levers: bool = True
    """False: a stop-only governor, whose only actions are continue and stop (envs/allowed.py); the set is
    recorded in agent.json (``allowed_actions``) and applied wherever the agent acts."""
    penalty: float = 0.0
    """env=fast: MOPO-style pessimism, the reward minus ``penalty`` x the ensemble's disagreement (needs a
    fast model fitted with ``members`` >= 2; 0 = the plain reward)."""
    batch_size: int = 64
    """PPO minibatch size (capped at n_steps x n_envs)."""
    learning_rate: float = 0.0
    """Adam learning rate of the policy (0 = the algorithm's SB3 default: 3e-4 for PPO, 1e-4 for DQN)."""
    gamma: float = 1.0
    """Discount factor, PPO and DQN. 1.0: an episode is one fine-tuning run whose return is a sum over
    its intervals (the FLOPs cost and the final-quality term), and every interval counts alike."""
    n_epochs: int = 10
    """PPO: passes over each rollout (n_steps x n_envs env steps) per update."""
    gae_lambda: float = 0.95
    """PPO: GAE lambda (higher: less bias, more variance in the advantage)."""
    ent_coef: float = 0.01
    """PPO: entropy bonus; keeps every action's probability real while 'continue' is favoured."""
    dqn_learning_starts: int = 200
    """DQN: env steps of random actions before learning (capped at timesteps / 4)."""
    dqn_buffer_size: int = 50_000
    """DQN: replay buffer size in transitions (50,000 holds every step of the runs trained here)."""
    dqn_train_freq: int = 4
    """DQN: env steps between gradient updates."""
    dqn_exploration_fraction: float = 0.5
    """DQN: share of timesteps over which epsilon decays from 1.0 to 0.05."""

    def __post_init__(self) -> None:
        check_choice("train.algo", self.algo, ALGOS)
        check_choice("train.env", self.env, ("real", "fast"))
        check_range("train.randomize", self.randomize, 0.0, 1.0)
        check_range("train.batch_size", self.batch_size, 1)
        check_range("train.penalty", self.penalty, 0.0)
        if not self.levers and self.algo != "maskable_ppo":
            raise ConfigError(
                f"train.levers=false restricts the actions by mask, which {self.algo} ignores; use algo=maskable_ppo."
            )
        if self.env == "real" and (self.fast_model or self.randomize or self.penalty):
            raise ConfigError(
                f"train.fast_model / train.randomize / train.penalty: they set the fast backend (got "
                f"fast_model={self.fast_model!r}, randomize={self.randomize}, penalty={self.penalty}) but env=real; "
                "add env=fast, or leave them out."
            )
        for name in ("timesteps", "n_envs", "n_steps", "checkpoint_every"):
            check_range(f"train.{name}", getattr(self, name), 1)
        check_range("train.seeds_per_instance", self.seeds_per_instance, 0)
        check_range("train.max_minutes", self.max_minutes, 0.0)
        check_range("train.learning_rate", self.learning_rate, 0.0, 1.0)
        check_range("train.gamma", self.gamma, 0.0, 1.0)
        check_range("train.n_epochs", self.n_epochs, 1, 1000)
        check_range("train.gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("train.ent_coef", self.ent_coef, 0.0, 1.0)
        check_range("train.dqn_learning_starts", self.dqn_learning_starts, 0)
        check_range("train.dqn_buffer_size", self.dqn_buffer_size, 1, 10**9)
        check_range("train.dqn_train_freq", self.dqn_train_freq, 1)
        check_range("train.dqn_exploration_fraction", self.dqn_exploration_fraction, 0.0, 1.0)


def _require_rl() -> None:
    try:
        import sb3_contrib  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ConfigError('training needs Stable-Baselines3: pip install "govgym[rl]"') from None


def algo_class(algo: str) -> Any:
    """The SB3 / sb3-contrib class of ``algo``."""
    _require_rl()
    check_choice("algo", algo, ALGOS)
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    from stable_baselines3 import DQN, PPO

    return {"ppo": PPO, "dqn": DQN}[algo]


def algo_kwargs(cfg: TrainConfig, tb: Path | str) -> dict[str, Any]:
    """The SB3 constructor's keyword arguments for ``cfg.algo`` (PPO / MaskablePPO or DQN), from ``cfg``.

    ``learning_rate`` is passed only when set (0 leaves SB3's default of the algorithm); the PPO
    minibatch is capped at one rollout (n_steps x n_envs), DQN's random warm-up at a quarter of the run.
    """
    kw: dict[str, Any] = {"seed": cfg.seed, "verbose": 0, "tensorboard_log": str(tb)}
    if cfg.learning_rate:  # 0: leave SB3's default of the algorithm
        kw["learning_rate"] = cfg.learning_rate
    if cfg.algo in ("ppo", "maskable_ppo"):
        kw.update(
            n_steps=cfg.n_steps,
            batch_size=min(cfg.batch_size, cfg.n_steps * cfg.n_envs),
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            ent_coef=cfg.ent_coef,
        )
    else:
        kw.update(
            learning_starts=min(cfg.dqn_learning_starts, cfg.timesteps // 4),
            buffer_size=cfg.dqn_buffer_size,
            train_freq=cfg.dqn_train_freq,
            gamma=cfg.gamma,
            exploration_fraction=cfg.dqn_exploration_fraction,
        )
    return kw


def _make_env(
    instances: str,
    rank: int,
    seed: int,
    threads: int = 0,
    seeds_per_instance: int = 0,
    n_envs: int = 1,
    memo: str = "",
    fast: tuple[str, float, float] | None = None,
    levers: bool = True,
):
    def thunk():

        warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation chatter, per process
        if threads:
            # one core per env: n_envs processes x all cores would oversubscribe
            torch.set_num_threads(threads)
        from stable_baselines3.common.monitor import Monitor

        if fast is not None:  # the fast backend: numpy only per step, no memo needed
            from govgym.envs.fast_env import FineTuneFastEnv

            env = FineTuneFastEnv(
                instances or None, split="train", model=fast[0] or None, randomize=fast[1], penalty=fast[2]
            )
        elif seeds_per_instance:
            # rank r of n takes seeds r, r+n, ...: the envs never compute the same (instance, seed) twice
            seeds = list(range(rank % n_envs, seeds_per_instance, n_envs)) or [rank % seeds_per_instance]
            env = MemoFineTuneEnv(instances or None, split="train", seeds=seeds, memo=memo)
        else:
            env = FineTuneEnv(instances or None, split="train", wall_time_info=False)
        if not levers:
            from govgym.envs.allowed import AllowedActions

            env = AllowedActions(env)
        env.reset(seed=seed + rank)
        return Monitor(env)

    return thunk


def _vec_env(cfg: TrainConfig, n: int, seed: int, memo: str | None = None):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    memo = cfg.memo if memo is None else memo
    if cfg.env == "fast":  # ~0.3 ms a step: in-process envs beat inter-process pipes
        fast = (cfg.fast_model, cfg.randomize, cfg.penalty)
        return DummyVecEnv(
            [_make_env(cfg.instances, i, seed, 0, 0, n, "", fast, cfg.levers) for i in range(n)]
        )
    threads = worker_threads(n) if n > 1 else 0
    fns = [
        _make_env(cfg.instances, i, seed, threads, cfg.seeds_per_instance, n, memo, None, cfg.levers)
        for i in range(n)
    ]
    # spawn: forking a process whose torch threads have started is unsafe
    return SubprocVecEnv(fns, start_method="spawn") if n > 1 else DummyVecEnv(fns)


def _pretrain(cfg: TrainConfig, model: Any, venv: Any) -> dict[str, Any]:
    """Behaviour-clone the hindsight-best actions of the saved train trees (agents/pretrain.py), if any."""

    if not cfg.memo:
        return {}
    # the namespace the training envs read: one torch thread count per env process (see _vec_env)
    threads = worker_threads(cfg.n_envs) if cfg.n_envs > 1 else torch.get_num_threads()
    folder = memo_folder(cfg.memo, cfg.instances, threads)
    names = [i.name for i in load_instances(cfg.instances or None).train]
    demos = load_demonstrations(memo_siblings(folder), names, stop=int(venv.action_space.n) - 1)
    if not len(demos.actions):
        print(
            f"pretrain: no saved train trees under {folder.parent}; starting from scratch "
            "(run `govgym tune` first to give the agent demonstrations)."
        )
        return {}
    stats = behaviour_clone(model, venv, demos, epochs=cfg.pretrain_epochs, seed=cfg.seed)
    print(
        f"pretrain: cloned the hindsight-best action at {stats['samples']} explored states of {stats['trees']} train runs: "
        f"agreement {stats['agreement']:.1%}, value RMSE {stats['value_rmse']:.3f}"
    )
    return stats


def latest_checkpoint(folder: Path) -> tuple[Path, Path | None, int] | None:
    """(model zip, VecNormalize pkl, env steps) of the newest checkpoint in ``folder``."""
    best = None
    for p in folder.glob("rl_model_*_steps.zip"):
        m = re.match(r"rl_model_(\d+)_steps\.zip", p.name)
        if m and (best is None or int(m.group(1)) > best[2]):
            vn = folder / f"rl_model_vecnormalize_{m.group(1)}_steps.pkl"
            best = (p, vn if vn.exists() else None, int(m.group(1)))
    return best


def train(cfg: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) and save the agent in ``out`` (safe files + SB3's own); returns ``out/final.zip``.

    ``resume=True`` loads the newest SB3 checkpoint in ``out/checkpoints`` (trusted files only:
    SB3's zip and VecNormalize files are pickles, and unpickling runs whatever they hold).
    """
    _require_rl()

    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.vec_env import VecNormalize

    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    venv = _vec_env(cfg, cfg.n_envs, cfg.seed)
    found = latest_checkpoint(ckpt_dir) if resume else None
    cls: Any = algo_class(cfg.algo)
    meta_path = out / "agent.json"
    clock = WallClock(out / "wall.json", resume, limit_s=60 * cfg.max_minutes)
    pretrained: dict[str, Any] = (
        json.loads(meta_path.read_text()).get("pretrain", {}) if resume and meta_path.is_file() else {}
    )
    if resume and found is None:
        raise ConfigError(f"--resume: no checkpoint in {ckpt_dir}; train without --resume first.")
    if found is not None:
        venv = VecNormalize.load(str(found[1]), venv) if found[1] else VecNormalize(venv, norm_reward=False)
        model = cls.load(str(found[0]), env=venv, tensorboard_log=str(out / "tb"))
        replay = ckpt_dir / f"rl_model_replay_buffer_{found[2]}_steps.pkl"
        if cfg.algo == "dqn" and replay.exists():
            model.load_replay_buffer(str(replay))
    else:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False)
        kw = algo_kwargs(cfg, out / "tb")
        model = cls("MlpPolicy", venv, **kw)
        if cfg.algo != "dqn" and cfg.pretrain and cfg.env == "real":
            pretrained = _pretrain(cfg, model, venv)
        if cfg.algo != "dqn" and cfg.continue_prior and not pretrained and cfg.env == "real":
            with torch.no_grad():
                model.policy.action_net.bias[0] += cfg.continue_prior  # action 0 = continue
    callbacks = [
        clock,
        CheckpointCallback(
            save_freq=max(cfg.checkpoint_every // cfg.n_envs, 1),
            save_path=str(ckpt_dir),
            save_vecnormalize=True,
            save_replay_buffer=cfg.algo == "dqn",
        ),
    ]
    if cfg.eval_every:
        # the eval env keeps its memo in memory: the training envs own the saved files of their seeds
        eval_env = VecNormalize(
            _vec_env(cfg, 1, cfg.seed + 10_000, memo=""), norm_obs=True, norm_reward=False, training=False
        )
        eval_env.obs_rms = venv.obs_rms  # shared statistics: evaluation sees what the policy sees
        if cfg.algo == "maskable_ppo":
            from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback as EvalCb
        else:
            EvalCb = EvalCallback
        callbacks.append(
            EvalCb(
                eval_env,
                n_eval_episodes=2,
                eval_freq=max(cfg.eval_every // cfg.n_envs, 1),
                best_model_save_path=str(out / "best"),
                log_path=str(out / "eval"),
            )
        )
    remaining = cfg.timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(
            remaining,
            callback=callbacks,
            progress_bar=progress,
            reset_num_timesteps=found is None,
            tb_log_name=cfg.algo,
        )
    # SB3's own files (pickles), for `govgym train --resume` and SB3 users: trusted files only
    model.save(str(out / "final.zip"))
    venv.save(str(out / "vecnormalize.pkl"))

    # the safe files everything else loads (agents/policies.py): policy.safetensors, obs_norm.json and
    # agent.json, which describes the agent, hashes each file and itself, and pins the observation spec
    meta = {
        "govgym_version": __version__,
        "algo": cfg.algo,
        "obs_spec": spec_hash(),
        "features": list(FEATURE_NAMES),
        "action_names": list(venv.get_attr("action_names")[0]),
        **({} if cfg.levers else {"allowed_actions": list(STOP_ONLY)}),
        "env_id": "govgym/FineTuneFast-v1"
        if cfg.env == "fast"
        else f"govgym/FineTune-v{load_instances(cfg.instances or None).env.version}",
        "split": "train",
        "env_steps": int(model.num_timesteps),
        "wall_seconds": round(clock.total(), 1),
        "config": to_dict(cfg),
        "pretrain": pretrained,
    }
    write_agent(out, model, venv, meta)
    venv.close()
    return out / "final.zip"
