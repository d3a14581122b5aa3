"""One rank of the two-process run of ``tests/test_ddp.py`` (``torchrun --nproc_per_node 2``, CPU, gloo).

Writes ``rank{r}.json`` (the decisions this rank took, its global batch size and FLOP counts) to the folder
given; the callback writes its decision log to ``decisions_rank{r}.json``, which only rank 0 may do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import Trainer  # noqa: E402

from govgym.deploy.callback import GovernorCallback  # noqa: E402
from govgym.deploy.ranks import rank_and_world  # noqa: E402
from tests.conftest import pattern_data, tiny_llama  # noqa: E402
from tests.test_callback import _args  # noqa: E402


def main(out: Path) -> None:
    data = pattern_data(64, 16, 64, seed=0).remove_columns("noise")
    held = pattern_data(8, 16, 64, seed=1).remove_columns("noise")
    cb = GovernorCallback("default", budget_steps=12, interval_steps=4, log_path=None)
    args = _args(out, max_steps=12, ddp_backend="gloo")
    trainer = Trainer(
        tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64),
        args,
        train_dataset=data,
        eval_dataset=held,
        callbacks=[cb],
    )
    rank, world = rank_and_world()
    cb.log_path = out / f"decisions_rank{rank}.json"
    trainer.train()
    row = {
        "rank": rank,
        "world": world,
        "batch_size": cb.batch_size,
        "step_flops": cb.step_flops,
        "eval_flops": cb.eval_flops,
        "flops": cb.flops,
        "decisions": [(d["step"], d["action"], d["budget_frac"]) for d in cb.decisions],
        "obs": [d["obs"] for d in cb.decisions],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(row))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
