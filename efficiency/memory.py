"""Memory strategies and switching between them mid-run, in place.

A strategy says how the base weights are held (full fp32 / frozen fp32 + LoRA / frozen NF4 4-bit + LoRA
/ frozen int8 + LoRA), which optimizer holds the state (AdamW or bitsandbytes' 8-bit AdamW) and
whether activations are recomputed (gradient checkpointing). Switching never restarts the run: the
live model object is converted, routed through the full-precision form when the base changes:

    full  -> lora    get_peft_model on the live model (B = 0, so the function is unchanged)
    lora  -> full    merge_and_unload (base Parameters keep their identity)
    full  -> qlora   target nn.Linear -> bnb Linear4bit (NF4, quantized in place) + get_peft_model
    qlora -> full    adapters' delta added to the dequantized weight in fp32 (exact, no requantize)
    int8  <-> full   as qlora, with bnb Linear8bitLt
    x -> y           x -> full -> y when both bases are adapters (lora <-> qlora <-> int8)
    +gc / +adam8     toggled without touching the weights

Memory measurement and the analytic estimate live in ``memstats``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

# re-exported: the type lives in the torch-free efficiency/strategy.py, the error in the base
from govgym.efficiency.strategy import Strategy as Strategy
from govgym.errors import StrategyError as StrategyError

log = logging.getLogger(__name__)


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _targets(model: nn.Module, names: list[str]) -> list[tuple[str, nn.Module, str, nn.Module]]:
    """(parent name, parent, child attr, child) for every module whose last name part is a target."""
    out = []
    for pname, parent in model.named_modules():
        for cname, child in parent.named_children():
            if cname in names:
                out.append((pname, parent, cname, child))
    return out


def _quantize(model: nn.Module, kind: str, targets: list[str]) -> None:
    """Replace target nn.Linear layers by frozen bitsandbytes 4-bit (NF4) or int8 layers, in place."""
    import bitsandbytes as bnb

    device = next(model.parameters()).device
    found = 0
    for _, parent, cname, lin in _targets(model, targets):
        if type(lin) is not nn.Linear:
            continue
        w = lin.weight.data
        if kind == "qlora":
            q = bnb.nn.Linear4bit(
                lin.in_features,
                lin.out_features,
                bias=lin.bias is not None,
                compute_dtype=torch.float32,
                quant_type="nf4",
                device="cpu",
            )
            q.weight = bnb.nn.Params4bit(w.detach().to("cpu").clone(), requires_grad=False, quant_type="nf4")
            # bitsandbytes >= 0.50.2 repacks the weight in place for its AVX512-BF16 gemv on the first
            # no-grad eval forward on such CPUs: the packed layout breaks dequantize_4bit (merging,
            # switching back), asserts on out_features not divisible by 32, and makes eval losses
            # depend on the CPU model. One layout everywhere keeps episodes replayable across machines.
            q.support_avx512bf16_for_cpu = False
        else:
            q = bnb.nn.Linear8bitLt(
                lin.in_features,
                lin.out_features,
                bias=lin.bias is not None,
                has_fp16_weights=False,
                threshold=0.0,
                device="cpu",
            )
            q.weight = bnb.nn.Int8Params(
                w.detach().to("cpu").clone(), requires_grad=False, has_fp16_weights=False
            )
        if lin.bias is not None:
            q.bias = nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
        setattr(parent, cname, q.to(device))  # .to() quantizes
        found += 1
    if not found:
        raise StrategyError(
            f"strategy {kind}: none of memory.lora_targets={targets} names an nn.Linear in this model, so "
            "nothing can be quantized. Set memory.lora_targets to the model's linear layer names."
        )
    flag = "is_loaded_in_4bit" if kind == "qlora" else "is_loaded_in_8bit"
    setattr(model, flag, True)  # peft dispatches its bnb LoRA layers on this flag


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """The fp32 [out, in] weight of a bnb Linear4bit / Linear8bitLt (or a plain Linear)."""
    import bitsandbytes as bnb

    w = layer.weight
    if isinstance(layer, bnb.nn.Linear4bit):
        return bnb.functional.dequantize_4bit(w.data, w.quant_state).float()
    if isinstance(layer, bnb.nn.Linear8bitLt):
        # The row scales live on the weight until the first forward, then move to layer.state.
        scb = w.SCB if getattr(w, "SCB", None) is not None else layer.state.SCB
        return bnb.functional.int8_vectorwise_dequant(w.data, scb).float()
    return w.data.float()


def _is_quantized(layer: nn.Module) -> bool:
    import bitsandbytes as bnb

    return isinstance(layer, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))


def _to_linear(layer: nn.Module, delta: torch.Tensor | None) -> nn.Linear:
    w = dequantized_weight(layer)
    if delta is not None:
        w = w + delta.to(w)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None, device=w.device)
    lin.weight = nn.Parameter(w.contiguous())
    if layer.bias is not None:
        lin.bias = nn.Parameter(layer.bias.detach().float().clone())
    return lin


def to_full(model: nn.Module) -> nn.Module:
    """Bring any strategy's model back to plain, fully trainable fp32 weights (adapters merged)."""

    if hasattr(model, "get_base_model"):
        deltas: dict[str, torch.Tensor] = {}
        quantized = False
        for name, mod in model.named_modules():
            if isinstance(mod, LoraLayer) and _is_quantized(mod.get_base_layer()):
                quantized = True
                deltas[name] = sum(mod.get_delta_weight(a).detach().float() for a in mod.active_adapters)
        if quantized:
            # Merge in fp32 ourselves: peft's bnb merge re-quantizes W + ΔW, adding a second rounding error.
            model = model.unload()
            prefix = "base_model.model."
            for name, delta in deltas.items():
                parent_name, _, attr = name[len(prefix) :].rpartition(".")
                parent = model.get_submodule(parent_name)
                setattr(parent, attr, _to_linear(getattr(parent, attr), delta))
        else:
            model = model.merge_and_unload()
    for _, parent, cname, child in [(a, b, c, d) for a, b, c, d in _targets_all(model) if _is_quantized(d)]:
        setattr(parent, cname, _to_linear(child, None))
    for flag in ("is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, flag, False):
            setattr(model, flag, False)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _targets_all(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Module]]:
    return [(pn, p, cn, c) for pn, p in model.named_modules() for cn, c in p.named_children()]


def add_adapters(model: nn.Module, strategy: Strategy, mem: Any, seed: int) -> nn.Module:
    """Quantize the base if asked, then wrap the live model with fresh LoRA adapters (B = 0)."""

    if strategy.base in ("qlora", "int8"):
        _quantize(model, strategy.base, list(mem.lora_targets))
    cfg = LoraConfig(
        r=mem.lora_rank,
        lora_alpha=mem.lora_alpha,
        lora_dropout=mem.lora_dropout,
        target_modules=list(mem.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    # Adapter init (kaiming A) draws from torch's global RNG; fork it so the switch is reproducible
    # from (seed, step) and does not shift the run's own random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, cfg)
        except ValueError as err:
            raise StrategyError(
                f"strategy {strategy.name}: peft could not add LoRA adapters ({err}). Set "
                "memory.lora_targets to module names of this model (e.g. q_proj, v_proj for Llama, "
                "c_attn for GPT-2)."
            ) from None


def set_checkpointing(model: nn.Module, on: bool) -> None:
    """Toggle gradient (activation) checkpointing on the live model; non-reentrant, so frozen inputs work."""
    m = base_model(model)
    if on:
        kwargs = {"use_reentrant": False}
        if hasattr(m, "activation_checkpointing_enable"):  # transformers >= 5 name
            m.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if hasattr(m, "config"):
            m.config.use_cache = False
    else:
        disable = getattr(m, "activation_checkpointing_disable", None) or m.gradient_checkpointing_disable
        disable()


def apply_strategy(model: nn.Module, old: Strategy | None, new: Strategy, mem: Any, seed: int) -> nn.Module:
    """Convert ``model`` (currently under ``old``, None = fresh fp32 model) to ``new``; returns the model.

    The returned object may be a different wrapper (peft) around the same live modules.
    """
    old_base = old.base if old is not None else "full"
    if old_base != new.base:
        if old_base != "full":
            model = to_full(model)
        if new.base != "full":
            model = add_adapters(model, new, mem, seed)
    elif old is None and new.base != "full":
        model = add_adapters(model, new, mem, seed)
    if old is None or old.gc != new.gc:
        set_checkpointing(model, new.gc)
    model.train()
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates, in a stable (module) order."""
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(
    params: list[nn.Parameter],
    strategy: Strategy,
    lr: float,
    optim: Any,
    old: torch.optim.Optimizer | None = None,
) -> torch.optim.Optimizer:
    """AdamW (torch) or 8-bit AdamW (bitsandbytes) over ``params``; state of ``old`` carried where it applies.

    State carries for every parameter that was trainable before and still is (same Parameter object)
    when the optimizer class is unchanged: a gc toggle keeps all of it, full -> lora -> full keeps the
    base weights' moments only if they stayed trainable (they do not: the base is frozen under LoRA).
    """
    kw = dict(lr=lr, betas=(optim.beta1, optim.beta2), weight_decay=optim.weight_decay)
    if strategy.adam8:
        import bitsandbytes as bnb

        opt: torch.optim.Optimizer = bnb.optim.AdamW8bit(params, **kw)
    else:
        opt = torch.optim.AdamW(params, **kw)
    if old is not None and type(old) is type(opt):
        carried = 0
        for p in params:
            if p in old.state:
                opt.state[p] = old.state[p]
                carried += 1
        log.debug("optimizer state carried for %d/%d parameters", carried, len(params))
    return opt
