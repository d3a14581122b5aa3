"""``govgym fit-fast``: fit the fast backend (envs/fastmodel.py) from the saved step trees of real runs.

    govgym fit-fast                          # train split of FineTune-v1, trees under runs/memo -> runs/fast
    govgym fit-fast max_traces=12 --out runs/fast12   # on 12 (instance, seed) trees only

Every saved tree of a *train* instance (``govgym tune``, ``train``, ``map split=train``, ``evaluate``
write them; each holds the fixed path and every explored branch of one (instance, seed)) is walked
from its root: the mechanics replay each node's state (steps, schedule position, strategy, data kept
and what was dropped) and are checked against what the real env reported (budget fraction, LR
fraction: ``mechanics_check`` in the provenance); each transition becomes one row of the dynamics
model's data. Held-out instances are never read. Costs and peaks are measured, not fitted: one probe
per (task, strategy) with ``envs.probe`` (FlopCounterMode and efficiency.memstats, as the real env).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from govgym.envs.actions import action_table
from govgym.envs.fast_env import advance, apply_lever, lever_flops, plan_of
from govgym.envs.fastcheck import MAX_MEMBERS
from govgym.envs.fastinputs import INPUT_SETS
from govgym.envs.fastmodel import OUTPUTS, FastModel, RunState, Static, base_key
from govgym.envs.instances import InstanceSet, load_instances
from govgym.envs.memo import TREE_SUFFIX, load_nodes, memo_folder, memo_siblings
from govgym.typed import ConfigError, check_choice, check_range


@dataclass
class FitConfig:
    """What ``govgym fit-fast`` fits on and how."""

    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, FineTune-v1)."""
    memo: str = "runs/memo"
    """Folder of saved exact step trees (the traces); only trees of the train split are read."""
    max_traces: int = 0
    """Fit on at most this many (instance, seed) trees, drawn at random with ``seed`` (0 = all)."""
    hidden: int = 64
    """Width of the dynamics MLP's two tanh layers."""
    iterations: int = 2000
    """At most this many full-batch AdamW iterations; the count is chosen by 5-fold cross-validation over instances."""
    seed: int = 0
    """Seed of the trace draw, the validation split and the network's initialization."""
    inputs: int = 2
    """Input list of the dynamics model: 2 (task- and base-free descriptors: SFT or all tokens, E_0, parameters,
    lr multiple, batch; any world) or 1 (FineTune-v1's, with its code2doc flag; the packaged fast_v1.json's)."""
    members: int = 1
    """Ensemble size: member 0 is the single model of a plain fit; each other one is trained with another seed on
    a bootstrap resample of the train instances. The env predicts their mean and reports their disagreement."""
    max_instances: int = 0
    """Fit on the trees of at most this many train instances, drawn at random with ``seed`` (0 = all)."""

    def __post_init__(self) -> None:
        check_range("fit.max_traces", self.max_traces, 0)
        check_range("fit.max_instances", self.max_instances, 0)
        check_choice("fit.inputs", self.inputs, tuple(INPUT_SETS))
        check_range("fit.members", self.members, 1, MAX_MEMBERS)
        check_range("fit.hidden", self.hidden, 4, 1024)
        check_range("fit.iterations", self.iterations, 1)


def _targets(node: Any, e0: float) -> np.ndarray:
    y = float(node.info["eval_loss"]) / e0
    return np.array([y, node.obs[5], node.obs[7], node.obs[8], node.obs[9]], dtype=np.float64)


def measure_mechanics(iset: InstanceSet, strategies: list[str]) -> dict[str, Any]:
    """What the fast env needs for every instance of every split, measured (envs.probe), never learned.

    FLOPs (step, eval) and peak MiB per (workload, strategy) and the base's parameter count per workload,
    one probe per workload; E_0 per task key (``Static.e0_key``): one evaluation of the untouched base
    on the first such instance's eval split. Held-out instances are probed like train ones (their
    mechanics are constants of the workload, not fitted): a model can simulate any split of the set.
    """
    from govgym.envs.probe import base_facts, strategy_costs, strategy_peaks
    from govgym.typed import to_dict

    costs, peaks, params, e0 = {}, {}, {}, {}
    measured: dict[str, tuple[float, int]] = {}
    for inst in iset.train + iset.test:
        cfg = iset.run_config(inst)
        st = Static.of(cfg, 0.0)
        task = st.cost_key  # the task on v1's base; the base and batch otherwise
        # the eval split and the base do not depend on the batch: one evaluation per (task, base, length)
        facts = json.dumps([st.task, to_dict(cfg.model), cfg.data.seq_len], sort_keys=True, default=str)
        if facts not in measured:
            measured[facts] = base_facts(cfg)
        e0.setdefault(st.e0_key, measured[facts][0])
        params.setdefault(task, float(measured[facts][1]))
        if f"{task}|{strategies[0]}" in costs:
            continue
        for s in strategies:
            step, ev, _ = strategy_costs(cfg, s)
            costs[f"{task}|{s}"] = [float(step), float(ev)]
        for s, mb in strategy_peaks(cfg, strategies).items():
            peaks[f"{task}|{s}"] = float(mb)
    return {"costs": costs, "peaks": peaks, "params": params, "e0": e0}


def tree_index(iset: InstanceSet, memo: str | Path, split: str = "train") -> list[tuple[str, int, Path]]:
    """(instance, episode seed, tree file) of every saved tree of ``split``, over the memo's thread-count siblings."""
    folder = memo_folder(memo, iset.source, 1)
    names = {i.name for i in iset.split(split)}
    out: dict[tuple[str, int], Path] = {}
    for f in memo_siblings(folder):
        for p in sorted(f.glob(f"*{TREE_SUFFIX}")):
            inst, _, seed = p.stem.rpartition("-")
            if inst in names and seed.isdigit():
                out.setdefault((inst, int(seed)), p)
    return [(i, s, p) for (i, s), p in sorted(out.items())]


def extract(
    fm: FastModel, iset: InstanceSet, trees: list[tuple[str, int, Path]]
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """(X, Y, group of each row, checks): every transition of the trees, states replayed by the mechanics."""
    actions, act_names = action_table(list(iset.env.switch_targets))
    xs, ys, groups = [], [], []
    frac_err, lr_err, length_err, ooms, nodes_seen = [], [], 0, 0, 0
    for inst_name, _seed, path in trees:
        inst = iset.get(inst_name)
        plan = plan_of(fm, iset, inst)
        nodes = load_nodes(path)
        if () not in nodes:
            continue
        e0 = float(nodes[()].info["eval_loss"])
        states: dict[tuple[int, ...], RunState] = {(): RunState(strategy=plan.start)}
        flops: dict[tuple[int, ...], float] = {(): fm.costs(plan.static.cost_key, plan.start)[1]}
        fixed_len = 0
        for prefix in sorted(nodes, key=len):
            if not prefix or prefix[:-1] not in states:
                continue
            node, a = nodes[prefix], prefix[-1]
            nodes_seen += 1
            if all(x == 0 for x in prefix) and node.truncated:
                fixed_len = len(prefix)
            kind, arg = actions[a] if "invalid_action" not in node.info else ("continue", None)
            if kind == "stop":
                continue
            if node.info.get("error"):
                ooms += int(str(node.info["error"]).startswith("oom"))
                continue
            before = states[prefix[:-1]]
            score_fl = lever_flops(fm, plan, before, kind, iset.env.reprune_fraction)
            lever = apply_lever(before, kind, arg, iset.env.reprune_fraction)
            after, train_fl, ev_fl, lr0, lr1 = advance(fm, plan, lever)
            fl = flops[prefix[:-1]] + score_fl + train_fl + ev_fl
            frac_err.append(abs(fl / plan.budget - float(node.info["budget_frac"])))
            lr_err.append(abs(lr1 - float(node.obs[18])))
            t = _targets(node, e0)
            x = fm.features(plan.static, before, after, lr0, lr1, act_names[actions.index((kind, arg))])
            y = t.copy()
            y[0] = t[0] - before.eval_ratio
            xs.append(x)
            ys.append(y)
            groups.append(inst_name)
            after.eval_ratio, after.best_ratio = t[0], min(before.best_ratio, t[0])
            states[prefix], flops[prefix] = after, fl
        if fixed_len and fixed_len != plan.intervals:
            length_err += 1
    if not xs:
        raise ConfigError(
            "fit-fast: no transitions found in the saved trees of the train split. Run real episodes first, "
            "e.g. `govgym map split=train seeds=2` or `govgym tune` (they write runs/memo), then fit again."
        )
    checks = {
        "nodes": nodes_seen,
        "transitions": len(xs),
        "oom_nodes": ooms,
        "budget_frac_max_abs_err": float(np.max(frac_err)),
        "lr_frac_max_abs_err": float(np.max(lr_err)),
        "fixed_length_mismatches": length_err,
    }
    return np.array(xs), np.array(ys), groups, checks


def _fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    groups: list[str],
    hidden: int,
    iterations: int,
    seed: int,
    folds: int = 5,
    members: int = 1,
) -> tuple[dict[str, np.ndarray], list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """MSE-trained MLP; iterations and noise from ``folds``-fold cross-validation over instances, then refit on all.

    Each fold holds out whole train instances; the iteration count minimizing the mean held-out error
    (the eval change weighted, the other outputs at 0.1) is kept, and the noise is calibrated on the
    out-of-fold residuals at that count: every train instance is judged by a model that never saw it.
    """
    import torch

    xm, xsd = x.mean(0), x.std(0) + 1e-6
    ym, ysd = y.mean(0), y.std(0) + 1e-9
    xt = torch.tensor((x - xm) / xsd, dtype=torch.float32)
    yt = torch.tensor((y - ym) / ysd, dtype=torch.float32)
    names = sorted(set(groups))
    random.Random(seed).shuffle(names)
    k = y.shape[1]
    every = 25
    checks = iterations // every

    def train(
        rows: torch.Tensor, n_iter: int, val: torch.Tensor | None, init: int = seed
    ) -> tuple[torch.nn.Module, list, list]:
        torch.manual_seed(init)
        m = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, k),
        )
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=1e-3)
        curve, preds = [], []
        for it in range(1, n_iter + 1):
            opt.zero_grad()
            loss = ((m(xt[rows]) - yt[rows]) ** 2).mean()
            loss.backward()
            opt.step()
            if val is not None and it % every == 0:
                with torch.no_grad():
                    p = m(xt[val])
                err = ((p - yt[val]) ** 2).mean(0)
                curve.append(
                    float(err[0] + 0.1 * err[1:].sum())
                )  # the eval change is what governing hinges on
                preds.append(p.numpy() * ysd + ym)
        return m, curve, preds

    n_folds = min(folds, len(names))
    n_best, oof, cv_err = iterations, None, None
    if n_folds >= 2:
        fold_of = {g: i % n_folds for i, g in enumerate(names)}
        fold = np.array([fold_of[g] for g in groups])
        curves, fold_preds = [], []
        for f in range(n_folds):
            val = torch.tensor(fold == f)
            _, curve, preds = train(~val, checks * every, val)
            curves.append(np.array(curve) * val.sum().item())
            fold_preds.append(preds)
        total = np.sum(curves, axis=0)
        best = int(np.argmin(total))
        n_best, cv_err = (best + 1) * every, float(total[best] / len(groups))
        oof = np.zeros_like(y)
        for f in range(n_folds):
            oof[fold == f] = fold_preds[f][best]
    noise: dict[str, Any] = {"sd": [float(v) for v in y.std(0)], "dy_scale_sd": 0.0}
    val_mae = None
    if oof is not None:
        res = y - oof
        val_mae = dict(zip(OUTPUTS, (float(v) for v in np.abs(res).mean(0))))
        # eval change: residual = a_instance * mean + e (a per-instance curve scale, per-step rest)
        scales, rest = [], []
        garr = np.array(groups)
        for g in names:
            sel = garr == g
            mu = oof[sel, 0]
            a = float(np.dot(mu, res[sel, 0]) / max(np.dot(mu, mu), 1e-12))
            scales.append(a)
            rest.append(res[sel, 0] - a * mu)
        sd = res.std(0)
        sd[0] = float(np.concatenate(rest).std())
        noise = {"sd": [float(v) for v in sd], "dy_scale_sd": float(np.std(scales))}

    def weights(model: torch.nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
        lin = [m for m in model if isinstance(m, torch.nn.Linear)]
        return [
            (m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(np.float64))
            for m in lin
        ]

    all_rows = torch.ones(len(groups), dtype=torch.bool)
    model, _, _ = train(all_rows, n_best, None)
    layers = weights(model)
    # the other members: another seed each, on a bootstrap resample of the train *instances* (an instance
    # drawn twice counts twice), for the iteration count member 0's cross-validation chose
    rows_of = {g: np.flatnonzero(np.array(groups) == g) for g in names}
    more = []
    for j in range(1, members):
        draw = np.random.default_rng([seed, j]).choice(len(names), size=len(names), replace=True)
        idx = torch.tensor(np.concatenate([rows_of[names[i]] for i in draw]), dtype=torch.long)
        more.append(weights(train(idx, n_best, None, init=seed + j)[0]))
    with torch.no_grad():
        fit_pred = model(xt).numpy() * ysd + ym
    stats = {"xm": xm, "xsd": xsd, "ym": ym, "ysd": ysd, "noise": noise}
    info = {
        "iterations": n_best,
        "cv_folds": n_folds,
        "cv_error": cv_err,
        "val_mae": val_mae,
        "train_mae": dict(zip(OUTPUTS, (float(v) for v in np.abs(fit_pred - y).mean(0)))),
        "noise": noise,
        "more": more,
    }
    return stats, layers, info


def fit_fast(cfg: FitConfig, progress: bool = False) -> tuple[FastModel, dict[str, Any]]:
    """Fit a fast model on the train split's saved trees; returns it and its fit report."""
    iset = load_instances(cfg.instances or None)
    trees = tree_index(iset, cfg.memo)
    if cfg.max_instances:
        names = sorted({t[0] for t in trees})
        keep = set(random.Random(cfg.seed).sample(names, min(cfg.max_instances, len(names))))
        trees = [t for t in trees if t[0] in keep]
    if cfg.max_traces:
        trees = sorted(random.Random(cfg.seed).sample(trees, min(cfg.max_traces, len(trees))))
    if not trees:
        raise ConfigError(
            f"fit-fast: no saved trees of the train split of {iset.source} under {cfg.memo!r}. Run real "
            "episodes first (`govgym map split=train seeds=2`, `govgym tune`), or point memo= at their folder."
        )
    strategies = sorted({*iset.env.switch_targets, *(i.start_strategy for i in iset.train + iset.test)})
    mech = measure_mechanics(iset, strategies)
    mech["base_key"] = base_key(iset)
    roots: dict[str, list[float]] = {}
    for name, _, path in trees:  # a train tree's root is the real env's E_0 of that very instance
        nodes = load_nodes(path)
        if () in nodes:
            roots.setdefault(name, []).append(float(nodes[()].info["eval_loss"]))
    mech["e0_instance"] = {k: float(np.mean(v)) for k, v in sorted(roots.items())}
    inputs = INPUT_SETS[cfg.inputs]
    shell = FastModel(
        mech, np.zeros(len(inputs)), np.ones(len(inputs)), np.zeros(5), np.ones(5), [], inputs=inputs
    )
    x, y, groups, checks = extract(shell, iset, trees)
    spread = [
        abs(v / shell.e0(Static.of(iset.run_config(iset.get(k)), 0.0).e0_key) - 1.0)
        for k, v in mech["e0_instance"].items()
    ]
    checks["e0_tree_vs_probe_max_rel"] = float(
        max(spread, default=0.0)
    )  # the eval split differs per data seed
    stats, layers, info = _fit_mlp(x, y, groups, cfg.hidden, cfg.iterations, cfg.seed, members=cfg.members)
    more = info.pop("more")
    report = {
        "instances": sorted(set(groups)),
        "traces": len(trees),
        "inputs": cfg.inputs,
        "members": cfg.members,
        "mechanics_check": checks,
        **info,
    }
    mech["noise"] = stats["noise"]
    fm = FastModel(
        mechanics=mech,
        x_mean=stats["xm"],
        x_std=stats["xsd"],
        y_mean=stats["ym"],
        y_std=stats["ysd"],
        layers=layers,
        provenance={"instance_set": Path(iset.source).name, "split": "train", **report},
        inputs=inputs,
        more=more,
    )
    return fm, report


__all__ = ["FitConfig", "extract", "fit_fast", "measure_mechanics", "tree_index"]
