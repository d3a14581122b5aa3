"""The JSON decision log a ``GovernorCallback`` writes, rewritten atomically after every decision.

One file per run (``log_path``): what governed it (governor, action names, K, λ, the cap and its schedule,
the budget), what it cost (FLOPs per step, per evaluation, by kind), how it ended, and one row per decision
(step, FLOPs and budget fraction used, losses, the action, the strategy, the noise scale, memory and cap,
the observation and the mask the governor saw; an OOM's error; the trainer's lever event). ``DecisionLog``
is the part of ``GovernorCallback`` that writes it (a mixin over the callback's attributes).
"""

from __future__ import annotations

from typing import Any

from govgym import __version__
from govgym.efficiency.signals import FEATURE_NAMES, spec_hash
from govgym.results import write_json

LOG_FORMAT = 1
"""Format of the decision log (``format`` in the file)."""


class DecisionLog:
    """Writes ``GovernorCallback``'s decision log; ``oom_steps`` reads it."""

    decisions: list[dict[str, Any]]

    @property
    def oom_steps(self) -> list[int]:
        """Steps at whose decision the interval just run was over the cap (virtual mode; at most one: it ends the run)."""
        return [int(d["step"]) for d in self.decisions if str(d.get("error", "")).startswith("oom")]

    def _write(self, state: Any) -> None:
        if self.log_path is None or not getattr(state, "is_world_process_zero", True):
            return  # several processes: rank 0 writes the one log (every rank took its decisions)
        write_json(
            self.log_path,
            {
                "format": LOG_FORMAT,
                "govgym": __version__,
                "spec_hash": spec_hash(),
                "features": list(FEATURE_NAMES),
                "governor": type(self.governor.policy if self.shielded else self.governor).__name__,
                "action_names": self.action_names,
                "interval_steps": self.k,
                "lam": self.lam,
                "objective": "price" if self.tolerance is None else "equal_quality",
                "tolerance": self.tolerance,
                "cap_mb": self.cap_mb,
                "cap_schedule": self.cap_schedule,
                "memory_peaks": self.memory_peaks,
                "oom_steps": self.oom_steps,
                # the shield (govgym.agents.shield): on when it wraps this (learned) governor
                "shield": {"on": self.shielded, "k": self.shield_k, "fired": self.shield_fired},
                "budget": {"kind": self.budget_kind, "value": self.budget_value, "flops": self.budget},
                "step_flops": self.step_flops,
                "eval_flops": self.eval_flops,
                "flops": self.flops,
                "flops_restart": self.flops_restart,
                "notes": self.notes,
                "ended": self.ended,
                "global_step": state.global_step,
                "decisions": self.decisions,
                # GovernedTrainer's reprunes and switches, the governor's and any others (its levers)
                "trainer_events": list(self.trainer.events) if self.trainer is not None else [],
            },
        )


__all__ = ["LOG_FORMAT", "DecisionLog"]
