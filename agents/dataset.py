"""The corpus as a dataset others can use: Minari (offline RL), the project's own Parquet, a dataset card.

    govgym dataset export corpus=/work/corpus_v2 --out runs/dataset
    MINARI_DATASETS_PATH=runs/dataset/minari python -c "import minari; print(minari.load_dataset('govgym/FineTune-v2/corpus-v0'))"

Reads what ``govgym collect-world`` wrote (``episodes/*.json``: each unit's episodes as action lists,
``memo/<ns>/*.tree``: the real steps) and writes, per episode, the exact transitions the real env gave:

* ``minari/<dataset_id>/``: a Minari dataset (arrow storage, no HDF5 needed) opened offline by
  ``minari.load_dataset(dataset_id)`` with ``MINARI_DATASETS_PATH=<out>/minari``: observations (T+1 x 20),
  actions, rewards, terminations, truncations; ``infos`` per step: ``action_mask`` and the env's info keys
  (eval_loss, train_loss, flops_used, budget, budget_frac, kept_fraction, cap_mb, step, strategy as its
  index in the switch targets, error / invalid_action as flags); per episode (``episode metadata``): the
  instance, its family, split, draw, the policy, the branch parent and point, the episode seed.
* ``steps.parquet`` (one row per transition) and ``episodes.parquet`` (one row per episode): the same
  data in columns, readable with pandas/pyarrow alone.
* ``DATASET_CARD.md`` and ``dataset.json``: what it is, how it was collected, splits, sizes, source files
  and their licence (the Python standard library, PSF License), the code version.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from govgym import __version__
from govgym.typed import ConfigError, check_range

DATASET_ID = "govgym/FineTune-v2/corpus-v0"


@dataclass
class ExportConfig:
    """What ``govgym dataset export`` reads and writes."""

    corpus: str = "runs/corpus_v2"
    """Folder written by ``govgym collect-world`` (episodes/, memo/, collection.json)."""
    dataset_id: str = DATASET_ID
    """Minari dataset id (namespace/env/name-vN)."""
    minari: bool = True
    """Write the Minari dataset (needs ``pip install "govgym[dataset]"``)."""
    parquet: bool = True
    """Write steps.parquet and episodes.parquet."""
    max_units: int = 0
    """Export only the first N units (sorted by name; 0 = all)."""

    def __post_init__(self) -> None:
        check_range("max_units", self.max_units, 0)
        if not (Path(self.corpus) / "episodes").is_dir():
            raise ConfigError(
                f"corpus: {self.corpus!r} holds no episodes/ folder; point it at the folder `govgym collect-world "
                "out=...` wrote."
            )


INFO_FLOATS = ("eval_loss", "train_loss", "flops_used", "budget", "budget_frac", "kept_fraction", "cap_mb")


def episodes(corpus: Path, max_units: int = 0) -> tuple[list[dict[str, Any]], Any]:
    """Every episode of the corpus with its transitions (from the saved trees); and the instance set."""
    from govgym.envs.instances import load_instances
    from govgym.envs.memo import load_nodes, tree_path

    meta = json.loads((corpus / "collection.json").read_text(encoding="utf-8"))
    iset = load_instances(meta["instances"])
    memo = Path(meta["memo"])
    if not memo.is_dir():
        memo = corpus / "memo" / memo.name  # the corpus folder was moved
    files = sorted((corpus / "episodes").glob("*.json"))
    if max_units:
        files = files[:max_units]
    out = []
    for f in files:
        unit = json.loads(f.read_text(encoding="utf-8"))
        nodes = load_nodes(tree_path(memo, unit["instance"], unit["episode_seed"]))
        inst = iset.get(unit["instance"])
        for ep in unit["episodes"]:
            acts = tuple(ep["actions"])
            chain = [nodes.get(acts[: i + 1]) for i in range(len(acts))]
            if () not in nodes or any(c is None for c in chain):
                raise ConfigError(
                    f"corpus: the tree of {unit['instance']}-{unit['episode_seed']} lacks steps of episode {ep['id']}; "
                    "the memo folder does not belong to this corpus (or was edited)."
                )
            out.append(
                {
                    "unit": f"{unit['instance']}-{unit['episode_seed']}",
                    "instance": inst,
                    "episode_seed": unit["episode_seed"],
                    "record": ep,
                    "nodes": [nodes[()], *chain],
                }
            )
    return out, iset


def _info_arrays(nodes: list[Any], targets: list[str]) -> dict[str, np.ndarray]:
    def f(v: Any) -> float:
        return float(v) if v is not None and math.isfinite(float(v)) else math.nan

    info: dict[str, np.ndarray] = {
        "action_mask": np.stack([np.asarray(n.mask, dtype=bool) for n in nodes]),
        "step": np.array([int(n.info.get("step", 0)) for n in nodes], dtype=np.int64),
        "strategy": np.array(
            [targets.index(n.info["strategy"]) if n.info.get("strategy") in targets else -1 for n in nodes],
            dtype=np.int64,
        ),
        "error": np.array([bool(n.info.get("error")) for n in nodes]),
        "invalid_action": np.array([bool(n.info.get("invalid_action")) for n in nodes]),
    }
    for k in INFO_FLOATS:
        info[k] = np.array([f(n.info.get(k)) for n in nodes], dtype=np.float64)
    return info


def _episode_meta(e: dict[str, Any]) -> dict[str, Any]:
    inst, rec = e["instance"], e["record"]
    return {
        "unit": e["unit"],
        "episode": rec["id"],
        "instance": inst.name,
        "family": inst.family,
        "holdout": inst.holdout,
        "draw": json.dumps(inst.draw, sort_keys=True),
        "policy": rec["policy"],
        "parent": rec["parent"],
        "branch_at": -1 if rec["branch_at"] is None else int(rec["branch_at"]),
        "episode_seed": int(e["episode_seed"]),
        "lam": float(inst.lam),
        "return": float(rec["return"]),
        "length": len(rec["actions"]),
        "error": rec["error"],
    }


def _code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        return f"govgym {__version__} (git {sha})"
    except (OSError, subprocess.CalledProcessError):
        return f"govgym {__version__}"


def write_parquet(eps: list[dict[str, Any]], out: Path, targets: list[str], names: list[str]) -> list[Path]:
    """steps.parquet (one row per transition) and episodes.parquet (one row per episode)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    steps: dict[str, list[Any]] = {
        k: []
        for k in (
            "unit",
            "episode",
            "t",
            "obs",
            "action",
            "action_name",
            "reward",
            "terminated",
            "truncated",
            "next_obs",
        )
    }
    infos: dict[str, list[Any]] = {}
    for e in eps:
        rec, nodes = e["record"], e["nodes"]
        info = _info_arrays(nodes[1:], targets)
        for t, a in enumerate(rec["actions"]):
            steps["unit"].append(e["unit"])
            steps["episode"].append(rec["id"])
            steps["t"].append(t)
            steps["obs"].append(np.asarray(nodes[t].obs, dtype=np.float32).tolist())
            steps["action"].append(int(a))
            steps["action_name"].append(names[int(a)])
            steps["reward"].append(float(nodes[t + 1].reward))
            steps["terminated"].append(bool(nodes[t + 1].terminated))
            steps["truncated"].append(bool(nodes[t + 1].truncated))
            steps["next_obs"].append(np.asarray(nodes[t + 1].obs, dtype=np.float32).tolist())
            for k, v in info.items():
                infos.setdefault(f"info_{k}", []).append(v[t].tolist())
            infos.setdefault("info_error_text", []).append(str(nodes[t + 1].info.get("error") or ""))
    steps.update(infos)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "steps.parquet", out / "episodes.parquet"]
    pq.write_table(pa.table(steps), paths[0], compression="zstd")
    pq.write_table(pa.Table.from_pylist([_episode_meta(e) for e in eps]), paths[1], compression="zstd")
    return paths


def write_minari(
    eps: list[dict[str, Any]], root: Path, dataset_id: str, iset: Any, targets: list[str]
) -> Path:
    """The Minari dataset under ``root`` (= MINARI_DATASETS_PATH while writing); returns its folder."""
    try:
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError:
        raise ConfigError(
            'minari: the Minari extra is not installed; run `pip install "govgym[dataset]"`, or export with '
            "minari=false (Parquet only)."
        ) from None
    from govgym.envs.finetune_env import FineTuneEnv

    space_env = FineTuneEnv(iset, split="train")
    old = os.environ.get("MINARI_DATASETS_PATH")
    # absolute: minari joins a relative root to its own relative data path a second time (runs/x/.../runs/x/...)
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        buffers = []
        for i, e in enumerate(eps):
            rec, nodes = e["record"], e["nodes"]
            buffers.append(
                EpisodeBuffer(
                    id=i,
                    seed=int(e["episode_seed"]),
                    observations=np.stack([np.asarray(n.obs, dtype=np.float32) for n in nodes]),
                    actions=np.asarray(rec["actions"], dtype=np.int64),
                    rewards=np.asarray([n.reward for n in nodes[1:]], dtype=np.float64),
                    terminations=np.asarray([n.terminated for n in nodes[1:]], dtype=bool),
                    truncations=np.asarray([n.truncated for n in nodes[1:]], dtype=bool),
                    # minari 0.5's arrow storage cannot decode a 1-d numpy info (empty shape): lists
                    infos={
                        k: v if v.ndim > 1 else v.tolist() for k, v in _info_arrays(nodes, targets).items()
                    },
                )
            )
        from minari.storage import get_dataset_path

        if Path(get_dataset_path(dataset_id)).exists():
            minari.delete_dataset(dataset_id)
        ds = minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=None,
            action_space=space_env.action_space,
            observation_space=space_env.observation_space,
            algorithm_name="govgym collect-world: fixed runs, lever branches, heuristics, random valid policy",
            author="govgym",
            code_permalink="https://github.com/govgym/govgym",
            description=(
                "Real fine-tuning runs governed step by step (govgym/FineTune-v2, the generated world). "
                "Episode metadata: instance, family, held-out split, draw, policy, branch parent."
            ),
            data_format="arrow",
        )
        ds.storage.update_episode_metadata([_episode_meta(e) for e in eps])
        return Path(get_dataset_path(dataset_id))
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


CARD = """\
# govgym FineTune-v2 corpus ({dataset_id})

**What.** Real fine-tuning runs of small causal LMs, each governed interval by interval (continue, reprune
the data two ways, switch memory strategy, stop) in `govgym/FineTune-v2`: {n_eps} episodes, {n_steps}
transitions, from {n_units} (instance, seed) units of the generated world's **{split}** split. Every
transition is a real interval of a real run (10 optimizer steps + one eval), not a model of one.

**How collected.** `govgym collect-world` (agents/collection.py): per unit, the fixed-budget run to its
end; lever branches from it (a reprune and a switch at random decision points, each continued to the
end; `parent`/`branch_at` in the episode metadata); one episode per heuristic (marginal gain, patience,
Zeus, memory-reactive; knobs tuned on FineTune-v1) and a random valid policy, all through the exact
step memo (steps shared by episodes ran once). Observations: the 20 scale-free features of
`govgym.efficiency.signals`; reward r_t = (E_(t-1) - E_t)/E_0 - lambda x FLOPs_t / budget.

**Splits.** Only the train split is collected here. The instance set (`{instances}`) also holds the held-out
splits: a (new draws of the train tasks and bases), b (tasks never in training: sig2doc, comments),
c (bases never in training: llama-3m, gpt2-*). Per episode: `instance`, `family`, `holdout`, `draw`.

**Contents.** Per episode ({n_units} units): {by_policy}. Tasks: {by_task}. Bases: {by_base}. Families: {by_family}.

**Files.** `minari/{dataset_id}/` (Minari {minari_version}, arrow: `minari.load_dataset("{dataset_id}")` with
`MINARI_DATASETS_PATH` set to the `minari` folder); `steps.parquet`, `episodes.parquet` (pyarrow).

**Source data and licence.** Fine-tuning and pretraining text: the Python {python} standard library's own
`.py` files (recorded file by file with sha256 in each base's `manifest.json`), under the
**Python Software Foundation License** (PSF-2.0). The base models were pretrained by govgym on the
pretrain half of that library; nothing was downloaded.

**Code version.** {code}. Rebuild: `govgym collect-world out=CORPUS` then `govgym dataset export corpus=CORPUS`.
"""


def export_dataset(cfg: ExportConfig, out: Path) -> dict[str, Any]:
    """Write the Minari dataset, the Parquet files and the card into ``out``; returns a summary."""
    import platform
    from collections import Counter

    from govgym.envs.actions import action_table
    from govgym.envs.memo import STEP_KEYS  # noqa: F401  (the info keys kept: documented above)

    corpus = Path(cfg.corpus)
    eps, iset = episodes(corpus, cfg.max_units)
    if not eps:
        raise ConfigError(
            f"corpus: {cfg.corpus!r} has no finished units yet; let `govgym collect-world` run longer."
        )
    targets = list(iset.env.switch_targets)
    from govgym.efficiency.strategy import Strategy

    names = action_table([Strategy.parse(s) for s in targets])[1]
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    if cfg.parquet:
        files += [p.name for p in write_parquet(eps, out, targets, names)]
    minari_version = ""
    if cfg.minari:
        write_minari(eps, out / "minari", cfg.dataset_id, iset, targets)
        import minari

        minari_version = minari.__version__
        files.append(f"minari/{cfg.dataset_id}")
    n_steps = sum(len(e["record"]["actions"]) for e in eps)
    units = sorted({e["unit"] for e in eps})
    count = lambda key: dict(Counter(key(e) for e in eps).most_common())  # noqa: E731
    summary = {
        "dataset_id": cfg.dataset_id,
        "episodes": len(eps),
        "steps": n_steps,
        "units": len(units),
        "by_policy": count(lambda e: e["record"]["policy"].split(":")[0]),
        "by_task": count(lambda e: e["instance"].draw.get("task", "?")),
        "by_base": count(lambda e: e["instance"].draw.get("base", "?")),
        "by_family": count(lambda e: e["instance"].family),
        "instances": iset.source,
        "action_names": list(names),  # what the Minari action indices mean (govgym offline reads them)
        "code": _code_version(),
        "python": platform.python_version(),
        "minari_version": minari_version,
        "files": files,
    }
    card = CARD.format(
        dataset_id=cfg.dataset_id,
        n_eps=len(eps),
        n_steps=n_steps,
        n_units=len(units),
        split="train",
        instances=Path(iset.source).name,
        by_policy=summary["by_policy"],
        by_task=summary["by_task"],
        by_base=summary["by_base"],
        by_family=summary["by_family"],
        minari_version=minari_version or "not written",
        python=summary["python"],
        code=summary["code"],
    )
    (out / "DATASET_CARD.md").write_text(card, encoding="utf-8")
    (out / "dataset.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    summary["files"] = [*files, "DATASET_CARD.md", "dataset.json"]
    return summary


__all__ = ["DATASET_ID", "ExportConfig", "episodes", "export_dataset", "write_minari", "write_parquet"]
