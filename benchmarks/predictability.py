"""How predictable is the value of continuing from what a governor observes? (issue 20: why learners tie the rule)

    python benchmarks/predictability.py a=configs/instances_v2.yaml:test-a:data/heldout_v2/a/memo \
        b=configs/instances_v2.yaml:test-b:data/heldout_v2/b/memo ... --out runs/predictability

Every decision t on a held-out fixed path (a saved step tree's all-continue prefix) has a hindsight
target: the continuation value ``V_t = max_{s>=t} sum_{t<u<=s} r_u`` of the price objective (0 = stopping
now is the best the path allows; the oracle stop continues exactly while V_t > 0) and
``z_t = ln(E_final / E_t)``. Per set, on instances no predictor was fitted on:

- R^2 of V (1 - squared error / variance) for: the learned curve predictor (``configs/curve_v2.json``,
  fitted on the train corpus), and least-squares fits *on the train corpus* of V on (i) the marginal-gain
  rule's own statistic (gain_rate_ema / lambda) and (ii) all 20 predictor inputs (linear);
- balanced accuracy of the decision "continuing is worth something" (V_t > 0) as each governor's
  condition makes it at that point: the tuned marginal-gain rule (continue while its gain rate >=
  kappa x lambda), the tuned learned curve (continue while predicted V > tau), and the two linear fits
  (threshold chosen on train for the best balanced accuracy);
- the value at stake: mean V over the decisions where each says stop while V_t > 0;
- the same for the learned V head where the stop is decided (within 2 intervals of the oracle stop),
  with the AUC of its prediction for V > 0 there;
- and, since only a governor's *first* stop counts, each governor's stop on every fixed path: its regret
  against the oracle stop, split into stopping too early (the path's best point still ahead: regret = V
  at the stop) and too late (past it), with how often each happens.

A null here (no input predicts V much better than the rule's statistic) says the observation does not hold
what a learner would need to beat the rule, whatever the learner. Reads trees only: 0 real steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from govgym.agents.curvepred import INPUTS, cached_model
from govgym.agents.curvetrain import FixedPath, decision_rows, load_fixed_paths
from govgym.agents.harness import task_env
from govgym.envs.fastfit import tree_index
from govgym.envs.instances import load_instances
from govgym.results import format_table, write_json, write_rows

Paths = list[tuple[str, int, FixedPath]]
"""(instance, episode seed, fixed path) of every saved tree of a set."""


def fixed_paths(instances: str, split: str, memo: str) -> Paths:
    """The fixed paths of ``split``'s saved trees under ``memo`` (each tree read once)."""
    return load_fixed_paths(tree_index(load_instances(instances), memo, split))


def rows(paths: Paths) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(inputs, z, V, instance) of every decision on ``paths``."""
    xs, zs, vs, groups = [], [], [], []
    for inst, _seed, path in paths:
        x, z, v = decision_rows(path)
        xs += x
        zs += z
        vs += v
        groups += [inst] * len(x)
    return np.array(xs), np.array(zs), np.array(vs), groups


def oracle(path: FixedPath) -> tuple[np.ndarray, int]:
    """(return of stopping after each interval, from 0 = at the reset; the best interval to stop after)."""
    cum = np.concatenate([[0.0], np.cumsum(path.rewards)])
    return cum, int(np.argmax(cum[: len(path.obs)]))  # an error's interval cannot be stopped after


def first_stops(
    paths: Paths, specs: list[str], knobs: str, action_names: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Per governor (a ``govgym evaluate`` policy spec: a tuned heuristic, ``NAME+shield``, an agent folder),
    per path: the regret of its first stop against the oracle stop, split early / late. The governor is the
    policy object ``evaluate`` builds, fed the path's observations; a stop-only governor never leaves it."""
    from govgym.agents.policies import build_policy
    from govgym.agents.shield import Shielded
    from govgym.agents.specs import parse_spec

    stop = action_names.index("stop")
    out: dict[str, list[dict[str, Any]]] = {}
    for text in specs:
        shielded = text.endswith("+shield")
        spec = parse_spec(text.removesuffix("+shield"), knobs)
        policy = build_policy(spec, action_names)
        if shielded:
            policy = Shielded(policy, action_names=action_names)
        rows = out[spec.label + ("+shield" if shielded else "")] = []
        for inst, seed, path in paths:
            cum, best_t = oracle(path)
            t_stop = len(path.rewards)  # never stopped: the budget's end (or the error) decides
            for t, o in enumerate(path.obs):
                a, _ = policy.predict(o.astype(np.float32), episode_start=np.array([t == 0]))
                if int(a) == stop:
                    t_stop = t
                    break
                if int(a) != 0:
                    raise ValueError(
                        f"{text}: pulled lever {action_names[int(a)]}; only stop-only governors are judged here"
                    )
            regret = float(cum[best_t] - cum[t_stop])
            rows.append(
                {
                    "instance": inst,
                    "episode_seed": seed,
                    "stop": t_stop,
                    "return": float(cum[t_stop]),
                    "regret": regret,
                    "early": regret if t_stop < best_t else 0.0,
                    "late": regret if t_stop > best_t else 0.0,
                    "is_early": float(t_stop < best_t),
                    "is_late": float(t_stop > best_t),
                }
            )
    return out


def near_stop(paths: Paths, model: Any, width: int = 2) -> dict[str, float]:
    """The learned V head where the decision is made: decisions within ``width`` intervals of the oracle
    stop. R^2 of V there, and the AUC of predicted V for "continuing is still worth something" (V > 0)."""
    v_all, p_all = [], []
    for _inst, _seed, path in paths:
        _, best_t = oracle(path)
        xs, _, vs = decision_rows(path)  # row t - 1: the decision after interval t
        for t in range(max(1, best_t - width), min(len(path.obs) - 1, best_t + width) + 1):
            v_all.append(vs[t - 1])
            p_all.append(float(model.predict(xs[t - 1])[1][0]))
    v, p = np.array(v_all), np.array(p_all)
    pos, neg = p[v > 0], p[v <= 0]
    auc = (
        float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
        if len(pos) and len(neg)
        else float("nan")
    )
    return {
        "decisions": len(v),
        "share_worth_continuing": float(np.mean(v > 0)),
        "mean_V": float(np.mean(v)),
        "r2_V": r2(v, p),
        "auc_worth": auc,
    }


def rule_stat(x: np.ndarray, rate: str) -> np.ndarray:
    """The marginal-gain rule's statistic: its gain rate (``gain_rate`` or ``gain_rate_ema``) over lambda."""
    return x[:, INPUTS.index(rate)] / np.maximum(x[:, INPUTS.index("lam")], 1e-9)


def design(x: np.ndarray, which: str, rate: str) -> np.ndarray:
    cols = rule_stat(x, rate)[:, None] if which == "rule_stat" else x
    return np.hstack([np.ones((len(x), 1)), cols])


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1.0 - np.mean((y - pred) ** 2) / max(float(np.var(y)), 1e-18))


def balanced_acc(worth: np.ndarray, go_on: np.ndarray) -> float:
    return float(0.5 * (np.mean(go_on[worth]) + np.mean(~go_on[~worth])))


def best_threshold(score: np.ndarray, worth: np.ndarray) -> float:
    cands = np.quantile(score, np.linspace(0.01, 0.99, 99))
    return float(max(cands, key=lambda c: balanced_acc(worth, score > c)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", nargs="+", help="NAME=INSTANCES:SPLIT:MEMO (held-out fixed paths)")
    ap.add_argument("--train", default="configs/instances_v2.yaml:train:data/corpus_v2/memo")
    ap.add_argument("--knobs", default="configs/heuristics_v2.yaml")
    ap.add_argument("--model", default="", help="curve model ('' = the packaged configs/curve_v2.json)")
    ap.add_argument(
        "--governors",
        nargs="+",
        default=["marginal_gain", "patience", "early_stopping", "curve_extrapolation", "learned_curve"],
        help="stop-only governors as `govgym evaluate` takes them (NAME, NAME+shield, label=AGENT_DIR)",
    )
    ap.add_argument("--out", default="runs/predictability")
    args = ap.parse_args()
    knobs = yaml.safe_load(Path(args.knobs).read_text())["heuristics"]
    kappa = float(knobs["marginal_gain"]["kappa"])
    rate = "gain_rate_ema" if knobs["marginal_gain"].get("use_ema", True) else "gain_rate"
    tau = float(knobs["learned_curve"]["tau"])
    model = cached_model(args.model)
    xt, _, vt, _ = rows(fixed_paths(*args.train.split(":")))
    fits, thresholds = {}, {}
    for which in ("rule_stat", "all_inputs"):
        fits[which] = np.linalg.lstsq(design(xt, which, rate), vt, rcond=None)[0]
        thresholds[which] = best_threshold(design(xt, which, rate) @ fits[which], vt > 0)
    table, stops, near = [], [], []
    for spec in args.sets:
        name, src = spec.split("=", 1)
        instances, split, memo = src.split(":")
        paths = fixed_paths(instances, split, memo)
        x, z, v, groups = rows(paths)
        worth = v > 0
        q, vhat = model.predict(x)
        lin = {w: design(x, w, rate) @ fits[w] for w in fits}
        go_on = {
            "marginal_gain rule": rule_stat(x, rate) >= kappa,
            "learned curve (V > tau)": vhat > tau,
            "linear on rule statistic": lin["rule_stat"] > thresholds["rule_stat"],
            "linear on all inputs": lin["all_inputs"] > thresholds["all_inputs"],
        }
        r2s = {
            "marginal_gain rule": float("nan"),
            "learned curve (V > tau)": r2(v, vhat),
            "linear on rule statistic": r2(v, lin["rule_stat"]),
            "linear on all inputs": r2(v, lin["all_inputs"]),
        }
        base = {
            "decisions": len(v),
            "instances": len(set(groups)),
            "share_worth_continuing": float(np.mean(worth)),
        }
        for who, g in go_on.items():
            table.append(
                {
                    "set": name,
                    "predictor": who,
                    **base,
                    "r2_V": r2s[who],
                    "balanced_acc": balanced_acc(worth, g),
                    "stops_while_worth": float(np.mean(~g & worth)),
                    "V_lost_per_decision": float(np.mean(np.where(~g & worth, v, 0.0))),
                    "continues_while_not": float(np.mean(g & ~worth)),
                }
            )
        nan = float("nan")
        table.append(
            {
                "set": name,
                "predictor": "learned curve: z median",
                **base,
                "r2_V": r2(z, q[:, 3]),  # R^2 of z (not V) for the record
                "balanced_acc": nan,
                "stops_while_worth": nan,
                "V_lost_per_decision": nan,
                "continues_while_not": nan,
            }
        )
        names = task_env(instances, split).action_names
        for who, rs in first_stops(paths, args.governors, args.knobs, names).items():
            stops.append(
                {
                    "set": name,
                    "governor": who,
                    "paths": len(rs),
                    **{
                        k: float(np.mean([r[k] for r in rs]))
                        for k in ("regret", "early", "late", "is_early", "is_late")
                    },
                }
            )
        near.append({"set": name, **near_stop(paths, model)})
    print(format_table(table))
    print("\nthe learned V head within 2 intervals of the oracle stop (where the stop is decided)")
    print(format_table(near))
    print("\nfirst stop on each fixed path: regret vs the oracle stop, split into too early / too late")
    print(format_table(stops))
    out = Path(args.out)
    write_rows(out, "first_stops", stops)
    write_rows(out, "near_stop", near)
    write_rows(out, "predictability", table)
    write_json(
        out / "predictability.json",
        {
            "kappa": kappa,
            "tau": tau,
            "fits": {k: v.tolist() for k, v in fits.items()},
            "rows": table,
            "first_stops": stops,
            "near_stop": near,
        },
    )
    print(f"wrote {out}/predictability.csv/json (last row per set: R^2 of z's median, not of V)")


if __name__ == "__main__":
    main()
