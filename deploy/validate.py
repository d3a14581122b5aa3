"""The values of a governor artifact, checked as strictly as the same values typed on the CLI.

A content hash is integrity, not validation: anyone can recompute a sha256 after an edit. So every
value ``load_governor`` reads from ``governor.json`` and ``policy.safetensors`` is checked here before
a ``Governor`` is built (bad-inputs round 2, class 1: rows A3–A6, A8, A9), and refused with one sentence
naming the field or tensor, what it holds and what it must hold:

- ``interval_steps``: an integer (not a bool, float or string) in [1, ``MAX_INTERVAL``];
- ``action_names``: unique non-empty strings, ``continue`` and ``stop`` among them;
- an agent's network: ``layer{i}.weight`` of shape (out_i, in_i) and ``layer{i}.bias`` of shape (out_i,)
  for each activation listed, in_0 = the number of features, in_{i+1} = out_i, the last out = the number of
  actions; every value finite; no other tensor; activations and head from the known lists;
- its normalization: ``mean`` and ``var`` one finite value per feature, ``var`` >= 0, ``clip_obs`` and
  ``epsilon`` finite and > 0, ``norm_obs`` a bool;
- a heuristic's name one of ``agents.heuristics.POLICIES`` (its knobs are checked by ``make_policy``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from govgym.agents.heuristics import POLICIES
from govgym.envs.actions import CONTINUE, STOP
from govgym.errors import ConfigError

MAX_INTERVAL = 1_000_000
"""The largest decision interval K accepted: 10^6 optimizer steps, far above any run (the env uses 20)."""
ACTIVATIONS = ("Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU")
HEADS = ("logits", "q")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def check_interval(value: Any, where: str, fix: str = "", error: type[Exception] = ConfigError) -> int:
    """``value`` as K if it is an integer in [1, MAX_INTERVAL]; else ``error`` naming ``where`` (``fix`` ends it)."""
    if not _is_int(value) or not 1 <= int(value) <= MAX_INTERVAL:
        raise error(
            f"{where}: interval_steps (K, optimizer steps between decisions) must be an integer >= 1 and "
            f"<= {MAX_INTERVAL:,}; got {value!r} ({type(value).__name__}).{' ' + fix if fix else ''}"
        )
    return int(value)


def check_governor_values(
    meta: dict[str, Any],
    weights: dict[str, np.ndarray] | None,
    where: str,
    n_features: int,
    error: type[Exception] = ConfigError,
) -> None:
    """Refuse (``error``, one sentence naming the field or tensor) any value a ``Governor`` cannot run on.

    Args:
        meta: the artifact's governor.json, its hashes already checked.
        weights: the tensors of policy.safetensors (an agent), or None (a heuristic).
        where: the file, for the message.
        n_features: the observation's length (``len(FEATURE_NAMES)``).
        error: the exception type (``ArtifactError``).
    """

    def fail(text: str) -> None:
        raise error(f"governor: {where}: {text}; export it again from its source (`govgym export`).")

    check_interval(
        meta.get("interval_steps"), f"governor: {where}", "Export it again (`govgym export`).", error
    )
    names = meta.get("action_names")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
        or CONTINUE not in names
        or STOP not in names
    ):
        fail(
            f"action_names is {names!r}; it must be a list of unique action names including '{CONTINUE}' and '{STOP}'"
        )
    if meta.get("kind") == "heuristic":
        h = meta.get("heuristic")
        if not isinstance(h, dict) or h.get("name") not in POLICIES or not isinstance(h.get("knobs"), dict):
            fail(f"heuristic is {h!r}; it must name one of {', '.join(POLICIES)} with a mapping of knobs")
        if h["knobs"].get("model", "") != "":  # a path read from a file is never followed
            fail(
                f"heuristic knob model is {h['knobs']['model']!r}; an artifact's learned_curve uses the packaged "
                "model (model='') — a path inside a file is not followed"
            )
        return
    net = meta.get("network")
    if not isinstance(net, dict):
        fail("it has no network description")
    acts = net.get("activations")
    if not isinstance(acts, list) or not acts or not all(a == "" or a in ACTIVATIONS for a in acts):
        fail(f"network.activations is {acts!r}; each must be '' or one of {', '.join(ACTIVATIONS)}")
    if net.get("head") not in HEADS or not isinstance(net.get("masked"), bool):
        fail(
            f"network.head {net.get('head')!r} / masked {net.get('masked')!r}: head is one of {HEADS}, masked a bool"
        )
    weights = weights or {}
    expected = {f"layer{i}.{p}" for i in range(len(acts)) for p in ("weight", "bias")}
    if set(weights) != expected:
        fail(
            f"policy.safetensors holds tensors {sorted(weights)}; the network's {len(acts)} layers need exactly "
            f"{sorted(expected)}"
        )
    n_in = n_features
    for i in range(len(acts)):
        w, b = weights[f"layer{i}.weight"], weights[f"layer{i}.bias"]
        out = w.shape[0] if w.ndim == 2 else -1
        if i == len(acts) - 1 and out != len(names):
            fail(
                f"tensor layer{i}.weight has shape {tuple(w.shape)}; the output layer needs ({len(names)}, {n_in}) for {len(names)} actions"
            )
        if w.ndim != 2 or w.shape[1] != n_in:
            fail(
                f"tensor layer{i}.weight has shape {tuple(w.shape)}; expected ({out if out > 0 else 'n'}, {n_in})"
            )
        if b.shape != (out,):
            fail(
                f"tensor layer{i}.bias has shape {tuple(b.shape)}; expected ({out},) to match layer{i}.weight"
            )
        for name, t in ((f"layer{i}.weight", w), (f"layer{i}.bias", b)):
            if not np.issubdtype(t.dtype, np.floating) or not np.isfinite(t).all():
                fail(
                    f"tensor {name} holds {int((~np.isfinite(t)).sum()) if np.issubdtype(t.dtype, np.floating) else 'non-float'} non-finite values; every weight must be finite"
                )
        n_in = out
    norm = meta.get("normalization")
    if not isinstance(norm, dict):
        fail("it has no normalization statistics")
    if not isinstance(norm.get("norm_obs"), bool):
        fail(f"normalization.norm_obs is {norm.get('norm_obs')!r}; it must be true or false")
    for key in ("mean", "var"):
        v = norm.get(key)
        ok = (
            isinstance(v, list)
            and len(v) == n_features
            and all(_is_number(x) and math.isfinite(x) for x in v)
        )
        if not ok:
            shape = f"{len(v)} values" if isinstance(v, list) else repr(v)
            fail(
                f"normalization.{key} has {shape}; it must hold {n_features} finite numbers, one per feature"
            )
    if any(x < 0 for x in norm["var"]):
        fail(f"normalization.var has a negative variance ({min(norm['var']):g}); a variance is >= 0")
    for key in ("clip_obs", "epsilon"):
        v = norm.get(key)
        if not (_is_number(v) and math.isfinite(v) and v > 0):
            fail(f"normalization.{key} is {v!r}; it must be a finite number > 0")


__all__ = ["MAX_INTERVAL", "check_governor_values", "check_interval"]
