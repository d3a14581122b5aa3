"""``govgym fit-curve``: fit the learned curve predictor (agents/curvepred.py) on the corpus's fixed paths.

Every saved step tree of a *train* instance holds its fixed-budget path (every action continue, to the
budget's end or an error). Each decision t on it is one row: the features of the observations so far,
and the targets ``z = ln(E_final / E_t)`` (E_final: the path's last good eval loss) and the
continuation value ``V_t = max_{s>=t} sum_{t<u<=s} r_u``. Held-out instances are never read.

The network (two tanh layers) is trained by pinball loss on the quantiles of z and squared error on V;
its iteration count and the conformal shifts come from 5-fold cross-validation over instances (every
row judged by a model that never saw its instance); then it is refitted on everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from govgym.agents.curvepred import INPUTS, QUANTILES, CurveModel, features
from govgym.typed import ConfigError, check_range


@dataclass
class CurveFitConfig:
    """What ``govgym fit-curve`` fits on and how."""

    instances: str = ""
    """Instance-set YAML ('' = the packaged FineTune-v2 set, configs/instances_v2.yaml)."""
    memo: str = "data/corpus_v2/memo"
    """Folder of saved step trees (``govgym collect-world`` writes them); only the train split's are read."""
    max_instances: int = 0
    """Fit on at most this many train instances, drawn with ``seed`` (0 = all): the learning curve of the predictor."""
    hidden: int = 64
    """Width of the two tanh layers."""
    iterations: int = 3000
    """At most this many full-batch AdamW iterations; the count is chosen by 5-fold CV over instances."""
    seed: int = 0
    """Seed of the instance draw, the cross-validation folds and the network's initialization."""

    def __post_init__(self) -> None:
        check_range("fit-curve.max_instances", self.max_instances, 0)
        check_range("fit-curve.hidden", self.hidden, 4, 1024)
        check_range("fit-curve.iterations", self.iterations, 25)


class FixedPath(NamedTuple):
    """A saved tree's fixed-budget path (every action continue), as far as it ran."""

    obs: list[np.ndarray]
    """Observations from the reset on, one per interval that ended without an error."""
    evals: list[float]
    """The eval loss beside each observation."""
    rewards: list[float]
    """Per interval, the failing one's (its penalty) included."""
    error: bool
    """The path ended in an error (an OOM or crash): its last reward is that interval's."""


def fixed_path(nodes: dict[tuple[int, ...], Any]) -> FixedPath | None:
    """The fixed path of a tree's nodes; None when it was not run to its end (or not at all) in this tree."""
    if () not in nodes:
        return None
    obs, evals, rewards = (
        [np.asarray(nodes[()].obs, dtype=np.float64)],
        [float(nodes[()].info["eval_loss"])],
        [],
    )
    prefix: tuple[int, ...] = ()
    while True:
        prefix = (*prefix, 0)
        node = nodes.get(prefix)
        if node is None:
            return None
        rewards.append(float(node.reward))
        if node.info.get("error"):
            return FixedPath(obs, evals, rewards, True)
        obs.append(np.asarray(node.obs, dtype=np.float64))
        evals.append(float(node.info["eval_loss"]))
        if node.terminated or node.truncated:
            return FixedPath(obs, evals, rewards, False)


def decision_rows(path: FixedPath) -> tuple[list[np.ndarray], list[float], list[float]]:
    """(features, z, V) of every decision along ``path``: row i is the decision after interval i + 1 (the
    reset observation has no interval behind it); an error's interval is not a decision and adds no value."""
    rewards = path.rewards[:-1] if path.error else path.rewards
    final = path.evals[-1]
    xs, zs, vs = [], [], []
    for t in range(1, len(path.obs)):
        xs.append(features(path.obs[: t + 1]))
        zs.append(float(np.log(final / path.evals[t])))
        future = np.cumsum(rewards[t:])
        vs.append(float(max(0.0, future.max() if len(future) else 0.0)))
    return xs, zs, vs


def path_rows(nodes: dict[tuple[int, ...], Any]) -> tuple[list[np.ndarray], list[float], list[float]]:
    """(features, z, V) of every decision along a tree's fixed path (its all-continue prefixes)."""
    path = fixed_path(nodes)
    return ([], [], []) if path is None else decision_rows(path)


def load_fixed_paths(trees: list[tuple[str, int, Path]]) -> list[tuple[str, int, FixedPath]]:
    """(instance, episode seed, fixed path) of every saved tree in ``trees`` (``fastfit.tree_index``'s list)
    whose fixed path ran to its end."""
    from govgym.envs.memo import load_nodes

    out = []
    for inst, seed, file in trees:
        path = fixed_path(load_nodes(file))
        if path is not None:
            out.append((inst, seed, path))
    return out


def collect_rows(cfg: CurveFitConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from govgym.envs.fastfit import tree_index
    from govgym.envs.instances import default_instances_path, load_instances

    iset = load_instances(cfg.instances or str(default_instances_path(2)))
    trees = tree_index(iset, cfg.memo, "train")
    if cfg.max_instances:
        names = sorted({t[0] for t in trees})
        keep = set(random.Random(cfg.seed).sample(names, min(cfg.max_instances, len(names))))
        trees = [t for t in trees if t[0] in keep]
    xs, zs, vs, groups = [], [], [], []
    for inst, _seed, path in load_fixed_paths(trees):
        x, z, v = decision_rows(path)
        xs += x
        zs += z
        vs += v
        groups += [inst] * len(x)
    if len(set(groups)) < 2:
        raise ConfigError(
            f"fit-curve: found fixed paths of {len(set(groups))} train instance(s) under {cfg.memo!r}; at least 2 "
            "are needed. Collect the corpus first: `govgym collect-world out=data/corpus_v2`."
        )
    return np.array(xs), np.array(zs), np.array(vs), groups


def _train(x, y, rows, hidden, n_iter, seed, val=None, every=25):
    import torch

    torch.manual_seed(seed)
    k = len(QUANTILES)
    m = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, k + 1),
    )
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=1e-3)
    tau = torch.tensor(QUANTILES, dtype=torch.float32)

    def loss_of(p, t):
        d = t[:, :1] - p[:, :k]
        pin = torch.maximum(tau * d, (tau - 1) * d).mean()
        return pin + 0.5 * ((p[:, k] - t[:, 1]) ** 2).mean()

    curve, preds = [], []
    for it in range(1, n_iter + 1):
        opt.zero_grad()
        loss = loss_of(m(x[rows]), y[rows])
        loss.backward()
        opt.step()
        if val is not None and it % every == 0:
            with torch.no_grad():
                p = m(x[val])
                curve.append(float(loss_of(p, y[val])))
                preds.append(p.numpy().copy())
    return m, curve, preds


def fit_curve(cfg: CurveFitConfig) -> tuple[CurveModel, dict[str, Any]]:
    """Fit the predictor; returns it and its report (out-of-fold coverage of each quantile, V's error)."""
    import torch

    x, z, v, groups = collect_rows(cfg)
    xm, xsd = x.mean(0), x.std(0) + 1e-6
    scale = np.array([max(float(np.std(z)), 1e-3)] * len(QUANTILES) + [max(float(np.std(v)), 1e-4)])
    xt = torch.tensor((x - xm) / xsd, dtype=torch.float32)
    yt = torch.tensor(np.stack([z / scale[0], v / scale[-1]], 1), dtype=torch.float32)
    names = sorted(set(groups))
    random.Random(cfg.seed).shuffle(names)
    folds = min(5, len(names))
    fold_of = {g: i % folds for i, g in enumerate(names)}
    fold = np.array([fold_of[g] for g in groups])
    every = 25
    curves, fold_preds = [], []
    for f in range(folds):
        val = torch.tensor(fold == f)
        _, c, p = _train(xt, yt, ~val, cfg.hidden, cfg.iterations // every * every, cfg.seed, val, every)
        curves.append(np.array(c) * int(val.sum()))
        fold_preds.append(p)
    best = int(np.argmin(np.sum(curves, axis=0)))
    n_iter = (best + 1) * every
    oof = np.zeros((len(z), len(QUANTILES) + 1))
    for f in range(folds):
        oof[fold == f] = fold_preds[f][best]
    oof = oof * scale
    k = len(QUANTILES)
    raw_cov = [float(np.mean(z < oof[:, i])) for i in range(k)]
    # split-conformal (CQR-style) shift: the out-of-fold residual quantile at each level
    shift = np.array([float(np.quantile(z - oof[:, i], q)) for i, q in enumerate(QUANTILES)])
    cal_cov = [float(np.mean(z < oof[:, i] + shift[i])) for i in range(k)]
    model, _, _ = _train(xt, yt, torch.ones(len(z), dtype=torch.bool), cfg.hidden, n_iter, cfg.seed)
    lin = [m for m in model if isinstance(m, torch.nn.Linear)]
    layers = [
        (m.weight.detach().numpy().T.astype(np.float64), m.bias.detach().numpy().astype(np.float64))
        for m in lin
    ]
    report = {
        "instances": len(names),
        "rows": int(len(z)),
        "iterations": n_iter,
        "cv_folds": folds,
        "oof_coverage_raw": dict(zip(map(str, QUANTILES), raw_cov)),
        "oof_coverage_conformal": dict(zip(map(str, QUANTILES), cal_cov)),
        "oof_median_abs_err_z": float(
            np.mean(np.abs(z - (oof[:, QUANTILES.index(0.5)] + shift[QUANTILES.index(0.5)])))
        ),
        "oof_mae_v": float(np.mean(np.abs(v - np.maximum(oof[:, k], 0.0)))),
        "mean_abs_z": float(np.mean(np.abs(z))),
        "mean_v": float(np.mean(v)),
        # R^2 out of fold (1 - squared error / variance): 0 = no better than the mean, < 0 = worse
        "oof_r2_v": float(
            1.0 - np.mean((v - np.maximum(oof[:, k], 0.0)) ** 2) / max(float(np.var(v)), 1e-18)
        ),
        "oof_r2_z_median": float(
            1.0
            - np.mean((z - oof[:, QUANTILES.index(0.5)] - shift[QUANTILES.index(0.5)]) ** 2)
            / max(float(np.var(z)), 1e-18)
        ),
        "inputs": list(INPUTS),
        "memo": str(cfg.memo),
        "instance_set": Path(cfg.instances).name if cfg.instances else "instances_v2.yaml",
        "split": "train",
    }
    return CurveModel(xm, xsd, layers, scale, shift, provenance=report), report


__all__ = [
    "CurveFitConfig",
    "FixedPath",
    "collect_rows",
    "decision_rows",
    "fit_curve",
    "fixed_path",
    "load_fixed_paths",
    "path_rows",
]
