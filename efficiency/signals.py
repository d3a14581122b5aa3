"""Scale-free features of a run: the governor's observation, computed by one piece of code.

The environment (envs/) and the deployment callback (agents/deploy) both feed a ``SignalTracker`` one
``Reading`` per decision interval and get the same fixed-length float32 vector back. Nothing here
depends on model size in absolute units: losses are ratios to the initial eval loss, compute is a
fraction of the budget, memory a fraction of the cap, gradient norms ratios to the first interval's,
the noise scale is in units of the batch size. That is what lets a policy learned on 1M-parameter runs
steer a 100M+ run. Only numpy is needed (no torch, gymnasium or SB3).

Features (also the table in docs/environment.md; ``FEATURES`` is the source of truth):
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from govgym.efficiency.strategy import BASES as STRATEGY_BASES
from govgym.efficiency.strategy import Strategy


@dataclass(frozen=True)
class Feature:
    name: str
    formula: str
    low: float
    high: float


FEATURES: tuple[Feature, ...] = (
    Feature("budget_left", "1 − FLOPs used / budget", 0.0, 1.0),
    Feature("eval_ratio", "E_t / E_0 (eval loss over the initial eval loss)", 0.0, 2.0),
    Feature("best_gap", "E_t / min_{s≤t} E_s − 1 (how far above the best so far)", 0.0, 1.0),
    Feature(
        "gain_rate",
        "((E_{t−1} − E_t)/E_0) / (budget fraction spent in the interval); compare with λ",
        -10.0,
        10.0,
    ),
    Feature("gain_rate_ema", "exponential moving average (α = 0.5) of gain_rate", -10.0, 10.0),
    Feature("train_eval_gap", "(E_t − L_train,t) / E_0", -1.0, 1.0),
    Feature("since_best", "min(intervals since the best eval loss, 20) / 20", 0.0, 1.0),
    Feature("log_grad_norm_ratio", "ln(mean grad norm_t / mean grad norm of the first interval)", -5.0, 5.0),
    Feature("grad_norm_cv", "std / mean of the per-step grad norms in the interval", 0.0, 5.0),
    Feature(
        "log_noise_scale",
        "ln(B_simple / batch size), B_simple = tr(Σ)/|G|² (0 when not estimable)",
        -5.0,
        10.0,
    ),
    Feature("mem_frac", "measured peak memory / cap (0 when there is no cap)", 0.0, 2.0),
    Feature("strategy_full", "1 if the base is full fine-tuning", 0.0, 1.0),
    Feature("strategy_lora", "1 if LoRA on an fp32 base", 0.0, 1.0),
    Feature("strategy_qlora", "1 if LoRA on a 4-bit NF4 base", 0.0, 1.0),
    Feature("strategy_int8", "1 if LoRA on an int8 base", 0.0, 1.0),
    Feature("strategy_gc", "1 if gradient checkpointing is on", 0.0, 1.0),
    Feature("strategy_adam8", "1 if the optimizer is 8-bit AdamW", 0.0, 1.0),
    Feature("data_kept", "examples kept / examples at start", 0.0, 1.0),
    Feature("lr_frac", "current LR / peak LR (where the schedule is)", 0.0, 1.0),
    Feature("lam", "compute price λ of the episode's reward", 0.0, 10.0),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
LOW = np.array([f.low for f in FEATURES], dtype=np.float32)
HIGH = np.array([f.high for f in FEATURES], dtype=np.float32)


def spec_hash() -> str:
    """Checksum of the observation spec: saved artifacts carry it; loading compares it."""
    blob = json.dumps([(f.name, f.formula, f.low, f.high) for f in FEATURES]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def markdown_table() -> str:
    rows = ["| # | feature | formula | range |", "|---|---|---|---|"]
    rows += [f"| {i} | `{f.name}` | {f.formula} | [{f.low:g}, {f.high:g}] |" for i, f in enumerate(FEATURES)]
    return "\n".join(rows)


@dataclass
class Reading:
    """What a run reports after one decision interval (any source: FineTuneRun or an HF Trainer)."""

    flops_used: float
    budget: float
    eval_loss: float
    train_loss: float
    grad_norm: float
    grad_norm_std: float
    grad_noise_scale: float
    batch_size: int
    mem_peak_mb: float
    cap_mb: float
    strategy: str
    kept_fraction: float
    lr_frac: float
    lam: float

    @classmethod
    def from_run(
        cls, run: Any, eval_loss: float, stats: Any, budget: float, lam: float, mem_fallback_mb: float = 0.0
    ) -> Reading:
        """The Reading of a ``FineTuneRun`` after one interval: the one place that maps a run onto the features.

        Args:
            run: the run (duck-typed, so this module needs no torch): its FLOPs, memory, cap, strategy,
                kept data and peak learning rate are read.
            eval_loss: the eval loss just measured.
            stats: the interval's ``IntervalStats``; ``None`` right after the initial eval (no interval yet:
                the train loss reads as the eval loss, gradient figures as absent).
            budget: the FLOP budget the budget fraction is taken of.
            lam: the compute price λ of the episode (0 outside an env).
            mem_fallback_mb: the peak to report while the run has measured no memory yet (0 = none).
        """
        mem = run.last_memory
        return cls(
            flops_used=run.flops_total,
            budget=budget,
            eval_loss=eval_loss,
            train_loss=stats.train_loss if stats is not None else eval_loss,
            grad_norm=stats.grad_norm if stats is not None else 0.0,
            grad_norm_std=stats.grad_norm_std if stats is not None else 0.0,
            grad_noise_scale=stats.grad_noise_scale if stats is not None else float("nan"),
            batch_size=run.cfg.optim.batch_size,
            mem_peak_mb=mem.peak / 2**20 if mem.total else mem_fallback_mb,
            cap_mb=run.cap_mb,
            strategy=run.strategy.name,
            kept_fraction=run.kept_fraction,
            lr_frac=stats.lr / run.lr if stats is not None else 0.0,
            lam=lam,
        )


def _finite(x: float, default: float = 0.0) -> float:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else default


def normalize_obs(
    obs: np.ndarray, mean: np.ndarray, var: np.ndarray, clip: float, epsilon: float
) -> np.ndarray:
    """SB3 VecNormalize's observation normalization: clip((obs - mean) / sqrt(var + eps), -clip, clip), float32.

    The one copy of the formula, shared by a loaded agent (agents/policies.py) and an exported
    governor (deploy/artifact.py), so both feed the network exactly what it saw in training.
    """
    return np.clip((obs - mean) / np.sqrt(var + epsilon), -clip, clip).astype(np.float32)


class SignalTracker:
    """Turns a stream of Readings into observation vectors; holds E_0, best, EMA and the first grad norm."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, initial_eval: float | None = None, flops_used: float = 0.0) -> None:
        self.e0 = initial_eval
        self.prev_eval = initial_eval
        self.best = initial_eval if initial_eval is not None else math.inf
        self.prev_flops = flops_used
        self.g0: float | None = None
        self.ema = 0.0
        self.since_best = 0

    def observe(self, r: Reading) -> np.ndarray:
        """Update with one interval's reading and return the clipped float32 feature vector."""
        if self.e0 is None:
            self.reset(r.eval_loss, 0.0)
        e0 = self.e0 if self.e0 and math.isfinite(self.e0) else 1.0
        budget = max(r.budget, 1.0)
        spent = max(r.flops_used - self.prev_flops, 0.0) / budget
        e = _finite(r.eval_loss, 2.0 * e0)
        gain = ((self.prev_eval if self.prev_eval is not None else e) - e) / e0
        gain_rate = gain / spent if spent > 0 else 0.0
        self.ema = 0.5 * self.ema + 0.5 * gain_rate
        if e < self.best:
            self.best, self.since_best = e, 0
        else:
            self.since_best += 1
        gn = _finite(r.grad_norm, 0.0)
        if self.g0 is None and gn > 0:
            self.g0 = gn
        ns = _finite(r.grad_noise_scale, float("nan"))
        strat = Strategy.parse(r.strategy)
        v = [
            1.0 - r.flops_used / budget,
            e / e0,
            e / self.best - 1.0 if self.best > 0 and math.isfinite(self.best) else 0.0,
            gain_rate,
            self.ema,
            (e - _finite(r.train_loss, e)) / e0,
            min(self.since_best, 20) / 20,
            math.log(gn / self.g0) if gn > 0 and self.g0 else 0.0,
            _finite(r.grad_norm_std) / gn if gn > 0 else 0.0,
            math.log(ns / max(r.batch_size, 1)) if ns > 0 else 0.0,
            r.mem_peak_mb / r.cap_mb if r.cap_mb > 0 else 0.0,
            *[float(strat.base == b) for b in STRATEGY_BASES],
            float(strat.gc),
            float(strat.adam8),
            r.kept_fraction,
            r.lr_frac,
            r.lam,
        ]
        self.prev_eval, self.prev_flops = e, r.flops_used
        out = np.nan_to_num(np.asarray(v, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(out, LOW, HIGH)


__doc__ += "\n" + markdown_table() + "\n"
