"""FineTuneRun.advance(K) vs a plain hand-written PyTorch loop: same model, data, batches and steps.

    python benchmarks/step_loop.py                      # embedded default workload, K=20, 10 rounds
    python benchmarks/step_loop.py --rounds 20 memory.strategy=lora

Both loops start from the same weights and draw the same batches, so their losses must match bit for
bit (checked): the only difference is what the run adds per step (keeping the grad-norm tensor,
summing gradients for the noise-scale estimate) and per interval (one host read). The first step of
each (strategy, batch shape) in the run also measures FLOPs and memory once; that one-off cost is
reported separately and excluded from the steady-state ratio, like a warm-up. Timing is interleaved
(run block, plain block, run block, ...) so machine noise hits both alike. Goal: ratio <= 1.01.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from transformers import get_scheduler

from govgym.cli import default_config
from govgym.efficiency.config import RunConfig
from govgym.efficiency.run import FineTuneRun
from govgym.efficiency.workload import load_workload
from govgym.typed import parse_overrides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=int, default=20, help="steps per advance() call (K)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved timed blocks per loop")
    ap.add_argument("--config", default="", help="run config YAML (default: packaged default)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    cfg = RunConfig.from_yaml(args.config or default_config(), parse_overrides(args.overrides))
    cfg.optim.total_steps = max(cfg.optim.total_steps, args.interval * (args.rounds + 2))
    wl = load_workload(cfg, progress=True)
    plain_model = copy.deepcopy(wl.model)
    run = FineTuneRun(cfg, workload=wl)
    if run.strategy.name != "full":
        raise SystemExit("the plain loop is written for full fine-tuning; use memory.strategy=full")

    # ---- the plain loop: nanoGPT-style, nothing but the training step
    o = cfg.optim
    model = plain_model.to(run.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    sched = get_scheduler(
        o.schedule if o.schedule != "constant" else "constant_with_warmup", opt, o.warmup_steps, o.total_steps
    )
    order = copy.deepcopy(run.sampler)  # same batches, drawn from a copy of the run's sampler
    train_ids, train_labels = run.train_ids, run.train_labels

    def plain(n: int) -> list[float]:
        losses = []
        for _ in range(n):
            idx = order.next_batch(o.batch_size)
            loss = model(input_ids=train_ids[idx], labels=train_labels[idx]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm or float("inf"))
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        return torch.stack(losses).tolist()

    k = args.interval
    t0 = time.perf_counter()
    run.advance(k)  # includes the one-off FLOP + memory measurement
    t_first_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain(k)
    t_first_plain = time.perf_counter() - t0
    # The run's first step is FLOP-counted under a TorchDispatchMode, which changes sdpa's rounding
    # (~1e-8), so hand the plain loop the run's exact state before the timed, bit-compared rounds.
    model.load_state_dict(run.model.state_dict())
    opt.load_state_dict(copy.deepcopy(run.optimizer.state_dict()))  # load_state_dict would share the tensors
    sched.load_state_dict(run.scheduler.state_dict())
    order = copy.deepcopy(run.sampler)
    t_run = t_plain = 0.0
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        a = run.advance(k).losses
        t_run += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = plain(k)
        t_plain += time.perf_counter() - t0
        if a != b:
            i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            raise SystemExit(f"the two loops diverged at step {i} of a round: {a[i]} vs {b[i]}")
    steps = k * args.rounds
    print(
        f"workload: {run.n_params['total']:,} params, batch {o.batch_size} x {train_ids.shape[1]} tokens, "
        f"strategy {run.strategy}, {torch.get_num_threads()} threads, device {run.device}"
    )
    print(f"losses identical in both loops for all {steps} timed steps")
    print(f"plain loop      : {1e3 * t_plain / steps:8.2f} ms/step")
    print(f"FineTuneRun     : {1e3 * t_run / steps:8.2f} ms/step")
    print(
        f"first interval  : run {t_first_run:.2f} s vs plain {t_first_plain:.2f} s (one-off FLOP + memory measurement)"
    )
    print(f"ratio run/plain : {t_run / t_plain:.4f}   (goal <= 1.01)")


if __name__ == "__main__":
    main()
