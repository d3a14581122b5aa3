"""``govgym demo``: the main job end to end on the embedded default, in bounded time.

It learns the governor that ships as ``GovernorCallback("default")`` (``deploy/shipped.py``) the same way it
was learned, on the generated FineTune-v2 world (``configs/instances_v2.yaml``):

1. prepare: build (or reuse) the base models and datasets of the held-out instances it judges on;
2. fast backend: ``govgym/FineTuneFast-v1`` with the packaged v2 model (``configs/fast_v2.json``, a 5-member
   ensemble fitted by ``govgym fit-fast`` on real runs of the *train* split only);
3. train: MaskablePPO from scratch by RL on the fast backend's 320 train instances, stop-only
   (``levers=false``: continue or stop), 200,000 env steps: the recipe of the shipped default
   (``data/agents_v2/mbrl_p0``); then exported as a numpy-only artifact (``govgym export``) that
   ``GovernorCallback`` takes;
4. evaluate: the agent (with and without the shield) against the v2-tuned heuristics and the oracle on
   held-out instances of unseen tasks (split ``test-b``), on real runs; print the leaderboard and write
   CSV/JSON/PNG.

To fit 15 minutes on 2 cores the demo judges the first ``max_instances`` held-out instances with one seed
each; ``govgym evaluate instances=configs/instances_v2.yaml split=test-b seeds=5
knobs=configs/heuristics_v2.yaml --agent runs/demo/train/final.zip`` gives the full table
(docs/results_v2.md has it for the shipped agent on every split). ``instances=`` / ``fast_model=`` /
``knobs=`` / ``split=`` run the same job on another world (``instances=configs/instances_v1.yaml
fast_model=configs/fast_v1.json split=test levers=true`` is v1's demo).
"""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

from govgym.agents.evaluate import DEFAULT_POLICIES, EvalConfig, evaluate
from govgym.agents.specs import load_knobs
from govgym.agents.train import TrainConfig, train
from govgym.efficiency.workload import load_workload
from govgym.envs.fastmodel import default_model_path, load_model
from govgym.envs.instances import load_instances
from govgym.typed import to_dict


def prepare_instances(instances: str | None, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Build or reuse each distinct base model / dataset of an instance set, or of its instances ``names``
    (with progress bars)."""

    iset = load_instances(instances)
    seen: dict[str, dict[str, Any]] = {}
    for inst in iset.train + iset.test:
        if names is not None and inst.name not in names:
            continue
        cfg = iset.run_config(inst)
        key = json.dumps(
            {"model": to_dict(cfg.model), "data": to_dict(cfg.data)}, sort_keys=True, default=str
        )
        if key not in seen:
            seen[key] = load_workload(cfg, progress=True).info
    return list(seen.values())


def demo(
    out: Path,
    timesteps: int,
    seeds: int,
    workers: int,
    instances: str = "",
    progress: bool = True,
    train_minutes: float = 0.0,
    fast_model: str = "",
    randomize: float = 0.0,
    levers: bool = False,
    split: str = "test-b",
    max_instances: int = 0,
    knobs: str = "",
) -> dict[str, Any]:
    """Run the four steps into ``out`` (train/, governor/, evaluate/); returns the leaderboard summary.

    ``instances`` / ``fast_model`` / ``knobs`` '' are the packaged v2 world's (configs/instances_v2.yaml,
    configs/fast_v2.json, configs/heuristics_v2.yaml).
    """
    from govgym.agents.policies import AgentPolicy
    from govgym.deploy.artifact import export

    configs = files("govgym.configs")
    instances = instances or str(configs / "instances_v2.yaml")
    fast_model = fast_model or str(default_model_path(world=2))
    knobs = knobs or str(configs / "heuristics_v2.yaml")
    t0 = time.perf_counter()
    # every input checked before minutes of building and training: a bad split, model or knobs file
    held = load_instances(instances).split(split)[: max_instances or None]
    fm = load_model(fast_model)
    load_knobs(knobs)
    print(
        f"[1/4] prepare: base models and data of {len(held)} held-out instances of {split} (built once, then cached)"
    )
    infos = prepare_instances(instances, [i.name for i in held])
    print(f"      {len(infos)} workloads ready ({time.perf_counter() - t0:.0f} s)")

    t1 = time.perf_counter()
    prov = fm.provenance
    print(
        f"[2/4] fast backend: govgym/FineTuneFast-v1 ({fast_model}), fitted on {prov.get('traces', '?')} real "
        f"traces of {len(prov.get('instances', []))} train instances (held-out instances never in its fit; "
        f"`govgym fit-fast` refits it from your own runs)"
    )

    t2 = time.perf_counter()
    limit = f" or {train_minutes:g} min, whichever comes first" if train_minutes else ""
    what = "every lever" if levers else "stop-only (continue or stop), the shipped default's recipe"
    print(
        f"[3/4] train: MaskablePPO from scratch by RL on the fast backend's train split, {what}, for "
        f"{timesteps:,} env steps{limit}",
        flush=True,  # before the training envs fork: an unflushed line would be printed by each of them too
    )
    cfg = TrainConfig(
        algo="maskable_ppo",
        timesteps=timesteps,
        env="fast",
        fast_model=fast_model,
        randomize=randomize,
        levers=levers,
        n_envs=8,
        n_steps=256,
        batch_size=256,
        checkpoint_every=max(timesteps // 4, 1),
        eval_every=0,
        instances=instances,
        max_minutes=train_minutes,
    )
    model = train(cfg, out / "train", progress=progress)
    meta = json.loads((out / "train" / "agent.json").read_text())
    artifact = export(model, out / "governor", AgentPolicy(model), instances)
    print(
        f"      wrote {model}: {meta['env_steps']:,} env steps in {time.perf_counter() - t2:.0f} s; exported to "
        f'{artifact.parent} (GovernorCallback("{artifact.parent}") runs it in a Trainer)'
    )

    t3 = time.perf_counter()
    print(
        f"[4/4] evaluate: v2-tuned heuristics, the agent and the oracle on {len(held)} held-out instances of "
        f"{split} x {seeds} seeds (real runs)",
        flush=True,
    )
    # memo="": every demo runs its held-out episodes for real (policies still share steps within a task)
    ecfg = EvalConfig(
        policies=[*DEFAULT_POLICIES, "early_stopping", "curve_extrapolation", f"agent={model}"],
        split=split,
        seeds=seeds,
        workers=workers,
        instances=instances,
        knobs=knobs,
        max_instances=max_instances,
        memo="",
    )
    result = evaluate(ecfg, out / "evaluate", progress=progress)
    total = time.perf_counter() - t0
    print(
        f"demo done in {total / 60:.1f} min (prepare {t1 - t0:.0f} s, train {t3 - t2:.0f} s, "
        f"evaluate {time.perf_counter() - t3:.0f} s); results in {out}/"
    )
    return result


__all__ = ["demo", "prepare_instances"]
