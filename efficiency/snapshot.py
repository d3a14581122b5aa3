"""Run snapshots: ``RunSnapshots`` (``FineTuneRun``'s snapshot/restore/save/load, a mixin) and the file that
``FineTuneRun.save`` writes and ``FineTuneRun.load`` reads back.

    write_snapshot(path, state, model_state_dict, strategy)   # atomic; JSON + safetensors behind a sha256
    state, model_sd, strategy = read_snapshot(path)           # format, version, hash, then every field

A content hash is integrity, not validation (anyone can recompute a sha256 after an edit), so
``read_snapshot`` also checks every value it returns as strictly as the same value typed in a config:
types, finiteness, ranges, integer-ness and the strategy name. Putting the values into a run (the
optimizer's and schedule's own state dicts) is ``FineTuneRun.load``'s part; loading the model's weights,
exactly or not at all, is ``load_model_state`` here. The file layout is ``efficiency/safefile.py``'s.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from govgym import __version__
from govgym.efficiency import memstats, safefile
from govgym.efficiency.compute import param_counts
from govgym.efficiency.memory import Strategy
from govgym.errors import RunError

SNAPSHOT_FORMAT = "govgym-run-snapshot"
SNAPSHOT_VERSION = 2
"""2: JSON + safetensors behind a content hash (1 was a pickle, no longer loaded). The recorded
per-example losses (``example_loss``, ``last_seen``) are optional fields of version 2: a file written
before they existed loads with nothing recorded (nan / -1), everything else exact."""

REQUIRED = ("optimizer", "scheduler", "rng", "sampler", "step", "flops", "flop_cache", "cap_mb", "gns")
"""Fields every version-2 snapshot's state holds (besides ``strategy``, ``memory``, ``last_memory``)."""
MAX_COUNT = 2**62
"""Step and FLOP counters are int64 in torch and numpy: a value at or above 2**62 is not a count a run made."""


def write_snapshot(path: str | Path, state: dict[str, Any], model_sd: dict[str, Any], strategy: str) -> Path:
    """Write ``state`` (``FineTuneRun.training_state()``) and the model's state dict to ``path`` atomically.

    A crash mid-write never corrupts an earlier file. The file holds no pickle: the tensors in
    safetensors, the rest in JSON, behind a header with the format version and a sha256 of the content.
    """
    state = dict(state)
    state["memory"] = {k: asdict(v) for k, v in state["memory"].items()}
    state["last_memory"] = asdict(state["last_memory"])
    tensors: dict[str, torch.Tensor] = {}
    packed = {"state": safefile.pack(state, tensors), "model": safefile.pack(model_sd, tensors)}
    return safefile.write(
        path,
        SNAPSHOT_FORMAT,
        SNAPSHOT_VERSION,
        packed,
        tensors,
        govgym_version=__version__,
        strategy=strategy,
    )


def read_snapshot(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], Strategy]:
    """Read and check a file written by ``write_snapshot``: (state, model state dict, strategy).

    Raises:
        RunError: the file cannot be read, is not a version-2 snapshot, fails its hash, or holds a
            field that is missing or out of range (one sentence naming the field).
    """
    path = Path(path)
    try:
        _, packed, tensors = safefile.read(path, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, "run snapshot")
        state = safefile.unpack(packed["state"], tensors)
        model_sd = safefile.unpack(packed["model"], tensors)
        state["memory"] = {k: memstats.MemoryStats(**v) for k, v in state["memory"].items()}
        state["last_memory"] = memstats.MemoryStats(**state["last_memory"])
        saved = Strategy.parse(state["strategy"])
    except OSError as err:
        raise RunError(
            f"cannot read run snapshot {path}: {err}. Point to a file written by FineTuneRun.save()."
        ) from None
    except (safefile.UnsafeFileError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise RunError(
            f"{err}"
            if isinstance(err, safefile.UnsafeFileError)
            else f"run snapshot {path} lacks or garbles a field ({type(err).__name__}: {err}); write it again."
        ) from None
    missing = set(REQUIRED) - set(state)
    if missing or not isinstance(model_sd, dict):
        raise RunError(
            f"run snapshot {path} lacks {sorted(missing) or 'the model state'}; it was not written by "
            "FineTuneRun.save(). Write it again."
        )
    check_state(state, path)
    return state, model_sd, saved


def _bad(path: str | Path, field: str, expected: str, value: Any) -> RunError:
    shown = (
        repr(value)
        if not isinstance(value, (torch.Tensor, np.ndarray))
        else f"an array of {tuple(value.shape)}"
    )
    return RunError(
        f"run snapshot {path}: {field} must be {expected}; found {shown[:80]}. The file was edited or "
        "written by something else (its hash was recomputed); write it again with FineTuneRun.save()."
    )


def is_count(v: Any) -> bool:
    """A non-negative integer below ``MAX_COUNT`` (not a bool, not a float that happens to be whole)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < MAX_COUNT


def is_finite_number(v: Any) -> bool:
    """A real number (not a bool) that is finite."""
    return (
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
    )


def check_state(state: dict[str, Any], path: str | Path = "") -> None:
    """Check the scalar fields of a loaded snapshot state as a config would check them.

    The step and FLOP counters are counts, ``cap_mb`` a finite MiB >= 0, the noise-scale EMA absent or
    two finite numbers, the recorded losses 1-D arrays of one length, the sampler's kept indices
    distinct counts. Shapes against the run (number of examples, parameter shapes) are checked when the
    state is put into a run.
    """
    if not is_count(state["step"]):
        raise _bad(path, "step", "an integer optimizer step count >= 0", state["step"])
    flops = state["flops"]
    if not isinstance(flops, dict) or set(flops) != {"train", "eval", "score", "measure"}:
        raise _bad(path, "flops", "a dict of the train, eval, score and measure FLOP counts", flops)
    for k, v in flops.items():
        if not is_count(v):
            raise _bad(path, f"flops.{k}", "an integer FLOP count >= 0", v)
    cap = state["cap_mb"]
    if not is_finite_number(cap) or cap < 0:
        raise _bad(path, "cap_mb", "a finite number of MiB >= 0 (0 = no cap)", cap)
    gns = state["gns"]
    if gns is not None and (
        not isinstance(gns, (tuple, list)) or len(gns) != 2 or not all(is_finite_number(x) for x in gns)
    ):
        raise _bad(path, "gns", "null or two finite numbers (the noise-scale averages)", gns)
    sampler = state["sampler"]
    kept = sampler.get("kept") if isinstance(sampler, dict) else None
    if not isinstance(kept, np.ndarray) or kept.ndim != 1 or kept.dtype.kind not in "iu" or len(kept) == 0:
        raise _bad(path, "sampler.kept", "a non-empty 1-D integer array of example indices", kept)
    if (kept < 0).any() or len(np.unique(kept)) != len(kept):
        raise _bad(path, "sampler.kept", "distinct example indices >= 0", kept)
    if "example_loss" in state or "last_seen" in state:
        loss, seen = state.get("example_loss"), state.get("last_seen")
        for name, t in (("example_loss", loss), ("last_seen", seen)):
            if not isinstance(t, torch.Tensor) or t.ndim != 1:
                raise _bad(path, name, "a 1-D tensor (one value per training example)", t)
        if seen.dtype.is_floating_point or bool((seen < -1).any()) or bool((seen > state["step"]).any()):
            raise _bad(path, "last_seen", f"integer steps in -1 .. step ({state['step']})", seen)
        if bool(torch.isinf(loss).any()) or bool((loss < 0).any()):
            raise _bad(path, "example_loss", "losses >= 0 (nan where never drawn)", loss)


def load_model_state(
    model: torch.nn.Module, sd: dict[str, torch.Tensor], strategy: Strategy, path: Path | str = ""
) -> None:
    """Load a saved ``model.state_dict()`` into ``model`` (already under ``strategy``), exactly or not at all.

    4-bit (qlora) weights are rebuilt from their packed data and quantization state
    (``Params4bit.from_prequantized``); int8 and plain weights load through ``load_state_dict``. The
    state dict read back must equal the saved one bit for bit, else a RunError names the strategy.
    Weights that are not finite (nan, inf) are refused before anything is loaded.
    """
    sd = dict(sd)
    bad = [
        k
        for k, v in sd.items()
        if not isinstance(v, torch.Tensor)
        or (v.dtype.is_floating_point and not bool(torch.isfinite(v).all()))
    ]
    if bad:  # checked before anything is loaded: a refused file leaves the model as it was
        raise RunError(
            f"run snapshot {path}: model weight {bad[0]} is not a tensor of finite values; a run cannot "
            "continue from it. Load a snapshot saved before the weights diverged."
        )
    prequantized: set[str] = set()
    if strategy.base == "qlora":
        import bitsandbytes as bnb

        for name, mod in model.named_modules():
            key = f"{name}.weight" if name else "weight"
            if isinstance(mod, bnb.nn.Linear4bit) and key in sd:
                stats = {k[len(key) + 1 :]: v for k, v in sd.items() if k.startswith(key + ".")}
                prequantized |= {key} | {f"{key}.{k}" for k in stats}
                mod.weight = bnb.nn.Params4bit.from_prequantized(
                    data=sd[key],
                    quantized_stats=dict(stats),
                    requires_grad=False,
                    device=mod.weight.device,
                    module=mod,
                )
    try:
        res = model.load_state_dict({k: v for k, v in sd.items() if k not in prequantized}, strict=False)
        missing = set(res.missing_keys) - prequantized
        if missing or res.unexpected_keys:
            raise RuntimeError(
                f"missing keys {sorted(missing)[:3]}, unexpected keys {sorted(res.unexpected_keys)[:3]}"
            )
    except RuntimeError as err:
        raise RunError(
            f"run snapshot {path}: its model does not fit this run's model under strategy {strategy} ({str(err)[:300]}); "
            "load it into a run built from the same config (model, LoRA settings) as the run that saved it."
        ) from None
    back = model.state_dict()
    if set(back) != set(sd) or not all(
        back[k].dtype == sd[k].dtype and torch.equal(back[k].cpu(), sd[k].cpu()) for k in sd
    ):
        raise RunError(
            f"run snapshot {path}: the weights of strategy {strategy} do not round-trip exactly through this "
            "torch/bitsandbytes; refusing to resume from an approximation. Switch the run to 'full' or 'lora' before saving."
        )


class RunSnapshots:
    """``FineTuneRun``'s snapshots: in memory (``snapshot``/``restore``, for branching an env's step tree) and
    on file (``save``/``load``, through ``write_snapshot``/``read_snapshot``). A mixin: it reads and sets the
    run's own fields (model, optimizer, schedule, sampler, counters, recorded losses)."""

    def training_state(self) -> dict[str, Any]:
        """Everything but the model: optimizer, schedule, RNG, data order, counters (copies)."""
        return {
            "version": SNAPSHOT_VERSION,
            "strategy": self.strategy.name,
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "sampler": self.sampler.state_dict(),
            "step": self.step,
            "flops": dict(self.flops),
            "flop_cache": self.flop_cache.state_dict(),
            "memory": copy.deepcopy(self.memory),
            "last_memory": copy.deepcopy(self.last_memory),
            "cap_mb": self.cap_mb,
            "gns": self._gns,
            "example_loss": self.example_loss.clone(),
            "last_seen": self.last_seen.clone(),
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume or branch the run, in memory: model, optimizer, schedule, RNG, data order."""
        return {**self.training_state(), "model": copy.deepcopy(self.model)}

    def restore(self, snap: dict[str, Any]) -> None:
        """Return the run to ``snap`` exactly (continuing gives bit-identical results on CPU)."""
        if snap.get("version") != SNAPSHOT_VERSION:
            raise RunError(
                f"snapshot version {snap.get('version')} is not {SNAPSHOT_VERSION}; it was written by another govgym."
            )
        self.model = copy.deepcopy(snap["model"])
        self._restore_state(snap)

    def _restore_state(self, snap: dict[str, Any]) -> None:
        self.strategy = Strategy.parse(snap["strategy"])
        self.step = snap["step"]
        self._build_optimizer(None)
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        self.scheduler.load_state_dict(copy.deepcopy(snap["scheduler"]))
        torch.set_rng_state(snap["rng"]["torch"])
        if (
            snap["rng"]["cuda"] is not None and torch.cuda.is_available()
        ):  # a CUDA run's file read on CPU: no CUDA RNG to set
            torch.cuda.set_rng_state_all(snap["rng"]["cuda"])
        self.sampler.load_state_dict(snap["sampler"])
        self.flops = dict(snap["flops"])
        self.flop_cache.load_state_dict(snap["flop_cache"])
        self.memory = copy.deepcopy(snap["memory"])
        self.last_memory = copy.deepcopy(snap["last_memory"])
        self.set_cap(snap["cap_mb"])
        self._gns = snap["gns"]
        self.n_params = param_counts(self.model)
        if "example_loss" not in snap:  # a version-2 file written before losses were recorded
            self._clear_recorded()
            return
        loss, seen = snap["example_loss"], snap["last_seen"]
        n = len(self.train_ids)
        if tuple(loss.shape) != (n,) or tuple(seen.shape) != (n,):
            raise ValueError(
                f"recorded losses of {tuple(loss.shape)} / last seen of {tuple(seen.shape)} examples, this run has {n}"
            )
        self.example_loss = loss.to(self.device, torch.float32).clone()
        self.last_seen = seen.to(self.device, torch.long).clone()

    def save(self, path: str | Path) -> Path:
        """Write a snapshot file atomically: JSON + safetensors behind a content hash (``efficiency/snapshot.py``)."""
        return write_snapshot(path, self.training_state(), self.model.state_dict(), self.strategy.name)

    def load(self, path: str | Path) -> None:
        """Restore from a file written by ``save``: format, version, content hash and every field are checked first.

        The run is brought to the saved strategy (its model structure) and the saved tensors are loaded
        into it; a file from a run of another model is refused.
        """
        state, model_sd, saved = read_snapshot(path)
        if int(state["sampler"]["kept"].max()) >= len(self.train_ids):
            raise RunError(
                f"run snapshot {path}: sampler.kept names example {int(state['sampler']['kept'].max())}, this run "
                f"has {len(self.train_ids)} training examples; load a snapshot of a run built from the same config."
            )
        self.switch_strategy(saved)
        load_model_state(self.model, model_sd, saved, path)
        try:
            self._restore_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise RunError(
                f"run snapshot {path}: its optimizer/schedule/data state does not fit this run ({type(err).__name__}: {str(err)[:200]}); "
                "the run is left half-restored: build a new run and load a snapshot of the same config."
            ) from None


__all__ = [
    "RunSnapshots",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "check_state",
    "load_model_state",
    "read_snapshot",
    "write_snapshot",
]
