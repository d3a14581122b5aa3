"""The fast backend's model of a fine-tuning run, fitted from recorded real runs; numpy only at run time.

``govgym/FineTuneFast-v1`` (envs/fast_env.py) steps this model instead of a live run. It has two parts:

- **Mechanics**, exact or measured constants, not learned: decision intervals of a budget in epochs
  (the real env's ``round(epochs x examples / batch / K)``), each strategy's FLOPs per interval relative
  to full fine-tuning (``step_cost`` for the training steps, ``eval_cost`` for the evaluation), the
  initial evaluation's share, the LR schedule advanced by training FLOPs (warmup + cosine, as
  ``FineTuneRun._sync_schedule``), each strategy's measured peak memory per task, the cap schedule and
  its OOM rule, the action masks. Fitted from the saved step trees by ``govgym fit-fast``
  (envs/fastfit.py) where the trees measure them (FLOP shares, peaks, E_0 per task).
- **Dynamics**, learned: a small MLP (two tanh layers) maps the state before an interval (instance
  descriptors: task, examples, noise rate by kind, epochs; the run: epochs drawn, LR at the start and
  end of the interval, eval ratio and best so far, strategy, data kept and what each reprune dropped,
  the lever just pulled) to a Gaussian over what the interval produces: the change of the eval ratio
  E_t/E_0, the train-eval gap, the grad-norm ratio and spread, the gradient noise scale. Trained by
  Gaussian negative log-likelihood on every transition of the saved trees of the *train* split (the
  held-out instances are never in its fit), so its noise is calibrated to what the model cannot explain.

**v2 (format 2).** A model file declares its inputs: v1's (``INPUTS``, with a code2doc flag: one base,
two tasks) or v2's (``INPUTS_V2``, envs/fastinputs.py: SFT or all tokens, log E_0, log parameters, log lr
multiple, log batch, no task or architecture, so that unseen tasks and bases are described). Mechanics
cover every split of the set (probed, not learned), E_0 per task key by one evaluation of the base and
per train instance from its tree. It may hold an ensemble (``more``): ``predict`` is the members' mean,
``disagreement`` their standard deviation of the eval change. Format-1 files (the packaged
configs/fast_v1.json) load and run as before.

The model file is JSON behind a format version and a content hash (``efficiency.safefile``), with the
observation spec hash, the govgym version and the provenance of its fit; no pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym import __version__
from govgym.efficiency import safefile
from govgym.efficiency.signals import spec_hash
from govgym.efficiency.tasks import PLAIN_TASKS
from govgym.envs.fastinputs import INPUT_SETS, INPUTS, INPUTS_V2, base_lr, features, transition_features
from govgym.typed import ConfigError

FAST_FORMAT = "govgym-fast-model"
FAST_VERSION = 2
READ_VERSIONS = (1, 2)
"""Format versions ``load_model`` reads: 1 (one MLP on ``INPUTS``, the packaged configs/fast_v1.json) and 2
(the file declares its inputs, ``INPUTS`` or ``INPUTS_V2``, and holds one or more ensemble members)."""
NOISE_KINDS = ("shuffle", "corrupt", "duplicate")

OUTPUTS = ("d_eval_ratio", "train_eval_gap", "log_grad_norm_ratio", "grad_norm_cv", "log_noise_scale")
"""What one interval produces: E_t/E_0 − E_{t−1}/E_0, and the observation's features 5, 7, 8, 9."""


@dataclass(frozen=True)
class Static:
    """What the dynamics model knows of an instance (nothing of its name)."""

    task_c2d: float
    examples: int
    batch: int
    noise_rate: float
    kinds: tuple[float, float, float]
    budget_epochs: float
    task: str
    workload: str = ""
    """The base and batch when they are not FineTune-v1's (``workload_key``); '' on v1's."""
    sft: float = 0.0
    """1 when the loss is on the response only (prompt/response SFT), 0 when on every token."""
    lr_mult: float = 1.0
    """The learning rate / the base's 1x rate (``fastinputs.base_lr``)."""
    e0: float = 0.0
    """Initial eval loss (a measured constant; set by ``plan_of`` from the model's mechanics)."""
    params: float = 0.0
    """Parameters of the base (measured by the probe; set by ``plan_of``)."""

    @property
    def cost_key(self) -> str:
        """Key of the measured FLOPs and peaks: they depend on the base and the batch, not on the task;
        on v1's base and batch the task (so v1's fitted models read as before)."""
        return self.workload or self.task

    @property
    def e0_key(self) -> str:
        """Key of the initial eval loss: the task, on the base (and batch) of the run."""
        return f"{self.task}/{self.workload}" if self.workload else self.task

    @classmethod
    def of(cls, run_cfg: Any, budget_epochs: float) -> Static:
        d = run_cfg.data
        kinds = [k for k in d.noise_kinds if k in NOISE_KINDS] or list(NOISE_KINDS)
        share = tuple(float(k in kinds) / len(kinds) for k in NOISE_KINDS)
        return cls(
            task_c2d=float(d.task == "code2doc"),
            examples=int(d.max_examples),
            batch=int(run_cfg.optim.batch_size),
            noise_rate=float(d.noise_rate),
            kinds=share,  # type: ignore[arg-type]
            budget_epochs=float(budget_epochs),
            task=str(d.task),
            workload=workload_key(run_cfg),
            sft=float(bool(d.response_only) and d.task not in PLAIN_TASKS),
            lr_mult=float(run_cfg.optim.lr) / base_lr(run_cfg.model.hidden_size),
        )


V1_MODEL = {
    "source": "default",
    "arch": "llama",
    "hidden_size": 128,
    "num_layers": 4,
    "intermediate_size": 352,
}
"""FineTune-v1's base (the embedded default): its workloads keep the task alone as their key."""


def workload_key(run_cfg: Any) -> str:
    """'' for FineTune-v1's base, batch 8 and 128-token examples; else ``arch-hidden x layers/b<batch>/s<seq>``.

    The generated world (FineTune-v2) draws bases and batch sizes, and each changes the FLOPs of a step
    and the memory peak: the fast backend measures and looks them up per workload, not per task.
    """
    m = run_cfg.model
    v1 = all(getattr(m, k, None) == v for k, v in V1_MODEL.items())
    if v1 and run_cfg.optim.batch_size == 8 and run_cfg.data.seq_len == 128:
        return ""
    return f"{m.arch}-{m.hidden_size}x{m.num_layers}x{m.intermediate_size}/b{run_cfg.optim.batch_size}/s{run_cfg.data.seq_len}"


@dataclass
class RunState:
    """The fast run between intervals: what the dynamics and mechanics need."""

    steps: int = 0
    """Optimizer steps done."""
    virtual: float = 0.0
    """Where the LR schedule stands (training FLOPs / the start strategy's step FLOPs)."""
    adapter_steps: int = 0
    eval_ratio: float = 1.0
    best_ratio: float = 1.0
    strategy: str = "full"
    kept: float = 1.0
    dropped_hardest: float = 0.0
    dropped_easiest: float = 0.0
    steps_at_reprune: int = 0
    since_lever: int = 20
    measured: tuple[str, ...] = ()
    """Strategies whose memory was measured this episode (a gc strategy's first step costs an extra forward)."""


def lr_frac(virtual: float, total: int, warmup: int, schedule: str = "cosine") -> float:
    """transformers' cosine/linear/constant schedule with linear warmup, at a (fractional) step; end held."""
    v = min(max(virtual, 0.0), float(total))
    if v < warmup:
        return v / max(1, warmup)
    if schedule == "constant":
        return 1.0
    p = (v - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - p)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * p)))


@dataclass
class FastModel:
    """Mechanics + the dynamics MLP; ``predict`` is numpy only."""

    mechanics: dict[str, Any]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    provenance: dict[str, Any] = field(default_factory=dict)

    inputs: tuple[str, ...] = INPUTS
    """The input list the dynamics were fitted on (``INPUTS`` or ``INPUTS_V2``; the file declares it)."""
    more: list[list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)
    """The ensemble's other members' layers (same normalization); [] for one MLP."""

    @property
    def members(self) -> int:
        """How many MLPs the ensemble holds (1 + ``more``)."""
        return 1 + len(self.more)

    def _net(self, layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
        h = (np.atleast_2d(x) - self.x_mean) / self.x_std
        for w, b in layers[:-1]:
            h = np.tanh(h @ w + b)
        w, b = layers[-1]
        return (h @ w + b) * self.y_std + self.y_mean

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean of OUTPUTS for inputs ``x`` ((n, len(inputs)) or (len(inputs),)): the members' mean."""
        mean = self._net(self.layers, x)
        if self.more:
            mean = np.mean([mean, *(self._net(m, x) for m in self.more)], axis=0)
        return mean[0] if x.ndim == 1 else mean

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Each member's OUTPUTS for inputs ``x``: shape (members, n, len(OUTPUTS))."""
        return np.stack([self._net(m, x) for m in (self.layers, *self.more)])

    def disagreement(self, x: np.ndarray) -> np.ndarray | float:
        """Standard deviation over the members of the predicted eval change (``d_eval_ratio``), per row of
        ``x``: the ensemble's epistemic uncertainty (MOPO's penalty); 0 for one MLP."""
        if not self.more:
            return 0.0 if x.ndim == 1 else np.zeros(len(np.atleast_2d(x)))
        sd = self.predict_members(x)[:, :, 0].std(axis=0)
        return float(sd[0]) if x.ndim == 1 else sd

    def features(
        self, s: Static, before: RunState, after: RunState, lr0: float, lr1: float, act: str
    ) -> np.ndarray:
        """This model's input for one interval (``fastinputs.features`` over ``self.inputs``)."""
        return features(self.inputs, s, before, after, lr0, lr1, act)

    def sample(self, mean: np.ndarray, episode_scale: float, rng: np.random.Generator) -> np.ndarray:
        """One draw around ``mean``: the eval change scaled by the episode's factor plus per-step noise.

        The noise was calibrated on instances held back from the fit (``noise`` in the mechanics): the
        residual of the eval change on a held-back instance is mostly a per-instance scale error (a
        curve steeper or flatter than predicted, ``dy_scale_sd``) plus a per-step part (``sd[0]``); the
        other outputs get their held-back residual's standard deviation.
        """
        sd = np.asarray(self.mechanics["noise"]["sd"], dtype=np.float64)
        out = mean + sd * rng.standard_normal(mean.shape)
        out[0] = mean[0] * (1.0 + episode_scale) + sd[0] * rng.standard_normal()
        return out

    # ------------------------------------------------------------------ mechanics
    def costs(self, task: str, strategy: str) -> tuple[float, float]:
        """(FLOPs of one optimizer step, FLOPs of one eval) of ``strategy`` on ``task``, as measured by
        ``envs.probe.strategy_costs`` (FlopCounterMode); the mean over tasks for a task the fit never saw."""
        table = self.mechanics["costs"]
        if f"{task}|{strategy}" in table:
            return tuple(float(v) for v in table[f"{task}|{strategy}"])  # type: ignore[return-value]
        same = [v for k, v in table.items() if k.split("|")[1] == strategy]
        if not same:
            raise ConfigError(
                f"fast model: no measured FLOPs for strategy {strategy!r}; it was fitted without it. Refit "
                "with `govgym fit-fast` (it probes every strategy of env.switch_targets and every start strategy)."
            )
        return float(np.mean([v[0] for v in same])), float(np.mean([v[1] for v in same]))

    def peak_mb(self, task: str, strategy: str) -> float:
        """Measured peak memory (MiB) of ``strategy`` on ``task`` (the mean over tasks when unseen)."""
        peaks = self.mechanics["peaks"]
        if f"{task}|{strategy}" in peaks:
            return float(peaks[f"{task}|{strategy}"])
        same = [v for k, v in peaks.items() if k.split("|")[1] == strategy]
        if not same:
            raise ConfigError(
                f"fast model: no measured peak memory for strategy {strategy!r}; it was fitted on traces that "
                f"never ran it. Refit with `govgym fit-fast` on trees that include it, or remove it from "
                "env.switch_targets."
            )
        return float(np.mean(same))

    def e0(self, task: str, instance: str = "") -> float:
        """Initial eval loss of ``instance`` where the mechanics measured it (``e0_instance``: a train tree's
        root), else of its task key (measured by the probe; a v1 file: the mean over the fit's runs); the
        mean over keys for a key never measured. The scale of ``info['eval_loss']``."""
        per = self.mechanics.get("e0_instance") or {}
        if instance in per:
            return float(per[instance])
        m = self.mechanics["e0"]
        return float(m.get(task, np.mean(list(m.values()))))

    def params(self, cost_key: str) -> float:
        """Parameters of the base of workload ``cost_key`` (measured by the probe; 0 where not measured)."""
        return float((self.mechanics.get("params") or {}).get(cost_key, 0.0))

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        body = {
            "spec_hash": spec_hash(),
            "inputs": list(self.inputs),
            "outputs": list(OUTPUTS),
            "mechanics": self.mechanics,
            "x_mean": safefile.pack(self.x_mean),
            "x_std": safefile.pack(self.x_std),
            "y_mean": safefile.pack(self.y_mean),
            "y_std": safefile.pack(self.y_std),
            "layers": [[safefile.pack(w), safefile.pack(b)] for w, b in self.layers],
            "members": [[[safefile.pack(w), safefile.pack(b)] for w, b in m] for m in self.more],
            "provenance": {**self.provenance, "govgym_version": __version__},
        }
        return safefile.write(Path(path), FAST_FORMAT, FAST_VERSION, body)


def load_model(path: str | Path) -> FastModel:
    """A fast model written by ``FastModel.save`` (format, version and content hash checked; no pickle),
    every value then checked by ``envs.fastcheck.check_model`` (shapes, finiteness, ranges).

    Raises:
        ConfigError: not a file, not a fast model, a broken hash, or a model fitted for another
            observation spec or input list than this code's (refit with ``govgym fit-fast``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"fast model: {p} is not a file. Build one with `govgym fit-fast --out {p.parent}` or leave the "
            "option out to use the packaged configs/fast_v1.json."
        )
    version = _file_version(p)
    _, body, _ = safefile.read(p, FAST_FORMAT, version, "fast model")
    inputs = body.get("inputs", []) if isinstance(body, dict) else []
    allowed = [list(INPUTS)] if version == 1 else [list(v) for v in INPUT_SETS.values()]
    if body.get("spec_hash") != spec_hash() or not isinstance(inputs, list) or inputs not in allowed:
        raise ConfigError(
            f"fast model {p}: fitted for observation spec {body.get('spec_hash')!r} and inputs "
            f"{str(inputs):.300}; this code has spec {spec_hash()!r} and reads format {version} with inputs "
            f"{' or '.join(str(a) for a in allowed)}. Refit it with `govgym fit-fast` (the traces are reused)."
        )
    members = body.get("members", []) if version >= 2 else []
    if version == 1 and "members" in body:
        raise ConfigError(f"fast model {p}: a format-1 file holds one MLP, not 'members'; refit it.")
    if not isinstance(members, list):
        raise ConfigError(
            f"fast model {p}: members must be a list of layer lists, got {type(members).__name__}."
        )

    missing = [k for k in ("mechanics", "x_mean", "x_std", "y_mean", "y_std", "layers") if k not in body]
    if missing:
        raise ConfigError(f"fast model {p}: lacks {', '.join(missing)}; refit it with `govgym fit-fast`.")

    def arr(name: str, v: Any) -> np.ndarray:
        try:
            a = safefile.unpack(v)
        except (safefile.UnsafeFileError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"fast model {p}: {name} is not an array ({err}).") from None
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
            raise ConfigError(f"fast model {p}: {name} must be a numeric array, got {type(a).__name__}.")
        return a.astype(np.float64)

    def chain(name: str, layers: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, list) and len(x) == 2 for x in layers)
        ):
            raise ConfigError(f"fast model {p}: {name} must be a non-empty list of [weight, bias] pairs.")
        return [
            (arr(f"{name}[{i}].weight", w), arr(f"{name}[{i}].bias", b)) for i, (w, b) in enumerate(layers)
        ]

    model = FastModel(
        mechanics=body["mechanics"],
        x_mean=arr("x_mean", body["x_mean"]),
        x_std=arr("x_std", body["x_std"]),
        y_mean=arr("y_mean", body["y_mean"]),
        y_std=arr("y_std", body["y_std"]),
        layers=chain("layers", body["layers"]),
        provenance=body.get("provenance", {}),
        inputs=tuple(inputs),
        more=[chain(f"members[{j}]", m) for j, m in enumerate(members)],
    )
    from govgym.envs.fastcheck import check_model  # here: fastcheck imports this module's names

    check_model(model, f"fast model {p}")
    return model


def _file_version(p: Path) -> int:
    """The format version a fast-model file's header line declares, when this code reads it (else the
    current one, so that ``safefile.read`` refuses the file with its own sentence)."""
    import json

    with p.open("rb") as f:
        line = f.read(safefile.HEADER_LIMIT).split(b"\n", 1)[0]
    try:
        v = json.loads(line).get("version")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return FAST_VERSION
    return v if v in READ_VERSIONS and not isinstance(v, bool) else FAST_VERSION


def base_key(iset: Any) -> str:
    """What a fast model's measured mechanics depend on: the instance set's shared run and env blocks."""
    import hashlib
    import json

    from govgym.typed import to_dict

    blob = json.dumps({"run": iset.run, "env": to_dict(iset.env)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_model_path(world: int = 1) -> Path:
    """The packaged fast model of FineTune-v1 (``configs/fast_v1.json``) or, ``world=2``, of the generated v2
    world (``configs/fast_v2.json``: the 5-member ensemble fitted on 302 v2 train traces, a copy of
    ``data/fast_v2/fast_model.json``; what the shipped default agent and ``govgym demo`` train on)."""
    from importlib.resources import files

    return Path(str(files("govgym.configs") / ("fast_v2.json" if world == 2 else "fast_v1.json")))


__all__ = [
    "FAST_FORMAT",
    "FAST_VERSION",
    "INPUTS",
    "INPUTS_V2",
    "OUTPUTS",
    "READ_VERSIONS",
    "FastModel",
    "RunState",
    "Static",
    "base_key",
    "default_model_path",
    "load_model",
    "lr_frac",
    "transition_features",
]
