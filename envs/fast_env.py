"""FineTuneFastEnv (``govgym/FineTuneFast-v1``): FineTune-v1's spaces, masks, reward and episode end over a
model fitted from recorded real runs (envs/fastmodel.py) instead of a live run: numpy per step, thousands of steps a second."""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from govgym.efficiency import caps
from govgym.efficiency.signals import HIGH, LOW, Reading, SignalTracker
from govgym.efficiency.strategy import Strategy
from govgym.envs.actions import action_index, action_mask, action_table
from govgym.envs.fast_mechanics import Plan, advance, apply_lever, lever_flops, plan_of
from govgym.envs.fastmodel import (
    INPUTS,
    FastModel,
    RunState,
    Static,
    base_key,
    default_model_path,
    load_model,
)
from govgym.envs.instances import InstanceSet, default_instances_path, load_instances
from govgym.typed import ConfigError


class FineTuneFastEnv(gym.Env):
    """Govern a fine-tuning run simulated by a model fitted from real runs: FineTune-v1's interface, ~10^4x faster.

    ## Description
    The same episode as ``govgym/FineTune-v1`` (one fine-tuning run of one instance; a step is one decision
    interval of K optimizer steps and an evaluation), driven by a ``FastModel`` (envs/fastmodel.py) instead
    of a live run: budgets, FLOPs per strategy, the LR schedule, memory peaks, the cap schedule and OOMs
    are its mechanics (measured constants and the real env's rules); the eval loss and gradient figures
    come from its learned dynamics, sampled with their fitted noise (``noise=True``) or at their mean.
    Observations go through the same ``SignalTracker`` as the real env and the deployment callback.

    ## Action Space
    ``Discrete(4 + S)`` with the instance set's ``env.switch_targets``: continue, reprune_hardest,
    reprune_easiest, one switch per target, stop; ``action_masks()`` as FineTune-v1's (no switch to the
    strategy in force or to one whose measured peak exceeds the cap; no reprune below
    ``env.min_kept_fraction`` or below one batch). A masked action acts as continue
    (``info["invalid_action"]``).

    ## Observation Space
    ``Box(LOW, HIGH, (20,), float32)``: the features of ``govgym.efficiency.signals``.

    ## Rewards
    As FineTune-v1: (E_{t−1} − E_t)/E_0 − λ·(FLOPs of the step)/budget; an OOM: −env.oom_penalty − λ·(FLOPs).

    ## Starting State
    An instance of ``split`` (or, with probability ``randomize``, a random instance drawn around the
    families: task, examples, noise rate and kinds, epochs, λ, a falling cap), evaluated once.
    ``options={"instance": name, "episode_seed": s}`` picks one; the episode's noise is seeded by
    (instance seed, episode seed).

    ## Episode End
    Terminated: stop, or an OOM (the strategy's measured peak above the cap in force). Truncated: the FLOP
    budget is spent.

    ## Arguments
    ``instances`` (default: the packaged FineTune-v1 set), ``split``, ``model`` (a fast model file or a
    ``FastModel``; default: the packaged ``configs/fast_v1.json``), ``noise`` (sample the dynamics' noise),
    ``randomize`` (probability of a random instance per episode, training only), ``penalty`` (MOPO-style
    pessimism: the reward minus ``penalty`` x the ensemble's disagreement, ``info["disagreement"]``, the
    members' standard deviation of the predicted eval change; 0 = the reward above).

    ## Version History
    - v1: initial version, with FineTune-v1's spaces and rules.
    - v1, fast model format 2 (issue 18): models that declare v2's task- and base-free inputs, mechanics of
      every split (FineTune-v2's held-out tasks and bases), ensembles (``info["disagreement"]``, ``penalty``).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        instances: InstanceSet | str | None = None,
        split: str = "train",
        model: FastModel | str | None = None,
        noise: bool = True,
        randomize: float = 0.0,
        penalty: float = 0.0,
    ):
        super().__init__()
        self.iset = (
            instances
            if isinstance(instances, InstanceSet)
            else load_instances(instances or default_instances_path(1))
        )
        self.fm = model if isinstance(model, FastModel) else load_model(model or default_model_path())
        if self.iset.env.version != 1:
            raise ConfigError(
                f"instances: {self.iset.source} is a FineTune-v{self.iset.env.version} set (env.version); the fast "
                "backend models FineTune-v1's dynamics (budget-planned schedule). Use a v1 set (env.version: 1)."
            )
        fitted = self.fm.mechanics.get("base_key")
        if fitted is not None and fitted != base_key(self.iset):
            raise ConfigError(
                f"fast model: fitted on {self.fm.provenance.get('instance_set', 'another instance set')}, whose shared "
                f"run/env settings (base model, sequence length, batch, LoRA, K, switch targets) differ from those of "
                f"{self.iset.source}; its measured FLOPs and peaks would be wrong here. Fit one for this set: "
                f"`govgym fit-fast instances={self.iset.source}`."
            )
        if not (isinstance(randomize, (int, float)) and 0.0 <= randomize <= 1.0):
            raise ConfigError(f"randomize: must be a probability in [0, 1]; got {randomize!r}.")
        if not (
            isinstance(penalty, numbers.Real) and not isinstance(penalty, bool) and 0.0 <= penalty < math.inf
        ):
            raise ConfigError(
                f"penalty: must be a finite number >= 0 (reward - penalty x the ensemble's disagreement); got {penalty!r}."
            )
        self.noise, self.randomize, self.split = bool(noise), float(randomize), split
        self.penalty = float(penalty)
        self.disagreement = 0.0
        self.ecfg = self.iset.env
        self.pool = self.iset.split(split)
        self.plans = {i.name: plan_of(self.fm, self.iset, i) for i in self.pool}
        self.targets = [Strategy.parse(s).name for s in self.ecfg.switch_targets]
        self.actions, self.action_names = action_table(self.targets)
        self.action_space = spaces.Discrete(len(self.action_names))
        self.observation_space = spaces.Box(LOW, HIGH, dtype=np.float32)
        self.tracker = SignalTracker()
        self.plan: Plan | None = None
        self.done = True

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        name = options.get("instance")
        if name is not None and name not in self.plans:
            other = self.iset.get(name)  # unknown: ConfigError with the closest match
            raise ConfigError(
                f"reset: instance {other.name!r} is not in this env's {self.split!r} split; make the env with "
                f"split={'test' if self.split == 'train' else 'train'!r} to run it."
            )
        ep_seed = int(options.get("episode_seed", self.np_random.integers(2**31 - 1)))
        if name is None and self.randomize > 0 and self.np_random.random() < self.randomize:
            self.plan = self._random_plan()
        else:
            if name is None:
                name = self.pool[int(self.np_random.integers(len(self.pool)))].name
            self.plan = self.plans[name]
        inst_seed = sum(ord(c) * 31**i for i, c in enumerate(self.plan.name)) % 2**31
        self.rng = np.random.default_rng([inst_seed, ep_seed])
        self.episode_seed = ep_seed
        self.scale = (
            float(self.fm.mechanics["noise"]["dy_scale_sd"] * self.rng.standard_normal())
            if self.noise
            else 0.0
        )
        p = self.plan
        if p.family != "random":  # the real env's reset check (efficiency/caps.py): a cap with no room
            peaks = {t: self.fm.peak_mb(p.static.cost_key, t) for t in {*self.targets, p.start}}
            fix = "Raise it (or set 0 for no cap), or add a smaller strategy to env.switch_targets."
            err = caps.room_error(f"instance {p.name!r}", p.cap_mb, p.cap_schedule, peaks, fix)
            if err:
                self.plan = None
                raise ConfigError(err)
        _, ev = self.fm.costs(p.static.cost_key, p.start)
        self.flops = ev
        self.state = RunState(strategy=p.start)
        self.cap = p.cap_mb
        self.done = False
        self.disagreement = 0.0
        self.tracker.reset(p.e0, 0.0)
        self.eval_loss, self.train_loss = p.e0, p.e0
        obs = self.tracker.observe(self._reading(None))
        self.last_obs = obs
        self._at_reset = {k: copy.deepcopy(getattr(self, k)) for k in self._RESET_FIELDS}
        return obs, self._info()

    _RESET_FIELDS = (
        "rng",
        "scale",
        "flops",
        "state",
        "cap",
        "tracker",
        "eval_loss",
        "train_loss",
        "last_obs",
        "done",
    )

    def fixed_final_eval(self) -> float:
        """This episode's fixed-budget run (every action continue) re-simulated from its reset state with the
        same random stream: its final eval loss (the equal-quality objective's reference)."""
        if self.plan is None or not hasattr(self, "_at_reset"):
            raise RuntimeError("fixed_final_eval() before reset(); call reset() first.")
        here = {k: copy.deepcopy(getattr(self, k)) for k in self._RESET_FIELDS}
        for k, v in self._at_reset.items():
            setattr(self, k, copy.deepcopy(v))
        last = self.eval_loss
        while not self.done:
            _, _, term, trunc, info = self.step(0)
            if not info.get("error"):
                last = float(info["eval_loss"])
            if term or trunc:
                break
        for k, v in here.items():
            setattr(self, k, v)
        return float(last)

    def _random_plan(self) -> Plan:
        """A random instance around the families (domain randomization); mechanics as a real one's."""
        r = self.np_random
        base = self.plans[self.pool[int(r.integers(len(self.pool)))].name]
        task = ("doc2code", "code2doc")[int(r.integers(2))]
        n = int(r.choice([300, 400, 500, 600, 800, 1000, 1200, 1400, 1600]))
        noisy = r.random() < 0.5
        rate = float(r.choice([0.2, 0.3, 0.4, 0.5])) if noisy else 0.0
        kinds = r.choice(["shuffle", "corrupt", "duplicate", "mixed"])
        share = (
            (1 / 3, 1 / 3, 1 / 3)
            if kinds == "mixed"
            else tuple(float(kinds == k) for k in ("shuffle", "corrupt", "duplicate"))
        )
        epochs = float(np.clip(r.uniform(0.8, 1.5) * 1500 / n, 1.0, 6.0))
        capped = r.random() < 0.35
        intervals = max(1, round(epochs * n / base.static.batch / base.k))
        steps = intervals * base.k
        caps_mb = (75.0, 45.0)  # v1's base: between full's and LoRA+gc's measured peaks
        if self.fm.inputs == INPUTS:
            step, ev = self.fm.costs(task, "full")
            st = Static(
                task_c2d=float(task == "code2doc"),
                examples=n,
                batch=base.static.batch,
                noise_rate=rate,
                kinds=share,  # type: ignore[arg-type]
                budget_epochs=epochs,
                task=task,
            )
            e0 = self.fm.e0(task)
        else:  # v2 inputs: the drawn instance keeps the base instance's task and workload (and E_0)
            task = base.static.task
            st = replace(base.static, examples=n, noise_rate=rate, kinds=share, budget_epochs=epochs)
            step, ev = self.fm.costs(st.cost_key, "full")
            e0 = st.e0
            peaks = [self.fm.peak_mb(st.cost_key, t) for t in self.targets]
            caps_mb = (1.1 * self.fm.peak_mb(st.cost_key, "full"), 1.1 * min(peaks))  # full fits, then less
        return replace(
            base,
            name=f"random-{task}-n{n}-{int(r.integers(1 << 30))}",
            family="random",
            static=st,
            intervals=intervals,
            total_steps=steps,
            warmup=min(base.warmup or 10, steps // 10),
            start="full",
            budget=ev + intervals * (base.k * step + ev),
            lam=float(r.choice([0.05, 0.1, 0.2, 0.5])),
            cap_mb=caps_mb[0] if capped else 0.0,
            cap_schedule=((float(r.uniform(0.3, 0.5)), caps_mb[1]),) if capped else (),
            e0=e0,
        )

    # ------------------------------------------------------------------ masks
    def action_masks(self) -> np.ndarray:
        if self.plan is None:
            return np.ones(self.action_space.n, dtype=bool)
        s, p, f = self.state, self.plan, self.ecfg.reprune_fraction
        n_kept = round(p.static.examples * s.kept)
        reprune = not (s.kept * (1 - f) < self.ecfg.min_kept_fraction or n_kept * (1 - f) < p.static.batch)

        def switch(t: str) -> bool:
            return not (t == s.strategy or caps.over_cap(self.fm.peak_mb(p.static.cost_key, t), self.cap))

        return action_mask(self.action_names, reprune=reprune, switch=switch)

    # ------------------------------------------------------------------ step
    def step(self, action: Any):
        if self.plan is None or self.done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset().")
        a = action_index(action, int(self.action_space.n), self.action_names)
        extra: dict[str, Any] = {}
        if not self.action_masks()[a]:
            extra["invalid_action"] = self.action_names[a]
            a = 0
        kind, arg = self.actions[a]
        p = self.plan
        if kind == "stop":
            return self._end(0.0, True, False, None, extra)
        before = self.state
        score_fl = lever_flops(self.fm, p, before, kind, self.ecfg.reprune_fraction)
        lever = apply_lever(before, kind, arg, self.ecfg.reprune_fraction)
        after, train_fl, ev_fl, lr0, lr1 = advance(self.fm, p, lever)
        train_fl += score_fl
        if caps.over_cap(self.fm.peak_mb(p.static.cost_key, after.strategy), self.cap):
            self.state = after
            spent = train_fl / p.budget
            self.flops += train_fl
            err = f"oom: measured peak {self.fm.peak_mb(p.static.cost_key, after.strategy):.1f} MiB above the {self.cap:.0f} MiB cap under {after.strategy}"
            return self._end(-self.ecfg.oom_penalty - p.lam * spent, True, False, err, extra)
        act = self.action_names[a]
        x = self.fm.features(p.static, before, after, lr0, lr1, act)
        mean = self.fm.predict(x)
        self.disagreement = float(self.fm.disagreement(x))
        out = self.fm.sample(mean, self.scale, self.rng) if self.noise else mean
        dy, gap, lg, cv, ns = (float(v) for v in out)
        y = max(before.eval_ratio + dy, 0.05)
        after.eval_ratio, after.best_ratio = y, min(before.best_ratio, y)
        self.state = after
        self.flops += train_fl + ev_fl
        spent = (train_fl + ev_fl) / p.budget
        reward = (before.eval_ratio - y) - p.lam * spent
        if self.penalty:  # MOPO: pessimism where the ensemble's members disagree (0 = FineTune-v1's reward)
            reward -= self.penalty * self.disagreement
        frac = self.flops / p.budget
        truncated = frac >= 1.0 - 1e-9
        self.eval_loss, self.train_loss = p.e0 * y, p.e0 * (y - gap)
        first = after.steps == p.k
        self._stats = (1.0 if first else math.exp(lg), max(cv, 0.0), ns, lr1)
        self.cap = p.cap_at(frac)
        obs = self.tracker.observe(self._reading(self._stats))
        self.last_obs = obs
        self.done = truncated
        return obs, float(reward), False, truncated, {**self._info(), **extra}

    def _end(self, reward: float, terminated: bool, truncated: bool, error: str | None, extra: dict):
        self.done = True
        info = {**self._info(), **extra}
        if error is not None:
            info["error"] = error
        return self.last_obs.copy(), float(reward), terminated, truncated, info

    # ------------------------------------------------------------------ helpers
    def _reading(self, stats: tuple[float, float, float, float] | None) -> Reading:
        p, s = self.plan, self.state
        gn, cv, ns, lr = stats if stats is not None else (0.0, 0.0, float("nan"), 0.0)
        return Reading(
            flops_used=self.flops,
            budget=p.budget,
            eval_loss=self.eval_loss,
            train_loss=self.train_loss,
            grad_norm=gn,
            grad_norm_std=cv * gn,
            grad_noise_scale=math.exp(min(ns, 10.0)) * p.static.batch if ns > 0.05 else float("nan"),
            batch_size=p.static.batch,
            mem_peak_mb=self.fm.peak_mb(p.static.cost_key, s.strategy),
            cap_mb=self.cap,
            strategy=s.strategy,
            kept_fraction=s.kept,
            lr_frac=lr,
            lam=p.lam,
        )

    def _info(self) -> dict[str, Any]:
        p, s = self.plan, self.state
        return {
            "instance": p.name,
            "family": p.family,
            "episode_seed": self.episode_seed,
            "eval_loss": self.eval_loss,
            "train_loss": self.train_loss,
            "e0": p.e0,
            "flops_used": self.flops,
            "budget": p.budget,
            "budget_frac": self.flops / p.budget,
            "strategy": s.strategy,
            "kept_fraction": s.kept,
            "cap_mb": self.cap,
            "step": s.steps,
            "action_mask": self.action_masks().tolist(),
            "disagreement": self.disagreement,
        }


__all__ = ["FineTuneFastEnv", "Plan", "advance", "apply_lever", "lever_flops", "plan_of"]
