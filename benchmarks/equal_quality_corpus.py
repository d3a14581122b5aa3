"""Every stop-only rule under the equal-quality objective on the corpus's saved train trees: no real steps.

    python benchmarks/equal_quality_corpus.py data/corpus_v2/memo 0.005 early_stopping curve_extrapolation \
        learned_curve:alpha=0.1 learned_curve:alpha=0.25

Reads each saved tree of ``configs/instances_v2.yaml`` (episode seed 0) and runs the rules through it
(``agents/rollout.run_episode`` with the tolerance as the 21st feature); a stop is derived from its parent
node, so nothing is trained (the script asserts it). Prints the equal-quality leaderboard. These are
TRAIN instances: a fitted rule (``learned_curve``) is judged in-sample here, not on held-out runs.
"""

from __future__ import annotations

import sys

from govgym.agents.heuristics import make_policy
from govgym.agents.report import format_board
from govgym.agents.rollout import run_episode
from govgym.agents.scoring import episode_rows, leaderboard
from govgym.envs.finetune_env import FineTuneEnv
from govgym.envs.memo import EpisodeTree, load_tree, memo_folder

INSTANCES = "configs/instances_v2.yaml"
BASE = {
    "fixed_budget": ("fixed_budget", {}),
    "patience": ("patience", {"patience": 2}),
    "marginal_gain": ("marginal_gain", {"kappa": 6.0}),
    "zeus": ("zeus", {"beta": 1.5}),
}


def main(memo: str, tol: float, specs: list[str]) -> None:
    folder = memo_folder(memo, INSTANCES, 1)
    env = FineTuneEnv(INSTANCES, split="train", wall_time_info=False)
    names = sorted({p.stem.rpartition("-")[0] for p in folder.glob("*.tree")})
    pols = dict(BASE)
    for spec in specs:
        name, _, kv = spec.partition(":")
        pols[spec] = (name, dict(x.split("=") for x in kv.split(",")) if kv else {})
    results = []
    for n in names:
        tree = EpisodeTree(env, n, 0)
        load_tree(tree, folder)
        eps = [
            run_episode(tree, make_policy(name, env.action_names, **dict(kn)), label, tol).to_dict()
            for label, (name, kn) in pols.items()
        ]
        assert tree.real_steps == 0, f"{n}: {tree.real_steps} real steps (its fixed path is not in the memo)"
        results.append({"instance": n, "episode_seed": 0, "episodes": eps})
    board = leaderboard(episode_rows(results, tol))
    board.sort(key=lambda r: -r["eq_return"])
    print(format_board(board, "equal_quality"))
    for b in board:
        print(
            f"{b['policy']}: eq_return {b['eq_return']:.3f}, FLOPs / fixed {b['flops_rel']:.3f} "
            f"({1 / b['flops_rel']:.2f}x fewer), violated {b['violation_rate']:.0%} of {b['eq_judged']}"
        )
    print(f"{len(names)} train trees; tolerance {tol}")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.005, sys.argv[3:])
