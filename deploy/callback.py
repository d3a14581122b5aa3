"""``GovernorCallback``: a governor steering any Hugging Face ``Trainer`` run from a ``TrainerCallback``.

Add it to a Trainer and nothing else in the script changes::

    from govgym.agents.heuristics import make_policy
    from govgym.deploy.callback import GovernorCallback

    gov = make_policy("marginal_gain", ["continue", "stop"])
    trainer = Trainer(model, args, train_dataset=train, eval_dataset=held_out,
                      callbacks=[GovernorCallback(gov, budget_epochs=3, interval_steps=20, log_path="decisions.json")])
    trainer.train()

What it reads from the Trainer, and how (the observation is the env's, built by the same
``SignalTracker`` from a ``Reading``; ``reading_from_trainer``, in ``deploy/observe.py``, is the one
mapping, tested for parity with the env):

- **train loss, grad norm**: the ``on_log`` records (``loss``, ``grad_norm``) since the last
  decision. The env's grad-norm mean and spread are over every step, so the callback sets
  ``logging_steps=1`` unless the user's ``logging_steps`` already divides K (then the loss is the
  same mean and the spread is over the logged steps). Older transformers log ``grad_norm`` only
  when ``max_grad_norm > 0``; without it the grad-norm features read 0.
- **gradient noise scale**: needs the per-step gradients before clipping, which no callback event
  sees: in a plain Trainer ``log_noise_scale`` reads 0. Inside a ``GovernedTrainer`` (which sums them)
  it is the env's estimate (``_noise_scale``).
- **LR**: the optimizer's, read at ``on_step_end`` (after the scheduler's step, where the env reads
  it; the logged ``learning_rate`` is the one before), over ``args.learning_rate``.
- **eval loss**: ``eval_loss`` of ``on_evaluate``. The callback turns on ``eval_on_start`` (E_0, the
  reference of every loss feature, and the first decision, as at the env's reset) and
  ``eval_strategy="steps"`` with ``eval_steps=K`` when evaluation is off; an ``eval_steps`` that
  does not divide K, or evaluation per epoch, is a ``ConfigError``. The Trainer needs an
  ``eval_dataset`` whose rows have labels.
- **FLOPs**: never ``state.total_flos`` (its 6·N·D is wrong for LoRA and checkpointing). One
  forward + backward on a real batch of the Trainer's train dataset (the first per-device batch,
  collated by the Trainer's collator; RNG state saved and restored, gradients cleared) is counted by
  ``FlopCounterMode`` at ``on_train_begin`` (× gradient-accumulation steps = one optimizer step;
  re-measured when a switch toggles checkpointing). The first evaluation (``eval_on_start``) runs
  under ``FlopCounterMode`` too; each later evaluation costs that. FLOPs used = the measuring pass +
  steps × step FLOPs + evaluations × eval FLOPs, the env's accounting (per process).
- **memory**: with ``memory_peaks`` (each strategy's peak, measured on this model by
  ``envs.probe.strategy_peaks`` / ``efficiency.memstats``) the env's virtual cap, on any device
  (``deploy/memory.py``): the peak is that of the strategy in force, the cap follows ``cap_schedule``
  by budget fraction used, switches to a strategy above the cap are masked and an interval over the
  cap ends training as an OOM. Without it: ``torch.cuda.max_memory_allocated`` over the interval on
  CUDA (the cap and its schedule are observed, not enforced); on CPU nothing is measured, so the cap
  must be 0 there.
- **strategy**: LoRA when the model has ``peft_config`` (PEFT), QLoRA / int8 from a 4-bit / 8-bit
  base, ``+gc`` from ``model.is_activation_checkpointing``, ``+adam8`` from an 8-bit ``optim``; read
  at each decision and after each switch, not per step (it walks every module). Data kept is 1.0 (the
  callback does not prune).

Actions: ``stop`` sets ``control.should_training_stop`` (and ``should_save`` when the run saves
checkpoints, so the state at the stop is kept; with ``load_best_model_at_end`` the Trainer then
loads the best checkpoint, as with ``EarlyStoppingCallback``); an OOM (virtual cap) ends training
the same way but never saves the over-cap state nor lets it rank as the best (its metric reads nan to
the Trainer; the log keeps its value); ``continue`` does nothing; a switch
that only toggles gradient checkpointing (``switch:lora+gc`` on a LoRA run) calls
``gradient_checkpointing_enable/disable`` in place. ``reprune_hardest`` / ``reprune_easiest`` need
``GovernedTrainer`` (``govgym.deploy.trainer``), which sets ``callback.trainer``: inside one they drop
``reprune_fraction`` of the kept data (masked, as in the env, when fewer than a batch or
``min_kept_fraction`` of the data would remain), and switches of the base (full, LoRA, QLoRA, int8:
``switch:lora``, ``switch:qlora+gc`` ...) change the model in place with the optimizer rebuilt. In a
plain Trainer these are masked out of ``predict(obs, action_masks=...)``. The budget ends training at
the first decision where it is spent (the env's truncation). Every decision goes through the Trainer's
``log`` (``state.log_history`` and every ``report_to`` integration: ``governor/...`` keys,
``deploy/report.py``) and, atomically rewritten, to the JSON decision log.

Resuming from a Trainer checkpoint restores all of it (``GovernorCallback.state``: transformers'
``ExportableState``; see the class docstring).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from govgym.agents.shield import DEFAULT_K
from govgym.agents.shield import shield as shield_policy
from govgym.deploy.arguments import check_budget, check_k, check_number, check_shield, resolve_governor
from govgym.deploy.decide import Decisions
from govgym.deploy.decision_log import LOG_FORMAT as LOG_FORMAT  # re-exported
from govgym.deploy.decision_log import DecisionLog
from govgym.deploy.ledger import EvalMeter, flop_budget, measure_step, steps_of_budget
from govgym.deploy.levers import Levers
from govgym.deploy.memory import MemoryCap, check_cap_schedule, check_memory_peaks
from govgym.deploy.observe import Observer, model_strategy, probe_batch
from govgym.deploy.observe import reading_from_trainer as reading_from_trainer  # re-exported
from govgym.deploy.ranks import from_rank0, rank_and_world
from govgym.deploy.report import TrainerLog
from govgym.deploy.resume import CheckpointedGovernor
from govgym.deploy.trainer_args import adjust_training_args
from govgym.efficiency.objective import Objective
from govgym.errors import ConfigError


class GovernorCallback(TrainerCallback, Decisions, CheckpointedGovernor, DecisionLog):
    """Steer a Trainer run with a governor every K optimizer steps (see the module docstring).

    Resuming: every checkpoint holds the callback's state (``ExportableState``, JSON in
    ``trainer_state.json``: the ``SignalTracker``'s, FLOP counts and budget, pending logs, the decision
    log with each decision's observation and mask, the noise-scale average, the memory cap in force). ``train(resume_from_checkpoint=...)``
    restores it at ``on_train_begin``, whatever ``restore_callback_states_from_checkpoint`` says; the
    governor's own state (a heuristic's counters) is rebuilt by replaying the logged observations, and a
    governor that does not choose the logged actions is refused. The evaluation the Trainer repeats at
    the resumed step (``eval_on_start``) is not counted in FLOPs used (``flops_restart`` in the log).

    Args:
        governor: anything with SB3's ``predict(obs, action_masks=...)`` and ``action_names`` (a
            heuristic of ``govgym.agents.heuristics``, an exported ``Governor``); or a string: a shipped
            governor's name (``"default"``, ``"marginal_gain"``, ``"patience"``, ``"memory_reactive"``,
            ``"zeus"``: ``deploy/shipped.py``), the path of an exported artifact (loaded with
            ``govgym.deploy.artifact.load_governor``), or a heuristic spec (``"patience:patience=3"``). With
            ``restore_callback_states_from_checkpoint=True`` the Trainer rebuilds callbacks from their saved
            arguments, which hold a path but not a Python object: pass a path there.
        budget_flops: the FLOP budget; or
        budget_epochs: the budget as epochs of the train dataloader, converted with measured FLOPs; or
        budget_steps: the budget as optimizer steps, converted likewise.
        lam: the compute price λ the governor sees (its reward's trade-off).
        cap_mb: memory cap in MiB at the start (0 = none; on CPU it needs ``memory_peaks``).
        cap_schedule: changes of the cap by budget fraction used, ``[(0.4, 45.0), ...]`` (as an instance's
            ``cap_schedule``; ``{"at", "cap_mb"}`` dicts work too): a co-located job arriving or leaving.
        memory_peaks: ``{strategy: peak MiB}`` measured on this model: the virtual cap of the env (see the
            module docstring). On CUDA it wins over the allocator's peak when given.
        interval_steps: K, optimizer steps between decisions (default: the governor's ``interval_steps``).
        log_path: where to write the JSON decision log (rewritten atomically after every decision).
        reprune_fraction: fraction of the kept data each reprune drops (inside a ``GovernedTrainer``).
        min_kept_fraction: reprunes are masked when less than this fraction of the data would remain.
        tolerance: the equal-quality objective (efficiency/objective.py): "the full budget's final eval
            loss within this relative tolerance, for the least compute". The governor sees it as a 21st
            feature after the 20 of the price objective (``lam`` is then ignored by a governor trained for
            it). None (default) = the price objective.
        shield: a learned governor (an exported agent, ``AgentPolicy``, an SB3 model) runs behind the shield
            (``govgym.agents.shield``): its stop is turned into continue while the last interval gained more
            than ``shield_k`` × λ per budget fraction (or, under the equal-quality objective, while the
            fitted curve predicts a final loss far below the current one). Each veto is a decision row's
            ``shield`` and the log's ``shield.fired``. ``shield=False`` turns it off. Heuristics are
            never shielded (wrap one in ``Shielded`` to shield it).
        shield_k: the shield's k (default 10: a tuned marginal-gain rule stops below 6λ).
    """

    def __init__(
        self,
        governor: Any = None,
        *,
        budget_flops: float | None = None,
        budget_epochs: float | None = None,
        budget_steps: int | None = None,
        lam: float = 0.3,
        cap_mb: float = 0.0,
        interval_steps: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        reprune_fraction: float = 0.1,
        min_kept_fraction: float = 0.5,
        cap_schedule: Any = None,
        memory_peaks: dict[str, float] | None = None,
        tolerance: float | None = None,
        shield: bool = True,
        shield_k: float = DEFAULT_K,
    ) -> None:
        governor, names, self._governor_ref = resolve_governor(governor, tolerance)
        kind, value = check_budget(budget_flops, budget_epochs, budget_steps)
        k = check_k(interval_steps, governor)
        lam = check_number("lam", lam, 0.0, 10.0)
        cap_mb = check_number("cap_mb", cap_mb, 0.0, 1e12)  # MiB: 10^12 MiB is an exabyte
        reprune_fraction = check_number("reprune_fraction", reprune_fraction, 0.0, 0.9)
        min_kept_fraction = check_number("min_kept_fraction", min_kept_fraction, 0.0, 1.0)
        self.shield, self.shield_k = check_shield(shield, shield_k)
        governor = shield_policy(governor, self.shield, self.shield_k, names)
        self.governor, self.action_names = governor, names
        self.budget_kind, self.budget_value = kind, float(value)
        self.lam, self.cap_mb, self.k = float(lam), float(cap_mb), int(k)
        self.cap_schedule, self.memory_peaks = (
            check_cap_schedule(cap_schedule),
            check_memory_peaks(memory_peaks),
        )
        self.reprune_fraction, self.min_kept_fraction = float(reprune_fraction), float(min_kept_fraction)
        if tolerance is not None:
            Objective("equal_quality", tolerance)  # one clear error for a bad tolerance
        self.tolerance = None if tolerance is None else float(tolerance)
        self.trainer: Levers | None = None  # a GovernedTrainer's levers (attach_levers; deploy/levers.py)
        self.report = TrainerLog()  # decisions through trainer.log: report_to sees them (deploy/report.py)
        self.log_path = Path(log_path) if log_path is not None else None
        self.notes: list[str] = []
        self.training = False
        self._model: Any = None
        self._strategy: str | None = None
        self._adjusted_args: Any = None  # the TrainingArguments adjusted (on_init_end or on_train_begin)
        self._reset_run()

    # ------------------------------------------------------------------ setup
    def _reset_run(self) -> None:
        self._started = False
        self._step = 0
        self.world = 1  # processes (torchrun); set at on_train_begin
        self._resumed_at: int | None = None
        self.flops_restart = 0
        self._gns: list[float] | None = None  # EMA of (|G|², tr Σ), the env's noise-scale average
        self.observer = Observer()
        self.budget: float | None = self.budget_value if self.budget_kind == "budget_flops" else None
        self.flops = {"train": 0, "eval": 0, "measure": 0}
        self.step_flops: dict[str, int] = {}
        self.eval_flops: int | None = None
        self.logs: list[dict[str, Any]] = []
        self.lr: float | None = None
        self.decisions: list[dict[str, Any]] = []
        self.ended: str | None = None
        self._counter = EvalMeter()  # FLOPs of the E_0 evaluation (deploy/ledger.py)
        self._probe: dict[str, Any] | None = None
        self.mem = MemoryCap(self.cap_mb, self.cap_schedule, self.memory_peaks)

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Passed to the Trainer's constructor: adjust its TrainingArguments here (``deploy/trainer_args.py``)."""
        self._adjust(args)

    def _adjust(self, args: Any, state: Any = None) -> None:
        """Log every step, evaluate at step 0 and every K steps (notes say what changed), once per Trainer.

        With ``trainer.add_callback(...)`` ``on_init_end`` never runs; ``on_train_begin`` calls this then,
        and recomputes the TrainerState's logging/eval steps, which the Trainer fixed before that event.
        """
        if self._adjusted_args is args:
            return
        for text in adjust_training_args(args, self.k):
            self._note(text)
        self._adjusted_args = args
        if state is not None:
            state.compute_steps(args, state.max_steps)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Measure one optimizer step's FLOPs on a real batch, then count the first evaluation."""
        self._adjust(args, state)  # attached with add_callback: on_init_end did not run
        self.report.find()  # the Trainer calling this event: decisions go through its log()
        self._reset_run()
        self._started = self.training = True
        self._step = state.global_step
        self.device = next(model.parameters()).device
        if self.mem.capped and not self.mem.virtual and self.device.type != "cuda":
            raise ConfigError(
                f"GovernorCallback: cap_mb={self.cap_mb:g} (schedule {self.cap_schedule}) needs measured memory, "
                f"which only CUDA gives; the model is on {self.device.type}. Pass memory_peaks={{strategy: MiB}} "
                "measured on this model (envs.probe.strategy_peaks) for the env's virtual cap, or cap_mb=0 and "
                "no cap_schedule (no cap)."
            )
        self.model, self.args = model, args
        self.mem.check_start(self.strategy)
        # the global batch: per device x devices of this process (DataParallel) x accumulation x processes
        _, self.world = rank_and_world()
        self.batch_size = args.train_batch_size * args.gradient_accumulation_steps * self.world
        self._probe = probe_batch(kwargs.get("train_dataloader"), args, self.device)
        saved = self._saved_state(state)
        if saved is not None:  # a resumed run: measurements, budget and counts come from the checkpoint
            self._restore(saved)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            return
        self._measure_step()
        if self.budget is None:
            self.steps_budget = steps_of_budget(
                self.budget_kind,
                self.budget_value,
                kwargs.get("train_dataloader"),
                args.gradient_accumulation_steps,
            )
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._counter.start()  # stopped in on_evaluate, once eval_on_start's evaluation has run

    def _measure_step(self) -> None:
        s = self.strategy
        if s in self.step_flops:
            return
        fl, step = measure_step(self.model, self._probe, self.args.gradient_accumulation_steps)
        fl, step = from_rank0((fl * self.world, step * self.world))  # every rank: the same step, global
        self.step_flops[s] = step
        self.flops["measure"] += fl

    @property
    def strategy(self) -> str:
        """The model's strategy: read at train begin, at each decision and after each switch, kept in between.

        Reading it walks every module (``is_activation_checkpointing``); ``on_step_end`` charges each step
        at it, so it is not read per step. A new model (``GovernedTrainer.switch_base`` sets ``model``)
        and ``_toggle_gc`` read it afresh.
        """
        if self._strategy is None:
            self._strategy = model_strategy(self.model, self.args.optim)
        return self._strategy

    def attach_levers(self, levers: Levers) -> None:
        """``LeverUser``: a ``GovernedTrainer`` gives its levers (reprune, base switches, the noise interval)."""
        self.trainer = levers
        from transformers import Trainer

        if isinstance(levers, Trainer):  # and its log(): no need to look for it on the call stack
            self.report.set(levers)

    def model_changed(self, levers: Levers, model: Any) -> None:
        """``LeverUser``: the trainer switched the base; read the new model's strategy at the next use."""
        if levers is self.trainer and self._model is not None:
            self.model = model

    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        self._model, self._strategy = model, None

    # ------------------------------------------------------------------ events
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """No training step runs under the FLOP counter: it measures the first evaluation only."""
        if self._counter.active:  # no evaluation before the first step (another callback turned it off)
            self._counter.stop()
            raise ConfigError(
                "GovernorCallback: the first training step began before the evaluation at step 0 (E_0) that the "
                "governor needs; something turned eval_on_start off after the callback set it. Leave "
                "eval_on_start=True."
            )

    def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self._step = state.global_step
        self.flops["train"] += self.step_flops[self.strategy]
        # after the scheduler's step, where the env reads it (the log is one step earlier)
        if optimizer is not None:
            self.lr = float(optimizer.param_groups[0]["lr"])

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if self.report.emitting:  # this callback's own decision, logged through trainer.log
            return
        if logs and "loss" in logs and "eval_loss" not in logs:
            self.logs.append({k: logs[k] for k in ("loss", "grad_norm", "learning_rate") if k in logs})

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if self._counter.active:
            self.eval_flops = from_rank0(self._counter.stop() * self.world)  # every rank its shard: global
            if self.budget is None:  # steps x step FLOPs + the evaluations they include (+ E_0)
                self.budget = flop_budget(
                    self.flops["measure"],
                    self.steps_budget,
                    self.step_flops[self.strategy],
                    args.eval_steps,
                    self.eval_flops,
                )
        if not self.training:  # trainer.evaluate() outside train(): nothing to govern
            return
        if self._resumed_at is not None and state.global_step == self._resumed_at:
            # eval_on_start repeating the checkpoint's step: the uninterrupted run does not pay it
            self._resumed_at = None
            self.flops_restart += self.eval_flops or 0
            return
        self.flops["eval"] += self.eval_flops or 0
        decided = self.decisions and self.decisions[-1]["step"] == state.global_step
        if self.ended or decided or state.global_step % self.k:
            return
        e = (metrics or {}).get("eval_loss")
        if e is None:
            raise ConfigError(
                f"GovernorCallback: the evaluation at step {state.global_step} reported no eval_loss (metrics: "
                f"{sorted(metrics or {})}); the governor needs it. Give the Trainer an eval_dataset with labels."
            )
        self._decide(state, control, float(e))
        best = args.metric_for_best_model
        if self.ended == "oom" and best and metrics is not None:  # the Trainer ranks it next: never the best
            key = best if best.startswith("eval_") else f"eval_{best}"
            if key in metrics:
                metrics[key] = float("nan")  # (already logged with its value)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.ended == "oom":  # save_strategy="epoch" saves the epoch cut short: not an over-cap state
            control.should_save = False

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._counter.stop()  # training ended before the first evaluation (else a no-op)
        self.training = False
        self.ended = self.ended or "trainer"  # max_steps / epochs / another callback ended it first
        self._write(state)

    def _note(self, text: str) -> None:
        from transformers.utils import logging

        self.notes.append(text)
        logging.get_logger(__name__).warning(f"GovernorCallback: {text}")
