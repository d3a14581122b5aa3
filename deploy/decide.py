"""What ``GovernorCallback`` does at each evaluation: the mask of what it can carry out, the observation,
the governor's (and its shield's) choice, the lever it pulls, and the decision's row.

A mixin of ``deploy/callback.GovernorCallback``, whose Trainer events gather what it reads (``logs``,
``flops``, ``lr``, the model and its ``args``) and call ``_decide`` on every ``on_evaluate``; kept apart so
that the callback holds the Trainer plumbing and this module the decision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.trainer_utils import IntervalStrategy

from govgym.agents.shield import Shielded
from govgym.deploy.observe import reading_from_trainer
from govgym.deploy.ranks import from_rank0
from govgym.deploy.report import decision_logs
from govgym.efficiency import noise
from govgym.efficiency.objective import with_tolerance
from govgym.efficiency.strategy import Strategy
from govgym.envs.actions import CONTINUE, STOP, action_mask, switch_target


class Decisions:
    """The decision half of ``GovernorCallback`` (module docstring); it reads the callback's attributes."""

    def action_masks(self) -> np.ndarray:
        """Actions this callback can carry out: continue, stop, switches that only toggle checkpointing, and
        reprunes inside a ``GovernedTrainer`` (while a batch and ``min_kept_fraction`` of the data would remain)."""
        now = Strategy.parse(self.strategy)

        def switch(target: str) -> bool:
            t = Strategy.parse(target)
            same_base = t.base == now.base or (
                self.trainer is not None and {t.base, now.base} <= set(self.trainer.switch_bases)
            )  # GovernedTrainer switches the base (full, lora, qlora, int8) in place
            ok = same_base and t.adam8 == now.adam8 and (t.base, t.gc) != (now.base, now.gc)
            return ok and self.mem.fits(t.name)  # the env's cap mask (virtual mode)

        reprune = self.trainer is not None and self.trainer.can_reprune(
            self.reprune_fraction, self.min_kept_fraction
        )
        return action_mask(self.action_names, reprune=reprune, switch=switch)

    def _decide(self, state: Any, control: Any, eval_loss: float) -> None:
        self._strategy = None  # read the model afresh at every decision
        mem, strategy = 0.0, self.strategy
        if self.device.type == "cuda":
            mem = torch.cuda.max_memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
        used = float(sum(self.flops.values()))
        # the env's order: the interval's OOM against the cap it ran under, then the next interval's cap
        first = not self.observer.started  # E_0: no interval ran, the cap stays cap_mb (the env's reset)
        interval_cap = self.mem.cap
        oom = None if first else self.mem.end_interval(strategy, used / self.budget)
        if self.mem.virtual:
            mem = self.mem.peak(strategy)
        gns = self._noise_scale()
        reading = reading_from_trainer(
            flops_used=used,
            budget=self.budget,
            eval_loss=eval_loss,
            logs=self.logs,
            peak_lr=self.args.learning_rate,
            batch_size=self.batch_size,
            mem_peak_mb=mem,
            cap_mb=self.mem.cap,
            strategy=strategy,
            lam=self.lam,
            kept_fraction=self.trainer.kept_fraction if self.trainer is not None else 1.0,
            grad_noise_scale=gns,
            lr=self.lr if self.logs else None,
        )
        self.logs = []
        obs = self.observer.observe(reading)
        if self.tolerance is not None:
            obs = with_tolerance(obs, self.tolerance)
        mask = self.action_masks()
        chosen: Any = None
        vetoed: str | None = None
        if oom is not None:
            name = "oom"  # the env ends the episode: the interval's state would not exist
        elif used >= self.budget:
            name = "truncated"  # the env ends the episode here without asking the governor
        else:
            action, _ = self.governor.predict(obs, action_masks=mask)
            a = int(np.asarray(action).reshape(-1)[0])
            if self.shielded and self.governor.last_fired.any():
                vetoed = STOP  # the governor chose stop; the shield made it continue
            valid = 0 <= a < len(self.action_names) and mask[a]
            # a masked action acts as continue (the env's rule)
            name = self.action_names[a] if valid else CONTINUE
            if not valid:
                chosen = self.action_names[a] if 0 <= a < len(self.action_names) else a
        name, chosen, oom, vetoed = from_rank0((name, chosen, oom, vetoed))  # rank 0 decides for every rank
        if name in (STOP, "truncated", "oom"):
            control.should_training_stop = True
            if self.args.save_strategy != IntervalStrategy.NO:
                control.should_save = name != "oom"  # an over-cap state is never saved (nor the best)
            self.ended = name
        event = None
        target = switch_target(name)
        if target is not None:
            self._gns = None  # the env's rule: a new strategy starts the noise-scale average over
            t = Strategy.parse(target)
            if t.base != Strategy.parse(reading.strategy).base:  # full <-> lora: GovernedTrainer's lever
                event = self.trainer.switch_base(t.base)
            self._toggle_gc(t.gc)
        elif name.startswith("reprune_"):
            event = self.trainer.reprune(self.reprune_fraction, name.split("_", 1)[1])
        row = {
            "step": state.global_step,
            "flops_used": used,
            "budget_frac": used / self.budget,
            "eval_loss": eval_loss,
            "train_loss": reading.train_loss,
            "action": name,
            "strategy": reading.strategy,
            "grad_noise_scale": gns,
            "mem_peak_mb": mem,
            "cap_mb": self.mem.cap,  # in force from here on (what the governor saw)
            "interval_cap_mb": None if first else interval_cap,  # the interval just run was under it
            "obs": [float(x) for x in obs],
            "mask": [bool(m) for m in mask],
        }
        if chosen is not None:
            row["invalid_action"] = chosen
        if self.shielded:  # the shield's vetoes so far (this one included)
            if vetoed is not None:
                row["shield"] = vetoed
            row["shield_fired"] = self.shield_fired + (vetoed is not None)
        if oom is not None:
            row["error"] = oom
        if event is not None:
            row["trainer_event"] = {k: v for k, v in event.items() if k != "step"}
        self.decisions.append(row)
        self.report.log(state, decision_logs(row, self.action_names))  # log_history + report_to integrations
        self._write(state)

    @property
    def shielded(self) -> bool:
        """Whether the governor runs behind the shield (``shield=True`` and a learned governor)."""
        return isinstance(self.governor, Shielded)

    @property
    def shield_fired(self) -> int:
        """How often the shield turned the governor's stop into continue in this run (from the decision log)."""
        return sum("shield" in d for d in self.decisions)

    def _noise_scale(self) -> float:
        """B_simple from the interval GovernedTrainer recorded, averaged as the env does (nan: not available).

        ``FineTuneRun.advance``: ``noise_estimates`` from the steps' mean |g|² (batch B) and the squared norm
        of their mean (batch n·B), an EMA (0.5) of |G|² and tr Σ separately, then their ratio. A plain
        Trainer gives no pre-clip gradients to a callback: nan there (the feature reads 0).
        """
        iv = self.trainer.take_noise_interval() if self.trainer is not None else None
        if iv is None:
            return float("nan")
        small, big, n = iv
        g2, trace = noise.noise_estimates(small, big, self.batch_size, n * self.batch_size)
        self._gns = noise.average(self._gns, g2, trace)  # efficiency/noise.py: the env's EMA, shared
        return noise.averaged_scale(self._gns)

    def _toggle_gc(self, on: bool) -> None:
        if on:
            kw = self.args.gradient_checkpointing_kwargs or {"use_reentrant": False}
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
        else:
            self.model.gradient_checkpointing_disable()
        self._strategy = None
        self._measure_step()  # a step under the new strategy costs differently (counted as measuring)


__all__ = ["Decisions"]
