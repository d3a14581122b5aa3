"""Per-example data scorers (batched passes, each reporting its FLOPs) and the keep/drop selection.

Scorers (higher = harder / more surprising):

- ``recorded``: the example's training loss as recorded by the optimizer step that last drew it
  (``per_example_losses`` on that step's logits, no extra forward): 0 FLOPs, stale by at most one
  epoch. ``FineTuneRun.reprune`` reads it from the run; it is not a pass over the data, so it is in
  ``REPRUNE_SCORERS`` and not in ``SCORERS``.

- ``loss``: mean token cross-entropy of the example under the current model.
- ``el2n``: mean over tokens of ‖softmax(logits) − onehot(label)‖₂ (Paul et al. 2021, "Deep Learning
  on a Data Diet"): the error vector's norm, bounded in [0, √2].
- ``gradnorm``: the exact norm of the example's loss gradient w.r.t. the output layer (lm_head)
  weight, a standard proxy for the full per-example gradient norm. With token residuals
  e_t = (p_t − y_t)/n (n valid tokens) and the hidden states h_t that lm_head multiplies,
  grad = Σ_t e_t h_tᵀ, so ‖grad‖²_F = Σ_{t,s} (e_t·e_s)(h_t·h_s) = sum(EEᵀ ∘ HHᵀ): two [T, T] Gram
  matrices per example from batched matmuls, never a per-example backward pass (Goodfellow 2015).
  H is captured by a forward hook on lm_head's input — the final-norm output, equal to
  ``hidden_states[-1]`` in transformers 5.23 (checked), without keeping every layer's states. With
  tied embeddings this is the gradient through the output use of the matrix only (the input
  embedding's gather adds rows the proxy leaves out).

Each batch is one no_grad forward in eval mode (so checkpointing, peft and bnb layers need nothing
special) plus the scorer's tensor ops, counted with FlopCounterMode once per (scorer, batch shape,
model) and reused. Default workload (d = 128, vocab 2,048, T = 128, batch 8), MFLOP per example:

    strategy             loss   el2n   gradnorm
    full                306.2  306.2    376.4
    lora / qlora / int8 326.4  326.4    396.6   (adapters are not merged: +2·N_lora per token)

``loss`` and ``el2n`` cost just the forward: softmax, norms and cross-entropy are elementwise or
reductions, which FlopCounterMode counts as zero. ``gradnorm`` adds the Grams: 2·T²·V for EEᵀ
(66.1 M at T = 127 predicting positions) + 2·T²·d for HHᵀ (4.1 M), about what forming the [V, d]
gradient directly would cost here (2·T·V·d = 66.6 M) while holding [B, T, T] instead of [B, V, d].
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from govgym.efficiency.compute import FlopCache, param_counts
from govgym.efficiency.memory import base_model

SCORERS = ("loss", "el2n", "gradnorm")
"""The exact scorers: a no-grad pass over the examples to score, FLOPs counted."""
RECORDED = "recorded"
REPRUNE_SCORERS = (*SCORERS, RECORDED)
"""What a reprune can rank by: an exact scorer, or the losses recorded during training (0 FLOPs)."""
MODES = ("hardest", "easiest", "random")


def per_example_losses(
    logits: torch.Tensor, labels: torch.Tensor, causal: bool = True, chunk: int = 0
) -> torch.Tensor:
    """Each example's loss, as the model's own loss would count it (float32, no gradient).

    Causal LM: logits at position t predict labels at t+1; the mean over the example's labels that are
    not -100 (nan when it has none), i.e. what ``model(input_ids=x, labels=y).loss`` is for that one
    example. Classification: the cross-entropy of each row (integer labels) or the squared error (one
    regression output). Shared by ``FineTuneRun`` (recorded losses) and ``GovernedTrainer``.

    Args:
        logits: [B, T, V] (causal) or [B, C] from the forward pass the optimizer step already ran.
        labels: [B, T] (causal, -100 = ignored) or [B].
        causal: causal-LM shift and token mean (True) or per-row classification / regression.
        chunk: rows per cross-entropy call (0 = all at once). The run passes 1 so that the temporary
            [rows, T, V] float32 log-probabilities stay one example's size (1 MiB on the default
            workload instead of 8): the step's measured memory peak is not raised by the recording.
    """
    with torch.no_grad():
        if causal:
            rows = chunk if chunk > 0 else len(logits)
            out = []
            for s in range(0, len(logits), rows):
                lg = logits[s : s + rows, :-1, :].detach().float()
                lb = labels[s : s + rows, 1:].to(lg.device)
                ce = F.cross_entropy(
                    lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=-100, reduction="none"
                ).view(lb.shape)
                valid = lb.ne(-100)
                out.append((ce * valid).sum(1) / valid.sum(1).float())  # 0/0 = nan: no label tokens
            return torch.cat(out) if out else logits.new_zeros(0, dtype=torch.float32)
        logits = logits.detach().float()
        labels = labels.to(logits.device)
        if logits.shape[-1] == 1 and labels.is_floating_point():
            return (logits.squeeze(-1) - labels.float()).pow(2).reshape(len(labels), -1).mean(1)
        return F.cross_entropy(logits, labels.long().view(-1), reduction="none")


def per_example_losses_from_loss(loss: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """Each example's loss, read from the log-probabilities the causal-LM loss already computed.

    ``model(input_ids, labels=labels).loss`` is ``cross_entropy(logits.view(-1, V), shifted labels)``,
    whose autograd graph keeps its ``log_softmax`` output for the backward pass. Gathering each target
    token's log-probability from that saved tensor gives the per-token losses the mean was taken over,
    at the cost of a [B, T] gather: a second cross-entropy over the [B, T, V] logits, which is what
    ``per_example_losses`` does, costs ~10% of a training step of the default workload on CPU.
    The optimized loss is not touched.

    Returns:
        float32 [B] as ``per_example_losses(logits, labels)`` (nan: no label tokens), or None when the
        loss has no graph or its graph is not the expected cross-entropy over [B·T, V] (then the caller
        recomputes from the logits).
    """
    if loss.grad_fn is None:
        return None
    stack, seen, logp = [loss.grad_fn], set(), None
    while stack and len(seen) < 16:  # the log_softmax sits one or two nodes below the loss
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == "LogSoftmaxBackward0":
            logp = node._saved_result
            break
        stack.extend(f for f, _ in node.next_functions)
    b, t = labels.shape
    if logp is None or logp.dim() != 2 or logp.shape[0] != b * t:
        return None
    with torch.no_grad():
        tgt = F.pad(labels[:, 1:].to(logp.device), (0, 1), value=-100)  # as the model's loss shifts them
        valid = tgt.ne(-100)
        tok = -logp.view(b, t, -1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1).float()
        return (tok * valid).sum(1) / valid.sum(1).float()


def fill_unseen(recorded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recorded losses with the never-seen examples (nan) set to the mean of the seen ones.

    An example not drawn yet carries no information: ranking it at the mean of the others makes it
    neither the first dropped as hardest nor as easiest (ties among them are broken at random by the
    caller). With nothing seen at all, every value is 0 (a reprune then drops a random share).

    Returns:
        (float64 values, bool mask of the examples that had a recorded loss).
    """
    vals = np.asarray(recorded, dtype=np.float64).copy()
    seen = np.isfinite(vals)
    vals[~seen] = vals[seen].mean() if seen.any() else 0.0
    return vals, seen


@dataclass
class Scores:
    """One score per example (higher = harder) and what computing them cost."""

    name: str
    """The scorer, one of ``SCORERS``."""
    values: np.ndarray
    """float64 [N], in the order of the examples given."""
    flops: int
    """FLOPs of all scoring passes (counted or from the cache), to be charged to the run."""
    seconds: float
    """Wall time of the scoring."""


def _output_layer(model: nn.Module) -> nn.Module:

    out = base_model(model).get_output_embeddings()
    if out is None:
        raise ValueError(
            "gradnorm scorer: the model has no output embeddings (lm_head) to take gradients of."
        )
    return out


def _score_batch(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, scorer: str) -> torch.Tensor:
    """Scores of one batch (shape [B]); runs in no_grad."""
    captured: dict[str, torch.Tensor] = {}
    handle = None
    if scorer == "gradnorm":
        handle = _output_layer(model).register_forward_hook(
            lambda _m, inp, _o: captured.__setitem__("h", inp[0])
        )
    try:
        logits = model(input_ids=ids).logits
    finally:
        if handle is not None:
            handle.remove()
    logits, tgt = logits[:, :-1].float(), labels[:, 1:]  # position t predicts token t+1
    valid = tgt != -100
    n = valid.sum(1).clamp(min=1)
    safe = tgt.clamp(min=0)
    if scorer == "loss":
        ce = F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")
        return (ce * valid).sum(1) / n
    probs = logits.softmax(-1)
    resid = probs - F.one_hot(safe, probs.shape[-1]).to(probs.dtype)
    resid = resid * valid.unsqueeze(-1)
    if scorer == "el2n":
        return resid.norm(dim=-1).sum(1) / n
    h = captured["h"][:, :-1].float()
    e = resid / n.view(-1, 1, 1)
    gram_e = torch.bmm(e, e.transpose(1, 2))  # [B, T, T]
    gram_h = torch.bmm(h, h.transpose(1, 2))
    return (gram_e * gram_h).sum((1, 2)).clamp(min=0).sqrt()


@torch.no_grad()
def score_examples(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    scorer: str,
    batch_size: int = 32,
    flop_cache: FlopCache | None = None,
) -> Scores:
    """Score every example in batched no_grad forward passes (eval mode; each module's mode restored).

    Args:
        model: the live (possibly peft / quantized / checkpointed) causal LM.
        input_ids: [N, T] token ids.
        labels: [N, T], -100 = ignored; position t's logits are scored against labels[t + 1].
        scorer: one of ``SCORERS``.
        batch_size: examples per pass; one batch of [B, T, vocab] probabilities is live at a time.
        flop_cache: where pass FLOPs are cached by (scorer, batch shape, model size); fresh if None.

    Returns:
        The scores (one per example, higher = harder) with their FLOPs and wall time.

    Raises:
        ValueError: unknown scorer, or input_ids and labels of different shapes.
    """
    if scorer not in SCORERS:
        raise ValueError(f"scorer: got {scorer!r}; allowed: {', '.join(SCORERS)}.")
    if input_ids.shape != labels.shape or input_ids.dim() != 2:
        raise ValueError(
            f"score_examples: input_ids {tuple(input_ids.shape)} and labels {tuple(labels.shape)} must both be "
            "[N, T] with the same shape; pass the labels of the same examples (-100 where ignored)."
        )
    cache = flop_cache if flop_cache is not None else FlopCache()
    counts = param_counts(model)
    modes = [(mod, mod.training) for mod in model.modules()]  # restored per module, not wholesale
    model.eval()
    t0 = time.perf_counter()
    out, flops = [], 0
    try:
        for s in range(0, len(input_ids), batch_size):
            ids, lab = input_ids[s : s + batch_size], labels[s : s + batch_size]
            # the parameter counts tell base strategies apart (lora, qlora and int8 share a key and,
            # measured, the same FLOPs); the last partial batch has its own shape, hence its own key
            key = ("score", scorer, tuple(ids.shape), counts["total"], counts["trainable"])
            vals, fl = cache.measure(key, partial(_score_batch, model, ids, lab, scorer))
            out.append(vals.cpu())
            flops += fl
    finally:
        for mod, training in modes:
            mod.training = training
    values = torch.cat(out).double().numpy() if out else np.zeros(0)
    return Scores(scorer, values, flops, time.perf_counter() - t0)


def select(
    scores: np.ndarray, fraction_drop: float, mode: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Positions (sorted) of the examples to KEEP after dropping ``fraction_drop`` of them.

    Args:
        scores: one score per example (higher = harder).
        fraction_drop: in [0, 1); round(fraction_drop · N) examples are dropped.
        mode: ``hardest`` drops the highest scores, ``easiest`` the lowest, ``random`` a uniform draw.
        rng: the generator for ``random`` (a fixed ``default_rng(0)`` if None).

    Returns:
        Sorted int positions into ``scores``. Ties are broken by position through a stable sort (among
        equal scores the later example counts as harder), so the result is deterministic.
    """
    if mode not in MODES:
        raise ValueError(f"mode: got {mode!r}; allowed: {', '.join(MODES)}.")
    if not 0.0 <= fraction_drop < 1.0:
        raise ValueError(f"fraction_drop: got {fraction_drop}; it must lie in [0, 1).")
    n = len(scores)
    n_drop = int(round(fraction_drop * n))
    drop = drop_positions(scores, n_drop, mode, rng)
    return np.setdiff1d(np.arange(n), drop)


def drop_positions(
    scores: np.ndarray, n_drop: int, mode: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Positions (sorted) of the ``n_drop`` examples to DROP: highest scores (hardest), lowest (easiest) or random.

    Ties are broken as in ``select`` (stable sort: the later example counts as harder).
    """
    if mode not in MODES:
        raise ValueError(f"mode: got {mode!r}; allowed: {', '.join(MODES)}.")
    n = len(scores)
    if not 0 <= n_drop <= n:
        raise ValueError(f"n_drop: got {n_drop}; it must lie in [0, {n}] (the number of examples).")
    if mode == "random":
        order = (rng or np.random.default_rng(0)).permutation(n)
        drop = order[:n_drop]
    else:
        order = np.argsort(np.asarray(scores), kind="stable")
        drop = order[n - n_drop :] if mode == "hardest" else order[:n_drop]
    return np.sort(drop)


__all__ = [
    "MODES",
    "RECORDED",
    "REPRUNE_SCORERS",
    "SCORERS",
    "Scores",
    "drop_positions",
    "fill_unseen",
    "per_example_losses",
    "per_example_losses_from_loss",
    "score_examples",
    "select",
]
