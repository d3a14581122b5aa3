"""``govgym sim2real``: how well the fast backend predicts the real env on held-out instances.

    govgym sim2real                      # the packaged fast model vs runs/memo + runs/eval_v1 (held out)
    govgym sim2real traces=[11,22,44,0]  # also refit on that many train traces (0 = all): error vs traces

Two comparisons, both on the *held-out* split (never in a fast model's fit):

- **Fixed action sequences**: every complete episode saved in the held-out step trees (``govgym map``'s
  explored branches: the fixed run, reprunes and switches at its branch points, stops; ``govgym
  evaluate``'s policies) is replayed open loop in ``govgym/FineTuneFast-v1`` at the model's mean
  (``noise=False``): per-step relative error of the eval loss (E_t/E_0, so the unknown absolute E_0
  does not count), error of the budget fraction used, and the error of the episode's return.
- **Policies**: every policy of a real leaderboard (``govgym evaluate``'s ``episodes.csv``) is run closed
  loop in the fast env on the same (instance, seed) pairs with the dynamics' noise; the real and
  predicted mean returns are compared per policy, and the policies' ranking by Spearman's ρ.

With ``traces`` the fast model is refitted on that many (instance, seed) trees of the train split
(``fit_seeds`` draws each) and both comparisons are repeated: the error as a function of the number of
real traces. Output: terminal table, ``sim2real.csv/json`` and ``sim2real.png``.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym.typed import ConfigError, check_choice, check_range


@dataclass
class Sim2RealConfig:
    """What ``govgym sim2real`` compares."""

    instances: str = ""
    """Instance-set YAML ('' = packaged configs/instances_v1.yaml, FineTune-v1)."""
    model: str = ""
    """Fast model file ('' = the packaged configs/fast_v1.json)."""
    memo: str = "runs/memo"
    """Saved step trees: held-out ones are the real side of the fixed sequences; train ones feed refits."""
    eval: str = "runs/eval_v1"
    """A `govgym evaluate` output folder (episodes.csv): the real side of the policy comparison ('' = compare
    the fixed action sequences of the held-out trees only)."""
    agents: list[str] = field(default_factory=lambda: ["agent=runs/train_v1/final.zip"])
    """label=path of each trained agent behind the real leaderboard's learned rows (rows with another label that
    is not a heuristic are skipped)."""
    seeds: int = 5
    """Episode seeds per held-out instance (0 .. seeds-1), as the real leaderboard's."""
    traces: list[int] = field(default_factory=list)
    """Refit on this many train traces each (0 = all) and compare again: error vs number of traces."""
    fit_seeds: int = 2
    """Draws of each trace count (the spread of the error-vs-traces curve)."""
    split: str = "test"
    """Held-out split compared: test, or one of FineTune-v2's test-a (new draws), test-b (unseen tasks), test-c (unseen bases)."""
    knobs: str = ""
    """Tuned knobs of the heuristics named plainly, as the real leaderboard's (`govgym evaluate knobs=`; '' = packaged)."""
    curve: str = "traces"
    """What ``traces`` counts: (instance, seed) trees, or train instances (all the trees of each): error vs breadth."""

    def __post_init__(self) -> None:
        for i, a in enumerate(self.agents):
            if "=" not in str(a) or not str(a).split("=", 1)[0]:
                raise ConfigError(
                    f"sim2real.agents[{i}]: got {a!r}; give label=path, the label as in the leaderboard, e.g. "
                    "agent=runs/train_v1/final.zip."
                )
        check_choice("sim2real.split", self.split, ("test", "test-a", "test-b", "test-c"))
        check_choice("sim2real.curve", self.curve, ("traces", "instances"))
        check_range("sim2real.seeds", self.seeds, 1)
        check_range("sim2real.fit_seeds", self.fit_seeds, 1)
        for i, n in enumerate(self.traces):
            check_range(f"sim2real.traces[{i}]", n, 0)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(x: list[float]) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):
            r[x == v] = r[x == v].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


# ----------------------------------------------------------------------------- real side
def real_paths(iset: Any, memo: str, split: str = "test") -> list[dict[str, Any]]:
    """Every complete episode of the saved held-out trees: actions, eval ratios, budget fractions, return."""
    from govgym.envs.fastfit import tree_index
    from govgym.envs.memo import load_nodes

    out = []
    for inst, seed, path in tree_index(iset, memo, split=split):
        nodes = load_nodes(path)
        if () not in nodes:
            continue
        e0 = float(nodes[()].info["eval_loss"])
        for prefix, node in nodes.items():
            if not prefix or not (node.terminated or node.truncated):
                continue
            chain = [nodes.get(prefix[: i + 1]) for i in range(len(prefix))]
            if any(c is None for c in chain):
                continue
            ys = [
                float(c.info["eval_loss"]) / e0 if c.info.get("eval_loss") is not None else math.nan
                for c in chain
            ]
            out.append(
                {
                    "instance": inst,
                    "episode_seed": seed,
                    "actions": list(prefix),
                    "eval_ratio": ys,
                    "budget_frac": [float(c.info["budget_frac"]) for c in chain],
                    "return": float(sum(c.reward for c in chain)),
                    "error": str(chain[-1].info.get("error") or ""),
                }
            )
    return out


def real_returns(folder: str, seeds: int) -> dict[str, dict[tuple[str, int], float]]:
    """Per policy label: (instance, seed) -> return, from a `govgym evaluate` folder's episodes.csv."""
    p = Path(folder) / "episodes.csv"
    if not p.is_file():
        raise ConfigError(
            f"sim2real.eval: {p} is not a file; run `govgym evaluate --out {folder}` first (or point eval= at a "
            "folder it wrote)."
        )
    out: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    with p.open() as f:
        for r in csv.DictReader(f):
            if int(r["episode_seed"]) < seeds:
                out[r["policy"]][(r["instance"], int(r["episode_seed"]))] = float(r["return"])
    return dict(out)


# ----------------------------------------------------------------------------- fast side
def replay(env: Any, path: dict[str, Any]) -> dict[str, Any]:
    """Play ``path``'s actions open loop in the fast env; what it predicts at each step."""
    env.reset(options={"instance": path["instance"], "episode_seed": path["episode_seed"]})
    ys, fr, ret, err = [], [], 0.0, ""
    for a in path["actions"]:
        _, r, term, trunc, info = env.step(int(a))
        ret += r
        ys.append(info["eval_loss"] / info["e0"])
        fr.append(info["budget_frac"])
        if term or trunc:
            err = info.get("error", "")
            break
    return {"eval_ratio": ys, "budget_frac": fr, "return": ret, "error": err}


def play(env: Any, policy: Any, instance: str, seed: int) -> dict[str, Any]:
    """One closed-loop episode of ``policy`` (SB3's predict with action masks) in the fast env."""
    obs, _ = env.reset(options={"instance": instance, "episode_seed": seed})
    ret, start, rewards = 0.0, True, []
    while True:
        a, _ = policy.predict(
            obs, episode_start=np.array([start]), deterministic=True, action_masks=env.action_masks()
        )
        start = False
        obs, r, term, trunc, info = env.step(int(np.asarray(a).reshape(-1)[0]))
        rewards.append(float(r))
        ret += r
        if term or trunc:
            return {"return": ret, "rewards": rewards, "error": info.get("error", "")}


def compare(
    fm: Any, iset: Any, cfg: Sim2RealConfig, paths: list[dict[str, Any]], real: dict[str, Any]
) -> dict[str, Any]:
    """Both comparisons for one fast model."""
    from govgym.agents.policies import build_policy, parse_spec
    from govgym.envs.fast_env import FineTuneFastEnv

    mean_env = FineTuneFastEnv(iset, split=cfg.split, model=fm, noise=False)
    errs, frac_errs, ret_errs, oom_agree = [], [], [], []
    by_family: dict[str, list[float]] = defaultdict(list)
    held = iset.split(cfg.split)
    fam = {i.name: i.family for i in held}
    for p in paths:
        f = replay(mean_env, p)
        n = min(len(f["eval_ratio"]), len(p["eval_ratio"]))
        for t in range(n):
            yr = p["eval_ratio"][t]
            if math.isfinite(yr) and not (p["error"] and t == len(p["eval_ratio"]) - 1):
                e = abs(f["eval_ratio"][t] - yr) / yr
                errs.append(e)
                by_family[fam.get(p["instance"], "?")].append(e)
            frac_errs.append(abs(f["budget_frac"][t] - p["budget_frac"][t]))
        ret_errs.append(abs(f["return"] - p["return"]))
        oom_agree.append(f["error"].startswith("oom") == p["error"].startswith("oom"))
    noisy = FineTuneFastEnv(iset, split=cfg.split, model=fm, noise=True)
    # the instances the real side has (an evaluation of the split's first N): both sides average the same
    seen = {inst for per in real.values() for inst, _ in per} or {p["instance"] for p in paths}
    names = [i.name for i in held if i.name in seen]
    pol_rows = []
    for label, per in real.items():
        if label == "oracle":
            fixed = build_policy(parse_spec("fixed_budget"), noisy.action_names)
            pred = []
            for inst in names:
                for s in range(cfg.seeds):
                    ep = play(noisy, fixed, inst, s)
                    pred.append(
                        float(
                            np.max(
                                np.concatenate(
                                    [[0.0], np.cumsum(ep["rewards"][:-1] if ep["error"] else ep["rewards"])]
                                )
                            )
                        )
                    )
        else:
            agents = dict(str(a).split("=", 1) for a in cfg.agents)
            rule = label.split(":", 1)[0] in _heuristic_names() and label not in agents
            if not rule and label not in agents:
                continue  # a learned row and no agent named for it: nothing to run it with
            spec = parse_spec(label, cfg.knobs or None) if rule else parse_spec(agents[label])
            pred = []
            for inst in names:
                for s in range(cfg.seeds):
                    policy = build_policy(spec, noisy.action_names, s)
                    pred.append(play(noisy, policy, inst, s)["return"])
        pol_rows.append(
            {
                "policy": label,
                "real_return": float(np.mean(list(per.values()))),
                "fast_return": float(np.mean(pred)),
            }
        )
    rho = (
        spearman([r["real_return"] for r in pol_rows], [r["fast_return"] for r in pol_rows])
        if len(pol_rows) >= 2
        else float("nan")
    )
    return {
        "paths": len(paths),
        "steps": len(errs),
        "eval_rel_err_mean": float(np.mean(errs)),
        "eval_rel_err_median": float(np.median(errs)),
        "eval_rel_err_by_family": {k: float(np.mean(v)) for k, v in sorted(by_family.items())},
        "budget_frac_err_mean": float(np.mean(frac_errs)),
        "return_abs_err_mean": float(np.mean(ret_errs)),
        "oom_agreement": float(np.mean(oom_agree)),
        "policies": pol_rows,
        "spearman": rho,
    }


def _heuristic_names() -> set[str]:
    from govgym.agents.heuristics import POLICIES

    return set(POLICIES)


def sim2real(cfg: Sim2RealConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run both comparisons for the given model and, with ``traces``, for refits on fewer traces."""
    from govgym.envs.fastfit import FitConfig, fit_fast
    from govgym.envs.fastmodel import INPUTS, default_model_path, load_model
    from govgym.envs.instances import load_instances
    from govgym.results import write_json, write_rows

    iset = load_instances(cfg.instances or None)
    paths = real_paths(iset, cfg.memo, cfg.split)
    if not paths:
        raise ConfigError(
            f"sim2real: no saved held-out episodes under {cfg.memo!r}; run `govgym map` and `govgym evaluate` first."
        )
    real = real_returns(cfg.eval, cfg.seeds) if cfg.eval else {}
    fm = load_model(cfg.model or default_model_path())
    main = compare(fm, iset, cfg, paths, real)
    main["traces"] = int(fm.provenance.get("traces", 0))
    curve = []
    for n in cfg.traces:
        for s in range(cfg.fit_seeds):
            count = {"max_traces" if cfg.curve == "traces" else "max_instances": n}
            inputs = 1 if tuple(fm.inputs) == INPUTS else 2  # refit as the model compared was fitted
            fit = FitConfig(instances=cfg.instances, memo=cfg.memo, seed=s, inputs=inputs, **count)
            sub, rep = fit_fast(fit)
            r = compare(sub, iset, cfg, paths, real)
            curve.append(
                {
                    "traces": rep["traces"],
                    "instances": len(rep["instances"]),
                    "fit_seed": s,
                    "transitions": rep["mechanics_check"]["transitions"],
                    **{
                        k: r[k]
                        for k in (
                            "eval_rel_err_mean",
                            "budget_frac_err_mean",
                            "return_abs_err_mean",
                            "spearman",
                        )
                    },
                }
            )
            if progress:
                print(
                    f"  refit on {rep['traces']} traces (seed {s}): eval err {r['eval_rel_err_mean']:.4f}, rho {r['spearman']:.3f}",
                    flush=True,
                )
            if n == 0:
                break
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out, "sim2real_policies", main["policies"], {"spearman": main["spearman"]})
    if curve:
        write_rows(out, "sim2real_traces", curve)
    summary = {**main, "split": cfg.split, "curve_unit": cfg.curve, "curve": curve}
    write_json(out / "sim2real.json", summary)
    plot(summary, out / "sim2real.png")
    return summary


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Predicted vs real return per policy; eval error vs number of real traces."""
    from govgym.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(
        1, 2 if summary["curve"] else 1, figsize=(11 if summary["curve"] else 5.5, 4.2), squeeze=False
    )
    ax = axes[0][0]
    rows = summary["policies"]
    xs, ys = [r["real_return"] for r in rows], [r["fast_return"] for r in rows]
    ax.scatter(xs, ys)
    for r in rows:
        ax.annotate(r["policy"], (r["real_return"], r["fast_return"]), fontsize=7)
    if rows:  # none when no real leaderboard was given (eval='')
        lo, hi = min(xs + ys), max(xs + ys)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("real return (held out)")
    ax.set_ylabel("fast backend return")
    ax.set_title(f"policies: Spearman ρ = {summary['spearman']:.2f}")
    if summary["curve"]:
        ax = axes[0][1]
        unit = summary.get("curve_unit", "traces")
        by: dict[int, list[float]] = defaultdict(list)
        for c in summary["curve"]:
            by[c[unit]].append(c["eval_rel_err_mean"])
        ks = sorted(by)
        ax.errorbar(ks, [np.mean(by[k]) for k in ks], yerr=[np.std(by[k]) for k in ks], marker="o", capsize=3)
        ax.set_xlabel(
            "real traces in the fit ((instance, seed) trees)"
            if unit == "traces"
            else "train instances in the fit"
        )
        ax.set_ylabel("per-step |ΔE/E| on held-out sequences")
        ax.set_title(f"error vs number of {unit} ({summary.get('split', 'test')})")
    save_figure(fig, path, dpi=120)
    return path


__all__ = [
    "Sim2RealConfig",
    "compare",
    "play",
    "real_paths",
    "real_returns",
    "replay",
    "sim2real",
    "spearman",
]
