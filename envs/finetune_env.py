"""FineTuneEnv: a Gymnasium environment in which an agent governs a real fine-tuning run."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from govgym import __version__
from govgym.efficiency import caps
from govgym.efficiency.run import FineTuneRun, RunOOM
from govgym.efficiency.signals import FEATURE_NAMES, HIGH, LOW, Reading, SignalTracker, spec_hash
from govgym.efficiency.strategy import Strategy
from govgym.efficiency.workload import load_workload
from govgym.envs.actions import action_index, action_mask, action_table
from govgym.envs.instances import EnvConfig, Instance, InstanceSet, default_instances_path, load_instances
from govgym.envs.probe import strategy_costs, strategy_peaks
from govgym.typed import ConfigError, from_dict, to_dict

STATE_FORMAT = 1


class FineTuneEnv(gym.Env):
    """Govern a real fine-tuning run: continue, reprune data, switch memory strategy, or stop.

    ## Description
    One episode is one fine-tuning run of one *instance* (base model, data and its noise, FLOP budget,
    memory cap and its schedule, start strategy, compute price λ, seed). One step is one decision
    interval: the action is applied, the run advances K real optimizer steps, then evaluates on a
    small held-out split (its FLOPs are counted).

    ## Action Space
    ``Discrete(4 + S)``: 0 continue; 1 reprune drop-hardest; 2 reprune drop-easiest (each drops
    ``env.reprune_fraction`` of the kept data by ``env.reprune_scorer``); 3 … 2+S switch to
    ``env.switch_targets[i]``; 3+S stop. ``action_masks()`` marks impossible actions: switching to
    the strategy in use or to one whose measured peak exceeds the current cap, repruning below
    ``env.min_kept_fraction``. A masked action taken anyway acts as continue and sets
    ``info["invalid_action"]``. An action must be an integer (``int``, a numpy integer or a 0-d integer
    array, as ``Discrete.contains`` accepts; not a bool): a float, string, ``None`` or an array of
    another shape raises ``TypeError``, an integer outside ``[0, n)`` raises ``ValueError``.

    ## Observation Space
    ``Box(LOW, HIGH, (20,), float32)``: the scale-free features of ``govgym.efficiency.signals``
    (budget left, eval ratio, gain per budget fraction, grad-norm statistics, gradient noise scale,
    memory fraction, strategy one-hot, data kept, LR fraction, λ).

    ## Rewards
    r_t = (E_{t−1} − E_t)/E_0 − λ·(FLOPs spent in step t)/budget. Summed: normalized eval improvement
    minus λ × budget fraction used. OOM or a crashed/diverged run: −penalty − λ·(FLOPs spent).

    ## Starting State
    A fresh run of the instance under its start strategy, evaluated once (E_0; counted). Only instances
    of the env's ``split`` can be reset (``options={"instance": name}`` with a name from the other split
    raises ConfigError), and an instance whose starting cap lies below the measured peak of every
    strategy the episode can reach is refused at reset (it could only OOM).

    ## Episode End
    Terminated: stop action, OOM (measured peak above the cap; a real allocator cap on CUDA), a
    non-finite or crashed run (``info["error"]`` says which). Truncated: the FLOP budget is spent.

    ## Arguments
    ``instances``: an InstanceSet or a YAML path (default: the packaged set of ``version``: v1
    ``configs/instances_v1.yaml``, v0 ``configs/instances.yaml``);
    ``split``: 'train' or 'test'; ``interval_steps``: overrides ``env.interval_steps`` for this env
    (validated, >= 1; the shared InstanceSet is not changed); ``wall_time_info`` (default False): also
    put wall-clock seconds in ``info`` (``wall_time``, and ``seconds`` of a reprune or switch). Off by
    default so that ``info`` is deterministic, as gymnasium's ``check_env`` demands.

    ## Version History
    - v0: initial version (wall-clock seconds in ``info`` became opt-in with ``wall_time_info=True``).
    - v1: budgets as people set them (``budget_epochs``, or TFLOPs converted to whole decision
      intervals) and the LR schedule planned over the whole budget and advanced by FLOPs spent (stopping
      early stops mid-schedule); default instance set ``configs/instances_v1.yaml`` (SFT tasks, families).
      ``version=`` picks the dynamics; left out, the instance set's ``env.version`` does.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        instances: InstanceSet | str | None = None,
        split: str = "train",
        interval_steps: int | None = None,
        wall_time_info: bool = False,
        version: int | None = None,
    ):
        super().__init__()
        self.wall_time_info = wall_time_info
        if version is not None and version not in (0, 1):
            raise ConfigError(f"version: {version!r} is not a FineTune version; use 0 or 1.")
        if instances is None and version is not None:
            instances = str(default_instances_path(version))
        self.iset = instances if isinstance(instances, InstanceSet) else load_instances(instances)
        self.version = self.iset.env.version if version is None else version
        self.split = split
        self.pool = self.iset.split(split)
        self.ecfg = self.iset.env
        if interval_steps is not None:  # a validated copy: the InstanceSet may be shared by other envs
            self.ecfg = from_dict(
                EnvConfig, {**to_dict(self.ecfg), "interval_steps": interval_steps}, prefix="env."
            )
        self.targets = [Strategy.parse(s) for s in self.ecfg.switch_targets]
        # what each action does, as (kind, argument): step() dispatches on these, never on the names
        self.actions, self.action_names = action_table(self.targets)
        self.action_space = spaces.Discrete(len(self.action_names))
        self.observation_space = spaces.Box(LOW, HIGH, dtype=np.float32)
        self.run: Any = None
        self.instance: Instance | None = None
        self.tracker = SignalTracker()

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        name = options.get("instance")
        if name is not None and name not in {i.name for i in self.pool}:
            other = self.iset.get(name)  # an unknown name: ConfigError with the closest match
            raise ConfigError(
                f"reset: instance {other.name!r} is not in this env's {self.split!r} split; make the env with "
                f"split={'test' if self.split == 'train' else 'train'!r} to run it (held-out instances stay held out)."
            )
        instance = self.iset.get(name) if name else self.pool[int(self.np_random.integers(len(self.pool)))]
        self._build(instance, int(options.get("episode_seed", self.np_random.integers(2**31 - 1))))
        self.e0 = self.prev_eval = self.run.evaluate()
        self.tracker.reset(self.e0, 0.0)
        self.done = False
        obs = self.tracker.observe(self._reading(self.e0, None))
        self.log: dict[str, Any] = {"actions": [], "observations": [obs.tolist()], "rewards": []}
        return obs, self._info(error=None)

    def _build(self, instance: Instance, episode_seed: int) -> None:
        """A fresh run of (instance, episode seed), not yet evaluated (reset evaluates; restore overwrites)."""

        self.instance, self.episode_seed = instance, episode_seed
        cfg = self.iset.run_config(instance, episode_seed)
        self.budget, self.planned_steps = self._plan(cfg, instance)
        self.peaks = strategy_peaks(cfg, [t.name for t in self.targets] + [cfg.memory.strategy])
        schedule = [(ch.at, ch.cap_mb) for ch in instance.cap_schedule]
        fix = "Raise it (or set 0 for no cap), or add a smaller strategy to env.switch_targets."
        err = caps.room_error(f"instance {instance.name!r}", instance.cap_mb, schedule, self.peaks, fix)
        if err:
            raise ConfigError(err)
        self.run = FineTuneRun(cfg, workload=load_workload(cfg, progress=False), progress=False)
        self.t0 = time.perf_counter()

    def _plan(self, cfg: Any, instance: Instance) -> tuple[float, int | None]:
        """The episode's FLOP budget and (v1) the optimizer steps its LR schedule is planned over.

        A budget in epochs becomes steps = epochs × training examples / batch size, rounded to whole
        decision intervals (a budget in TFLOPs: the whole intervals it buys); in FLOPs it is those steps at the start strategy's measured cost (FlopCounterMode,
        ``envs.probe``) plus the initial eval and one eval per interval, so the fixed-budget run ends
        exactly on it. Under v1 the run's cosine (or linear) schedule is planned over those steps and
        advanced by training FLOPs (``optim.schedule_step_flops``), as the Trainer plans
        ``num_train_epochs``. ``cfg`` is changed in place (v1 only). Under v0 a budget in TFLOPs is
        used as given.
        """
        k = self.ecfg.interval_steps
        if instance.budget_epochs is None and self.version == 0:
            return instance.budget_tflops * 1e12, None
        step, ev, n_train = strategy_costs(cfg, cfg.memory.strategy)
        per_interval = k * step + ev
        if instance.budget_epochs is not None:
            intervals = max(1, round(instance.budget_epochs * n_train / cfg.optim.batch_size / k))
        else:
            intervals = max(1, int((instance.budget_tflops * 1e12 - ev) // per_interval))
        budget, steps = float(ev + intervals * per_interval), intervals * k
        if self.version == 1:
            cfg.optim.total_steps = steps
            cfg.optim.schedule_step_flops = float(step)
            cfg.optim.warmup_steps = min(cfg.optim.warmup_steps, steps // 10)
        return budget, steps

    # ------------------------------------------------------------------ masks
    def action_masks(self) -> np.ndarray:
        """Valid actions, in the form sb3-contrib's MaskablePPO expects (bool array)."""
        if self.run is None:
            return np.ones(self.action_space.n, dtype=bool)
        kept_after = self.run.kept_fraction * (1 - self.ecfg.reprune_fraction)
        reprune = not (
            kept_after < self.ecfg.min_kept_fraction
            or len(self.run.sampler.kept) * (1 - self.ecfg.reprune_fraction) < self.run.cfg.optim.batch_size
        )
        cap, now = self.run.cap_mb, self.run.strategy

        def switch(target: str) -> bool:
            t = Strategy.parse(target)
            return not (t == now or caps.over_cap(self.peaks.get(t.name, 0.0), cap))

        return action_mask(self.action_names, reprune=reprune, switch=switch)

    # ------------------------------------------------------------------ step
    def step(self, action: Any):
        if self.run is None or self.done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset().")
        a = taken = self._action_index(action)
        info_extra: dict[str, Any] = {}
        if not self.action_masks()[a]:
            info_extra["invalid_action"] = self.action_names[a]
            a = 0
        self.log["actions"].append(taken)
        kind, arg = self.actions[a]
        run, lam = self.run, self.instance.lam
        flops_before = run.flops_total
        error: str | None = None
        if kind == "stop":
            return self._finish(0.0, True, False, None, info_extra, stats=None)
        stats = None
        try:
            if kind == "reprune":
                info_extra["reprune"] = run.reprune(
                    self.ecfg.reprune_scorer, self.ecfg.reprune_fraction, arg, sample=self.ecfg.reprune_sample
                )
            elif kind == "switch":
                info_extra["switch"] = run.switch_strategy(arg)
            stats = run.advance(self.ecfg.interval_steps)
            if not stats.finite:
                error = f"diverged: non-finite training loss under {run.strategy} (lr too high for this instance?)"
            elif run.over_cap:
                error = f"oom: measured peak {run.last_memory.peak / 2**20:.1f} MiB above the {run.cap_mb:.0f} MiB cap under {run.strategy}"
            else:
                e = run.evaluate()
                if not math.isfinite(e):
                    error = "diverged: non-finite eval loss"
        except Exception as err:  # the calling process never dies from anything the run does
            kind = "oom" if isinstance(err, RunOOM) else "crash"
            error = f"{kind}: {type(err).__name__}: {err}"
        spent = (run.flops_total - flops_before) / self.budget
        if error is not None:
            penalty = self.ecfg.oom_penalty if error.startswith("oom") else self.ecfg.crash_penalty
            return self._finish(-penalty - lam * spent, True, False, error, info_extra, stats)
        reward = (self.prev_eval - e) / self.e0 - lam * spent
        frac = run.flops_total / self.budget
        # v1's fixed run lands on its budget exactly: a relative 1e-9 absorbs float rounding of the sum
        truncated = frac >= (1.0 - 1e-9 if self.version == 1 else 1.0)
        run.set_cap(self.instance.cap_at(frac))  # a co-located job arrives / leaves
        obs = self.tracker.observe(self._reading(e, stats))
        self.prev_eval = e
        self.log["observations"].append(obs.tolist())
        self.log["rewards"].append(float(reward))
        self.done = truncated
        info = self._info(None, stats, **info_extra)
        return obs, float(reward), False, truncated, info

    def _finish(
        self, reward: float, terminated: bool, truncated: bool, error: str | None, extra: dict, stats: Any
    ):
        self.done = True
        obs = np.asarray(self.log["observations"][-1], dtype=np.float32)
        self.log["observations"].append(obs.tolist())
        self.log["rewards"].append(float(reward))
        return obs, float(reward), terminated, truncated, self._info(error, stats, **extra)

    # ------------------------------------------------------------------ helpers
    def _action_index(self, action: Any) -> int:
        return action_index(action, int(self.action_space.n), self.action_names)

    def _reading(self, e: float, stats: Any) -> Reading:
        fallback = self.peaks.get(self.run.strategy.name, 0.0)  # before the first step: the probed peak
        return Reading.from_run(self.run, e, stats, self.budget, self.instance.lam, mem_fallback_mb=fallback)

    def _info(self, error: str | None, stats: Any = None, **extra: Any) -> dict[str, Any]:
        run = self.run
        info = {
            "instance": self.instance.name,
            "episode_seed": self.episode_seed,
            "eval_loss": self.prev_eval if stats is None else None,
            "e0": self.e0,
            "flops_used": run.flops_total,
            "flops": dict(run.flops),
            "budget": self.budget,
            "budget_frac": run.flops_total / self.budget,
            "strategy": run.strategy.name,
            "kept_fraction": run.kept_fraction,
            "memory_mb": {
                k: v
                for k, v in run.last_memory.as_mb().items()
                if k != "profile_peak" or run.last_memory.allocator
            },
            "cap_mb": run.cap_mb,
            "step": run.step,
            "action_mask": self.action_masks().tolist(),
        }
        if self.wall_time_info:
            info["wall_time"] = time.perf_counter() - self.t0
        else:
            for v in extra.values():
                if isinstance(v, dict):
                    v.pop("seconds", None)
        if stats is not None:
            info["train_loss"] = stats.train_loss
            info["eval_loss"] = self.tracker.prev_eval
        if error is not None:
            info["error"] = error
        info.update(extra)
        return info

    def snapshot(self) -> dict[str, Any]:
        """An in-memory fork point of the episode (CompilerGym's ``fork``): ``restore`` continues it exactly.

        Holds the run's snapshot (model, optimizer, schedule, RNG, data order), the signal tracker and
        the episode log; a few MB for the default workload.
        """

        if self.run is None:
            raise RuntimeError("snapshot() before reset(); call reset() first.")
        return {
            "instance": self.instance.name,
            "episode_seed": self.episode_seed,
            "run": self.run.snapshot(),
            "tracker": copy.deepcopy(self.tracker),
            "e0": self.e0,
            "prev_eval": self.prev_eval,
            "done": self.done,
            "log": copy.deepcopy(self.log),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Continue from ``snap``; steps after it are bit-identical to the episode it was taken from (CPU)."""

        if (
            self.run is None
            or self.instance.name != snap["instance"]
            or self.episode_seed != snap["episode_seed"]
        ):
            self._build(
                self.iset.get(snap["instance"]), snap["episode_seed"]
            )  # no initial eval: the snapshot has it
        self.run.restore(snap["run"])
        self.tracker = copy.deepcopy(snap["tracker"])
        self.e0, self.prev_eval, self.done = snap["e0"], snap["prev_eval"], snap["done"]
        self.log = copy.deepcopy(snap["log"])

    def fixed_final_eval(self) -> float:
        """The final eval loss of this episode's fixed-budget run (every action ``continue``; its last good eval).

        What the equal-quality objective compares with (envs/objective.py). Known for free when the
        episode itself was the fixed run; otherwise the fixed run is replayed from a reset of the same
        (instance, episode seed) — exact, since an episode is a function of them and its actions — and
        the episode's own state is restored after. Cached per (instance, episode seed).
        """
        if self.run is None:
            raise RuntimeError("fixed_final_eval() before reset(); call reset() first.")
        key = (self.instance.name, self.episode_seed)
        cache = self.__dict__.setdefault("_fixed_finals", {})
        if key in cache:
            return cache[key]
        if self.done and self.log["actions"] and not any(self.log["actions"]):
            cache[key] = float(self.prev_eval)  # this episode was the fixed run
            return cache[key]
        here = self.snapshot()
        self.reset(options={"instance": key[0], "episode_seed": key[1]})
        last = float(self.prev_eval)
        while True:
            _, _, term, trunc, info = self.step(0)
            e = info.get("eval_loss")
            if not info.get("error") and e is not None and math.isfinite(float(e)):
                last = float(e)
            if term or trunc:
                break
        self.restore(here)
        cache[key] = last
        return last

    def position(self) -> tuple[str, int, tuple[int, ...]] | None:
        """Where a live episode stands: (instance, episode seed, actions taken); None before reset or once it ended."""
        if self.run is None or self.done:
            return None
        return self.instance.name, self.episode_seed, tuple(self.log["actions"])

    def state(self) -> dict[str, Any]:
        """The episode as a small JSON-able state: (instance, seed, action log) + what it produced."""
        return {
            "format": STATE_FORMAT,
            "govgym_version": __version__,
            "env_id": f"govgym/FineTune-v{self.version}",
            "instances": self.iset.source,
            "split": self.split,
            "interval_steps": self.ecfg.interval_steps,
            "instance": self.instance.name,
            "episode_seed": self.episode_seed,
            "obs_spec": spec_hash(),
            "features": list(FEATURE_NAMES),
            **self.log,
        }
