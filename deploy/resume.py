"""A ``GovernorCallback``'s state through Trainer checkpoints: save, find, restore, replay (JSON only).

Every checkpoint holds the callback's state (transformers' ``ExportableState``, JSON in
``trainer_state.json``: the ``SignalTracker``'s, FLOP counts and budget, pending logs, the decision log
with each decision's observation and mask, the noise-scale average, the memory cap in force).
``train(resume_from_checkpoint=...)`` restores it at ``on_train_begin``; the governor's own state (a
heuristic's counters) is rebuilt by replaying the logged observations, and a governor that does not choose
the logged actions is refused. ``CheckpointedGovernor`` is the part of ``GovernorCallback`` that does this
(a mixin: it reads and sets the callback's run attributes, listed in ``GovernorCallback._reset_run``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers.trainer_callback import ExportableState

from govgym.deploy.state import FORMAT, from_json, to_json
from govgym.efficiency.strategy import Strategy
from govgym.errors import ConfigError

TRACKER_FIELDS = ("e0", "prev_eval", "best", "prev_flops", "g0", "ema", "since_best")  # SignalTracker's state


class CheckpointedGovernor(ExportableState):
    """``ExportableState`` for ``GovernorCallback``: ``state()`` to save, ``_saved_state``/``_restore`` to resume."""

    # the callback's attributes this mixin uses (set in GovernorCallback.__init__ / _reset_run)
    observer: Any
    governor: Any
    action_names: list[str]
    decisions: list[dict[str, Any]]

    def state(self) -> dict[str, Any]:
        """``ExportableState``: constructor arguments and the run's state, JSON only (``trainer_state.json``)."""
        args = {
            "governor": self._governor_ref,
            self.budget_kind: self.budget_value,
            "lam": self.lam,
            "cap_mb": self.cap_mb,
            "interval_steps": self.k,
            "log_path": str(self.log_path) if self.log_path is not None else None,
            "reprune_fraction": self.reprune_fraction,
            "min_kept_fraction": self.min_kept_fraction,
            "cap_schedule": self.cap_schedule,
            "memory_peaks": self.memory_peaks,
            "tolerance": self.tolerance,
            "shield": self.shield,
            "shield_k": self.shield_k,
        }
        saved: dict[str, Any] = {"format": FORMAT, "started": self._started}
        if self._started:
            t = self.observer.tracker
            saved.update(
                global_step=self._step,
                observer_started=self.observer.started,
                tracker={k: getattr(t, k) for k in TRACKER_FIELDS},
                budget=self.budget,
                steps_budget=getattr(self, "steps_budget", None),
                flops=self.flops,
                flops_restart=self.flops_restart,
                step_flops=self.step_flops,
                eval_flops=self.eval_flops,
                logs=self.logs,
                lr=self.lr,
                decisions=self.decisions,
                ended=self.ended,
                notes=self.notes,
                gns=self._gns,
                strategy=self.strategy,
                cap_in_force=self.mem.cap,
            )
        return to_json({"args": args, "attributes": {"saved": saved}})

    def _saved_state(self, state: Any) -> dict[str, Any] | None:
        """This callback's entry in a resumed TrainerState (None: not a resume of a governed run)."""
        entry = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        entries = entry if isinstance(entry, list) else [entry] if entry else []
        mine = self.state()["args"]
        matching = [e for e in entries if e.get("args") == mine] or (entries if len(entries) == 1 else [])
        for e in matching:
            saved = from_json(e.get("attributes", {}).get("saved") or {})
            if saved.get("started") and saved.get("global_step") == state.global_step > 0:
                return saved
        return None

    def _restore(self, saved: dict[str, Any]) -> None:
        self.observer.started = bool(saved["observer_started"])
        for k, v in saved["tracker"].items():
            setattr(self.observer.tracker, k, v)
        self.budget, self.flops = saved["budget"], dict(saved["flops"])
        if saved["steps_budget"] is not None:
            self.steps_budget = int(saved["steps_budget"])
        self.flops_restart = saved["flops_restart"]
        self.step_flops, self.eval_flops = dict(saved["step_flops"]), saved["eval_flops"]
        self.logs, self.lr, self.ended = list(saved["logs"]), saved["lr"], saved["ended"]
        self.decisions, self.notes = list(saved["decisions"]), list(saved["notes"])
        self._gns = saved["gns"]
        self.mem.cap = float(saved["cap_in_force"])
        self._step = self._resumed_at = int(saved["global_step"])
        self._replay()
        if self.ended:  # e.g. the checkpoint a stop saved: the user chose to go on
            self._note(
                f"resumed at step {self._step} from a checkpoint saved after the governor ended the run "
                f"({self.ended}); training goes on to the Trainer's own end, ungoverned"
            )
        want = Strategy.parse(saved["strategy"])
        if want.gc != Strategy.parse(self.strategy).gc:  # a switch toggled checkpointing before the save
            self._toggle_gc(want.gc)

    def _replay(self) -> None:
        """Rebuild the governor's own state (a heuristic's counters) by replaying the logged decisions."""
        for row in self.decisions:
            if row["action"] in ("truncated", "oom"):
                continue  # the governor was not asked
            action, _ = self.governor.predict(
                np.asarray(row["obs"], dtype=np.float32), action_masks=np.asarray(row["mask"], dtype=bool)
            )
            a = int(np.asarray(action).reshape(-1)[0])
            got = self.action_names[a] if 0 <= a < len(self.action_names) else a
            if got != row.get("invalid_action", row["action"]):
                raise ConfigError(
                    f"GovernorCallback: resuming, the governor chose {got!r} on the observation of step "
                    f"{row['step']} where the checkpoint's decision log says {row['action']!r}: the checkpoint was "
                    f"made with another governor (or other knobs). Resume with the governor that ran before "
                    f"({self.log_path or 'see the decision log'})."
                )


__all__ = ["TRACKER_FIELDS", "CheckpointedGovernor"]
