"""GovernorCallback overhead: the same Hugging Face Trainer run with and without the callback.

Both sides train the same tiny Llama on the same batches with the same TrainingArguments; the
callback side adds ``GovernorCallback`` with a governor that always continues (``fixed_budget``), so
it does all of its bookkeeping (per-step logs, the observation every K steps, the decision log) and
never changes the run. The callback needs a log record every step and an evaluation every K steps,
so the baseline gets the same ``logging_steps=1`` / ``eval_steps=K`` (``--same-args``, the default):
the ratio is then the callback's own cost. ``--plain`` instead compares with a run that logs every
50 steps and never evaluates, i.e. what a user pays in total for the evaluations a governor needs.

Rounds alternate the two sides in one process. Two ratios of median ms per optimizer step:
*steady* times the steps after the first decision interval (wall clock from the end of step K to the
end of training, evaluations included: what every further step costs), and *whole run* is
``train_runtime / global_step``, which also carries the callback's one-off measurement at the start
(one forward+backward and the first evaluation under FlopCounterMode), amortized over the run. Each is
given as the ratio of the two medians and as the median of the rounds' paired ratios (a round's two
runs are back to back, so a slow drift of a shared machine's load cancels out).

On a shared machine the rounds spread by several percent, more than the overhead sought. So the
callback side also times the callback itself: the wall clock spent inside every one of its Trainer
events (``perf_counter`` around each call, steady region only), per optimizer step. That is its own
cost, whatever the load; ``1 + own / step`` is the ratio it implies.

    python benchmarks/callback_overhead.py --rounds 5 --steps 60
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from govgym.agents.heuristics import make_policy
from govgym.deploy.callback import GovernorCallback

NAMES = ["continue", "stop"]


EVENTS = [n for n in vars(TrainerCallback) if n.startswith("on_")]


def timed(cb: TrainerCallback, clock: StepClock) -> list[float]:
    """Wrap every Trainer event of ``cb`` to add its wall time (after ``clock`` started) to the returned cell."""
    spent = [0.0]
    for name in EVENTS:
        fn = getattr(cb, name)

        def wrapper(*a, _fn=fn, **kw):
            t = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                if clock.t0:
                    spent[0] += time.perf_counter() - t

        setattr(cb, name, wrapper)
    return spent


class StepClock(TrainerCallback):
    """Wall clock from the end of step ``warm`` to the end of training (both sides carry it)."""

    def __init__(self, warm: int) -> None:
        self.warm, self.t0, self.t1 = warm, 0.0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warm:
            self.t0 = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.t1 = time.perf_counter()


def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(  # ~1.1M parameters: the embedded default's shape
        vocab_size=2048,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg)


def data(n: int, seq: int) -> Dataset:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 2048, (n, seq), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


def one_run(
    with_callback: bool, steps: int, k: int, plain: bool, train: Dataset, held: Dataset
) -> tuple[float, float, float]:
    """(steady, whole-run, inside the callback in the steady region) ms per optimizer step of one Trainer run."""
    with tempfile.TemporaryDirectory() as out:
        evals = (
            {}
            if plain and not with_callback
            else {"eval_strategy": "steps", "eval_steps": k, "eval_on_start": True}
        )
        args = TrainingArguments(
            out,
            max_steps=steps,
            per_device_train_batch_size=8,  # 8 seqs x 128 tokens = 1,024 tokens/step
            per_device_eval_batch_size=8,
            learning_rate=1e-3,
            logging_steps=50 if plain and not with_callback else 1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
            **evals,
        )
        clock = StepClock(k)
        callbacks: list[TrainerCallback] = [clock]
        spent = [0.0]
        if with_callback:
            gov = make_policy("fixed_budget", NAMES)
            cb = GovernorCallback(gov, budget_flops=1e18, interval_steps=k, log_path=f"{out}/d.json")
            spent = timed(cb, clock)
            callbacks.append(cb)
        trainer = Trainer(model(), args, train_dataset=train, eval_dataset=held, callbacks=callbacks)
        result = trainer.train()
        n = trainer.state.global_step - k
        steady = 1000.0 * (clock.t1 - clock.t0) / n
        return (
            steady,
            1000.0 * result.metrics["train_runtime"] / trainer.state.global_step,
            1000.0 * spent[0] / n,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds (each side runs once per round)"
    )
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    ap.add_argument("--interval", type=int, default=20, help="decision interval K")
    ap.add_argument("--plain", action="store_true", help="baseline logs every 50 steps and never evaluates")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    train, held = data(512, 128), data(32, 128)
    base, gov = [], []
    for r in range(a.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)  # alternate who goes first
        for side in order:
            (gov if side else base).append(one_run(side, a.steps, a.interval, a.plain, train, held))
    kind = "plain run (no eval, log every 50)" if a.plain else "same args (log every step, eval every K)"
    print(
        f"{a.rounds} rounds x {a.steps} steps, K={a.interval}, {torch.get_num_threads()} threads; baseline: {kind}"
    )
    for i, what in enumerate(("steady (after step K)", "whole run")):
        b, g = statistics.median(x[i] for x in base), statistics.median(x[i] for x in gov)
        paired = statistics.median(y[i] / x[i] for x, y in zip(base, gov))
        print(f"{what}:")
        print(
            f"  Trainer alone        : {b:8.2f} ms/step  (rounds: {', '.join(f'{x[i]:.1f}' for x in base)})"
        )
        print(f"  Trainer + callback   : {g:8.2f} ms/step  (rounds: {', '.join(f'{x[i]:.1f}' for x in gov)})")
        print(
            f"  ratio callback/alone : {g / b:.4f} (of the medians), {paired:.4f} (median of paired rounds)   (goal <= 1.01)"
        )
    own = statistics.median(x[2] for x in gov)
    step = statistics.median(x[0] for x in gov)
    print(
        f"inside the callback (steady): {own:.3f} ms/step = {100 * own / step:.2f}% of a step "
        f"(rounds: {', '.join(f'{x[2]:.3f}' for x in gov)}); implied ratio {1 + own / (step - own):.4f}"
    )


if __name__ == "__main__":
    main()
