"""FineTuneRun: one real fine-tuning run that can be advanced, observed, measured and steered.

    run = FineTuneRun(RunConfig())          # embedded default: pretrained tiny Llama, doc->code task
    stats = run.advance(20)                 # 20 real AdamW steps (clip, warmup + cosine schedule)
    loss = run.evaluate()                   # held-out eval loss (its FLOPs are counted)
    run.switch_strategy("lora+gc")          # in place, mid-run
    run.reprune("el2n", 0.2, "hardest")     # drop the 20% hardest kept examples
    run.reprune("recorded", 0.2)            # ... ranked by the losses the steps recorded: 0 FLOPs
    run.reprune("loss", 0.2, sample=400)    # ... among 400 random kept examples scored exactly
    snap = run.snapshot(); ...; run.restore(snap)

The step loop is the plain PyTorch loop (forward, backward, clip, step, schedule, zero_grad) plus
two cheap things per step that add no device sync: the pre-clip grad norm (already computed by
clip_grad_norm_) is kept as a tensor, and the gradient is added into an interval sum (one fused
``_foreach_add_``) for the gradient-noise-scale estimate. Host reads happen once per interval.
Each step also records every drawn example's loss from the step's own forward pass (no_grad: a gather
from the log-probabilities the model's loss saved for backward, reduced per example; the
backpropagated loss is the model's ``.loss``, unchanged) and the step it was drawn at,
in device tensors (``example_loss``, ``last_seen``): the ``recorded`` reprune ranks by them at 0 FLOPs.
FLOPs (torch.utils.flop_counter) and memory (memstats) are measured on the first real step of each
(strategy, batch shape) and cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import get_scheduler

from govgym.efficiency import caps, memstats, noise
from govgym.efficiency.compute import FlopCache, count_flops, param_counts
from govgym.efficiency.config import RunConfig
from govgym.efficiency.memory import Strategy, apply_strategy, make_optimizer, trainable_parameters
from govgym.efficiency.noise import gradient_noise_scale as gradient_noise_scale  # re-exported
from govgym.efficiency.noise import noise_estimates
from govgym.efficiency.pruning import per_example_losses, per_example_losses_from_loss
from govgym.efficiency.reprune import reprune
from govgym.efficiency.sampler import EpochSampler
from govgym.efficiency.snapshot import RunSnapshots
from govgym.efficiency.workload import load_workload
from govgym.errors import RunError as RunError  # re-exported: defined in the base, caught by the CLI


class RunOOM(RunError):
    """A real allocator cap (CUDA) was hit during a step."""


@dataclass
class IntervalStats:
    """What one ``advance(n)`` did. Floats are host values read once at the end of the interval."""

    step: int
    """Optimizer steps done in the run after this interval."""
    steps: int
    train_loss: float
    losses: list[float]
    grad_norm: float
    """Mean pre-clip gradient norm over the interval."""
    grad_norm_std: float
    grad_noise_scale: float
    """B_simple = tr(Σ)/|G|² from per-step vs interval-mean gradients (nan when steps < 2)."""
    lr: float
    flops: int
    seconds: float
    strategy: str
    memory_mb: dict[str, float] = field(default_factory=dict)
    finite: bool = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class FineTuneRun(RunSnapshots):
    """A real fine-tuning run advanced a few optimizer steps at a time.

    Args:
        cfg: the validated run config.
        workload: an already loaded workload (model, tokenizer, datasets); loaded from ``cfg`` if None.
        progress: show progress bars while building the embedded default.
    """

    def __init__(self, cfg: RunConfig, workload: Any = None, progress: bool = True):
        if workload is None:
            workload = load_workload(cfg, progress=progress)
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.info = dict(getattr(workload, "info", {}) or {})
        torch.manual_seed(cfg.seed)
        # Whole splits live as [N, T] tensors: a batch is one index_select, as in a hand-written loop.
        self.train_ids = torch.tensor(workload.train["input_ids"], dtype=torch.long, device=self.device)
        self.train_labels = torch.tensor(workload.train["labels"], dtype=torch.long, device=self.device)
        cols = workload.train.column_names
        self.noise = (
            np.asarray(workload.train["noise"]) if "noise" in cols else np.zeros(len(self.train_ids), int)
        )
        self.eval_ids = torch.tensor(workload.eval["input_ids"], dtype=torch.long, device=self.device)
        self.eval_labels = torch.tensor(workload.eval["labels"], dtype=torch.long, device=self.device)
        self.sampler = EpochSampler(len(self.train_ids), cfg.seed)
        self._clear_recorded()
        if len(self.train_ids) < cfg.optim.batch_size:
            raise RunError(
                f"optim.batch_size={cfg.optim.batch_size} is larger than the {len(self.train_ids)} training "
                "examples; lower optim.batch_size or raise data.max_examples."
            )
        self.step = 0
        self.flops = {"train": 0, "eval": 0, "score": 0, "measure": 0}
        self.flop_cache = FlopCache()
        self.memory: dict[str, memstats.MemoryStats] = {}
        self.last_memory = memstats.MemoryStats()
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self._gns: tuple[float, float] | None = None  # EMA of (|G|², tr Σ) for the noise scale
        self.cap_mb = cfg.memory.cap_mb
        self.strategy = Strategy.parse(cfg.memory.strategy)
        self.model = apply_strategy(workload.model.to(self.device), None, self.strategy, cfg.memory, cfg.seed)
        self.tokenizer = workload.tokenizer
        self.n_params = param_counts(self.model)
        self._build_optimizer(None)
        self.set_cap(self.cap_mb)

    # ------------------------------------------------------------------ optimizer and schedule
    @property
    def lr(self) -> float:
        return self.cfg.optim.lora_lr if self.strategy.adapters else self.cfg.optim.lr

    def _build_optimizer(self, old: torch.optim.Optimizer | None) -> None:

        o = self.cfg.optim
        self.trainable = trainable_parameters(self.model)
        self.optimizer = make_optimizer(self.trainable, self.strategy, self.lr, o, old)
        name = "constant_with_warmup" if o.schedule == "constant" else o.schedule
        self.scheduler = get_scheduler(name, self.optimizer, o.warmup_steps, o.total_steps)
        # Continue the schedule where the run is, at the new strategy's peak LR.
        self.scheduler.last_epoch = self.step
        self.scheduler.base_lrs = [self.lr for _ in self.optimizer.param_groups]
        for g, lam in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas):
            g["lr"] = self.lr * lam(self.step)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self._sync_schedule()

    def _sync_schedule(self) -> None:
        """Under ``optim.schedule_step_flops``, put the schedule at (training FLOPs spent / that) steps.

        The LR of the next step is then the one the planned schedule has at this compute fraction; for
        a run that never switches strategy it is exactly the step-based schedule (each step costs the
        same FLOPs), after a switch to a cheaper strategy the run moves along it more slowly.
        """
        per_step = self.cfg.optim.schedule_step_flops
        if per_step <= 0:
            return
        virtual = min(self.flops["train"] / per_step, float(self.cfg.optim.total_steps))  # then hold the end
        self.scheduler.last_epoch = int(virtual) if virtual == int(virtual) else virtual
        for g, lam in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas):
            g["lr"] = self.lr * lam(virtual)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    # ------------------------------------------------------------------ the step loop
    def _clear_recorded(self) -> None:
        n = len(self.train_ids)
        # each training example's loss at the step that last drew it (nan: never drawn yet), and the
        # run's step count then (the loss is of the weights after that many updates; -1: never drawn)
        self.example_loss = torch.full((n,), float("nan"), dtype=torch.float32, device=self.device)
        self.last_seen = torch.full((n,), -1, dtype=torch.long, device=self.device)

    def _loss(self, ids: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The model's own loss (the one backpropagated); with ``idx``, also record each row's loss."""
        out = self.model(input_ids=ids, labels=labels)
        if idx is not None:  # no_grad, a gather: no FLOPs, no host sync, no second pass over the logits
            per = per_example_losses_from_loss(out.loss, labels)
            if per is None:  # not the expected loss graph: recompute from the logits, one row at a time
                per = per_example_losses(out.logits, labels, causal=True, chunk=1)
            i = idx.to(self.device)
            self.example_loss[i] = per
            self.last_seen[i] = self.step
        return out.loss

    def _update(self) -> torch.Tensor:
        max_norm = self.cfg.optim.max_grad_norm or float("inf")
        gn = torch.nn.utils.clip_grad_norm_(self.trainable, max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return gn

    def _step(
        self, idx: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor, gsum: list[torch.Tensor] | None
    ):
        loss = self._loss(ids, labels, idx)
        loss.backward()
        if gsum is not None:
            grads = [p.grad for p in self.trainable]
            if all(g is not None for g in grads):
                torch._foreach_add_(gsum, grads)
        return loss.detach(), self._update()

    def _measured_step(
        self, idx: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor, gsum: list[torch.Tensor] | None
    ):
        """One real step with memory measured by category (and the profiler/allocator peak as a check)."""
        meter = memstats.ActivationMeter(self.model)
        layers = memstats.decoder_layers(self.model) if self.strategy.gc else []
        params_b = memstats.param_bytes(self.model)
        opt_before = memstats.optimizer_bytes(self.optimizer)
        with memstats.profile_peak(self.device) as pk:
            with meter.watch(layers):
                loss = self._loss(ids, labels, idx)
            loss.backward()
            grads_b = memstats.grad_bytes(self.trainable)
            if gsum is not None:
                torch._foreach_add_(gsum, [p.grad for p in self.trainable])
            gn = self._update()
        peak = pk.get("peak") or (params_b + opt_before + pk.get("peak_delta", 0))
        stats = memstats.MemoryStats(
            params_b,
            grads_b,
            memstats.optimizer_bytes(self.optimizer),
            meter.bytes,
            peak,
            allocator=self.device.type == "cuda",
        )
        self.memory[self._mem_key(ids)] = stats
        if self.strategy.gc:  # the recompute peak needs one more forward, run outside the step's FLOP count
            self._probe = (ids, labels)
        return loss.detach(), gn

    def _recompute_probe(self) -> None:
        """Under checkpointing, add one layer's recompute to the measured activations (FLOPs counted)."""
        ids, labels = self._probe
        self._probe = None
        recompute, fl = count_flops(
            partial(memstats.max_layer_saved_bytes, self.model, partial(self._loss, ids, labels))
        )
        self.flops["measure"] += fl
        self.memory[self._mem_key(ids)].activations += recompute

    def _mem_key(self, ids: torch.Tensor) -> str:
        return f"{self.strategy.name}|{tuple(ids.shape)}"

    def advance(self, n: int) -> IntervalStats:
        """Run ``n`` real optimizer steps; return the interval's statistics (one host sync at the end)."""
        if n < 1:
            raise ValueError(f"advance(n): n must be >= 1, got {n}.")
        t0 = time.perf_counter()
        flops0 = self.flops["train"] + self.flops["measure"]
        bs = self.cfg.optim.batch_size
        gsum = [torch.zeros_like(p) for p in self.trainable] if n >= 2 else None
        losses, norms = [], []
        every = self.cfg.memory.measure_every
        try:
            for _ in range(n):
                idx = self.sampler.next_batch(bs)
                ids, labels = self.train_ids[idx], self.train_labels[idx]
                key = self._mem_key(ids)
                measure = key not in self.memory or (every and self.step % every == 0)
                fn = self._measured_step if measure else self._step
                (loss, gn), fl = self.flop_cache.measure(("train", key), partial(fn, idx, ids, labels, gsum))
                self.flops["train"] += fl
                self._sync_schedule()
                if self._probe is not None:
                    self._recompute_probe()
                self.step += 1
                losses.append(loss)
                norms.append(gn)
        except torch.OutOfMemoryError as err:
            self.optimizer.zero_grad(set_to_none=True)
            raise RunOOM(
                f"out of memory under the {self.cap_mb:.0f} MiB cap with strategy {self.strategy}: {err}"
            ) from None
        ls = torch.stack(losses).float().cpu().numpy()
        gn = torch.stack([g.float() for g in norms]).cpu().numpy()
        noise_scale = float("nan")
        if gsum is not None:
            big = float(torch.stack(torch._foreach_norm(gsum)).pow(2).sum()) / n**2
            g2, trace = noise_estimates(float(np.mean(gn**2)), big, bs, n * bs)
            self._gns = noise.average(self._gns, g2, trace)  # the EMA of (|G|², tr Σ): efficiency/noise.py
            noise_scale = noise.averaged_scale(self._gns)
        self.last_memory = self.memory.get(key, self.last_memory)
        return IntervalStats(
            step=self.step,
            steps=n,
            train_loss=float(ls.mean()),
            losses=ls.tolist(),
            grad_norm=float(gn.mean()),
            grad_norm_std=float(gn.std()),
            grad_noise_scale=noise_scale,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            flops=self.flops["train"] + self.flops["measure"] - flops0,
            seconds=time.perf_counter() - t0,
            strategy=self.strategy.name,
            memory_mb=self.last_memory.as_mb(),
            finite=bool(np.isfinite(ls).all() and np.isfinite(gn).all()),
        )

    # ------------------------------------------------------------------ evaluation
    def _logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits

    def evaluate(self, batch_size: int = 32) -> float:
        """Token-mean cross-entropy on the held-out split; its FLOPs go to ``flops['eval']``."""
        return self.loss_on(self.eval_ids, self.eval_labels, batch_size, ledger=True)

    @torch.no_grad()
    def loss_on(
        self, ids_all: torch.Tensor, labels_all: torch.Tensor, batch_size: int = 32, ledger: bool = False
    ) -> float:
        """Token-mean cross-entropy of the live model on (input ids, labels) on the run's device; with
        ``ledger`` its FLOPs go to ``flops['eval']`` (the eval split), without it they are counted nowhere (a
        measurement beside the run, e.g. ``benchmarks/noise_ceiling.py``'s audit set)."""
        was = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        try:
            for s in range(0, len(ids_all), batch_size):
                ids, labels = ids_all[s : s + batch_size], labels_all[s : s + batch_size]
                if ledger:
                    logits, fl = self.flop_cache.measure(
                        ("eval", self.strategy.name, tuple(ids.shape)), partial(self._logits, ids)
                    )
                    self.flops["eval"] += fl
                else:
                    logits = self._logits(ids)
                tgt = labels[:, 1:]
                loss = F.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(), tgt.flatten(), ignore_index=-100, reduction="sum"
                )
                total += float(loss)
                count += int((tgt != -100).sum())
        finally:
            self.model.train(was)
        return total / max(count, 1)

    # ------------------------------------------------------------------ levers
    def switch_strategy(self, name: str | Strategy) -> dict[str, Any]:
        """Switch the memory strategy in place, mid-run; optimizer state carried where it applies."""
        new = Strategy.parse(name)
        if new == self.strategy:
            return {"from": new.name, "to": new.name, "seconds": 0.0}
        t0 = time.perf_counter()
        old, old_opt = self.strategy, self.optimizer
        self.model = apply_strategy(
            self.model, old, new, self.cfg.memory, seed=self.cfg.seed * 100_003 + self.step
        )
        self.strategy = new
        self._gns = None  # another parameter space: the noise-scale EMA starts over
        self._build_optimizer(old_opt)
        self.n_params = param_counts(self.model)
        return {"from": old.name, "to": new.name, "seconds": time.perf_counter() - t0}

    def reprune(self, scorer: str, fraction: float, mode: str = "hardest", sample: int = 0) -> dict[str, Any]:
        """Rank the kept examples and drop ``round(fraction · kept)`` of them; see ``efficiency.reprune.reprune``."""
        return reprune(self, scorer, fraction, mode, sample)

    def set_cap(self, cap_mb: float) -> None:
        """Set the memory cap (MiB, 0 = none): a real allocator limit on CUDA, virtual on CPU."""
        self.cap_mb = float(cap_mb)
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory
            frac = 1.0 if cap_mb <= 0 else min(1.0, cap_mb * memstats.MB / total)
            torch.cuda.set_per_process_memory_fraction(frac, self.device)

    @property
    def over_cap(self) -> bool:
        """Measured peak above the cap (the virtual OOM on CPU)."""
        return caps.over_cap(self.last_memory.peak / memstats.MB, self.cap_mb)

    @property
    def flops_total(self) -> int:
        return sum(self.flops.values())

    @property
    def kept_fraction(self) -> float:
        return len(self.sampler.kept) / len(self.train_ids)

    def memory_estimate(self) -> memstats.MemoryStats:
        return memstats.estimate(
            self.model, self.strategy, self.cfg.optim.batch_size, self.train_ids.shape[1], self.trainable
        )
