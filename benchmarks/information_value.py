"""What would a learned stop rule need to know to take the room the tuned rule leaves? (issue 20)

    python benchmarks/information_value.py --out runs/information_value     # ~6 min on 2 cores, 0 real steps

One learned stop rule, several inputs. A small MLP ensemble regresses the continuation value ``V_t`` of every
decision on the train corpus's fixed paths (``benchmarks/predictability.py``'s target); the governor
continues while the predicted V exceeds a threshold chosen on out-of-fold predictions of the train
instances, and stops at the memory cap (the observation shows ``mem_frac >= 1`` one interval before every
OOM of these fixed paths). Judged by first-stop regret against the oracle stop on every held-out fixed path
(the sets below, 728 paths), beside the tuned marginal-gain rule with and without that guard and the RL
agent. The inputs:

- ``observed``: what the curve predictor sees (``agents.curvepred.INPUTS``: the observation and the last two
  eval ratios);
- ``+epochs``: plus the epochs done and planned (what any Trainer knows: ``state.epoch``, ``num_train_epochs``);
- ``+world``: plus the generator's hidden draw (noise rate, LR multiplier, data size, family), which no
  deployed governor can know;
- ``+final loss``: plus ``z_t = ln(E_final / E_t)`` of the fixed run (the hindsight target of a curve
  predictor, LC-PFN's goal), exact, or with a per-path error of sd ``sigma`` (``+final loss ~ sigma``).

If only ``+final loss`` takes the room, the bottleneck is predicting the final loss, not the learner.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from predictability import (
    first_stops,
    fixed_paths,
    oracle,
)  # benchmarks/ (the script's folder) is on sys.path

from govgym.agents.bootstrap import clustered_bootstrap
from govgym.agents.curvetrain import decision_rows
from govgym.agents.harness import task_env
from govgym.efficiency.signals import FEATURE_NAMES
from govgym.envs.instances import load_instances
from govgym.results import format_table, write_json, write_rows

TRAIN = "configs/instances_v2.yaml:train:data/corpus_v2/memo"
HELDOUT = {
    "a": "configs/instances_v2.yaml:test-a:data/heldout_v2/a/memo",
    "b": "configs/instances_v2.yaml:test-b:data/heldout_v2/b/memo",
    "c": "configs/instances_v2.yaml:test-c:data/heldout_v2/c/memo",
    "b2": "configs/instances_v2_b2.yaml:test-b:data/heldout_v2/b2/memo",
    "f3a": "configs/instances_v2_f3.yaml:test-a:data/heldout_v2/f3/a/memo",
    "f3b": "configs/instances_v2_f3.yaml:test-b:data/heldout_v2/f3/b/memo",
    "f3c": "configs/instances_v2_f3.yaml:test-c:data/heldout_v2/f3/c/memo",
}
UNSEEN_TASKS = ("b", "b2", "f3b")
"""The sets of split (b), unseen tasks: the must-show's regret goal (<= half the rule's) is stated there."""
FAMILIES = ("clean", "noisy", "overfit", "cap", "mix")
MEM = FEATURE_NAMES.index("mem_frac")


Row = dict[str, Any]
"""One fixed path: instance, seed, path, its decision rows' input blocks (observed, epochs, world, z) and V."""


def load_set(spec: str) -> list[Row]:
    instances, split, memo = spec.split(":")
    iset = load_instances(instances)
    out = []
    for name, seed, path in fixed_paths(instances, split, memo):
        inst = iset.get(name)
        d, be = inst.draw or {}, float(inst.budget_epochs or 0.0)
        x, z, v = decision_rows(path)
        x = np.array(x)
        world = [
            float(d.get("noise_rate", 0.0)),
            float(d.get("lr_mult", 1.0)),
            np.log(float(d.get("max_examples", 100))),
        ]
        world += [float(inst.family == f) for f in FAMILIES]
        out.append(
            {
                "instance": name,
                "seed": seed,
                "path": path,
                "observed": x,
                "epochs": np.stack([x[:, 0] * be, np.full(len(x), be)], 1),  # INPUTS[0]: budget share used
                "world": np.tile(world, (len(x), 1)),
                "z": np.array(z)[:, None],
                "v": np.array(v),
            }
        )
    return out


def inputs(p: Row, kind: str) -> np.ndarray:
    blocks = [p["observed"]]
    if kind in ("+epochs", "+world"):
        blocks.append(p["epochs"])
    if kind == "+world":
        blocks.append(p["world"])
    if kind.startswith("+final loss"):
        z = p["z"]
        if "~" in kind:  # a per-path error: a predictor that misjudges this run's final level
            sigma = float(kind.split("~")[1])
            rng = np.random.default_rng(zlib.crc32(f"{p['instance']}:{p['seed']}".encode()))
            z = z + rng.normal(0.0, sigma)
        blocks.append(z)
    return np.hstack(blocks)


def fit(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 600) -> Any:
    """A 2x64 tanh MLP on standardized inputs, full-batch Adam: V (scaled by its sd)."""
    torch.manual_seed(seed)
    mu, sd, ys = x.mean(0), x.std(0) + 1e-6, float(y.std()) + 1e-9
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y / ys, dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        ((net(xt)[:, 0] - yt) ** 2).mean().backward()
        opt.step()

    def predict(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.tensor((z - mu) / sd, dtype=torch.float32))[:, 0].numpy() * ys

    return predict


def ensemble(xs: list[np.ndarray], ys: list[np.ndarray], n: int, seed: int) -> Any:
    x, y = np.vstack(xs), np.concatenate(ys)
    members = [fit(x, y, seed + k) for k in range(n)]
    return lambda z: np.mean([m(z) for m in members], 0)


def first_stop(p: Row, vhat: np.ndarray, tau: float) -> float:
    """Regret of stopping at the first decision with predicted V <= tau, or at the memory cap."""
    path = p["path"]
    cum, best = oracle(path)
    t = len(path.rewards)
    for i in range(1, len(path.obs)):  # decision i follows interval i: row i - 1
        if path.obs[i][MEM] >= 1.0 or vhat[i - 1] <= tau:
            t = i
            break
    return float(cum[best] - cum[t])


def learned(train: list[Row], held: dict[str, list[Row]], kind: str, seed: int) -> dict[str, Any]:
    xs, ys = [inputs(p, kind) for p in train], [p["v"] for p in train]
    names = sorted({p["instance"] for p in train})
    np.random.default_rng(seed).shuffle(names)
    fold = {n: i % 5 for i, n in enumerate(names)}
    oof: list[np.ndarray] = [np.empty(0)] * len(train)
    for f in range(5):  # the threshold is chosen on predictions for instances the model did not see
        inside = [i for i, p in enumerate(train) if fold[p["instance"]] != f]
        model = ensemble([xs[i] for i in inside], [ys[i] for i in inside], 2, seed)
        for i, p in enumerate(train):
            if fold[p["instance"]] == f:
                oof[i] = model(xs[i])
    grid = np.quantile(np.concatenate(oof), np.linspace(0.0, 0.9, 46))
    tau = float(
        max(grid, key=lambda t: -np.mean([first_stop(p, o, t) for p, o in zip(train, oof, strict=True)]))
    )
    model = ensemble(xs, ys, 3, seed)
    pooled_y, pooled_p = np.concatenate(ys), np.concatenate(oof)
    return {
        "tau": tau,
        "oof_r2_V": float(1 - np.mean((pooled_y - pooled_p) ** 2) / pooled_y.var()),
        "regret": {
            s: np.array([first_stop(p, model(inputs(p, kind)), tau) for p in ps]) for s, ps in held.items()
        },
    }


def reference(
    held: dict[str, list[Row]], specs: dict[str, str], knobs: str
) -> dict[str, dict[str, np.ndarray]]:
    """First-stop regret of tuned rules and agents (``first_stops``), and of each with the memory guard."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for s, ps in held.items():
        instances, split, _ = HELDOUT[s].split(":")
        names = task_env(instances, split).action_names
        paths = [(p["instance"], p["seed"], p["path"]) for p in ps]
        got = first_stops(paths, list(specs.values()), knobs, names)
        for label, rows in zip(specs, got.values(), strict=True):
            out.setdefault(label, {})[s] = np.array([r["regret"] for r in rows])
            guarded = []
            for p, r in zip(ps, rows, strict=True):
                cum, best = oracle(p["path"])
                cap = next((i for i, o in enumerate(p["path"].obs) if o[MEM] >= 1.0), len(p["path"].rewards))
                guarded.append(float(cum[best] - cum[min(cap, r["stop"])]))
            out.setdefault(f"{label} + guard", {})[s] = np.array(guarded)
    return out


def predictor_error(held: dict[str, list[Row]]) -> list[dict[str, Any]]:
    """How well the packaged curve predictor (``configs/curve_v2.json``) knows z on each held-out set: the sd
    and median of its median's error, and the sd of each path's mean error (the per-path part that
    ``+final loss ~ sigma`` models)."""
    from govgym.agents.curvepred import cached_model

    model, rows = cached_model(""), []
    for s, ps in held.items():
        errs = [model.predict(p["observed"])[0][:, 3] - p["z"][:, 0] for p in ps]
        e = np.concatenate(errs)
        rows.append(
            {
                "set": s,
                "decisions": len(e),
                "sd_z": round(float(np.concatenate([p["z"][:, 0] for p in ps]).std()), 4),
                "sd_error": round(float(e.std()), 4),
                "median_abs_error": round(float(np.median(np.abs(e))), 4),
                "sd_per_path_error": round(float(np.std([x.mean() for x in errs])), 4),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--knobs", default="configs/heuristics_v2.yaml")
    ap.add_argument(
        "--inputs",
        nargs="+",
        default=["observed", "+epochs", "+world", "+final loss", "+final loss ~0.01", "+final loss ~0.02"],
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/information_value")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train = load_set(TRAIN)
    held = {s: load_set(spec) for s, spec in HELDOUT.items()}
    refs = {"marginal_gain": "marginal_gain", "mbrl_p0+shield": "mbrl_p0=data/agents_v2/mbrl_p0+shield"}
    regret = reference(held, refs, args.knobs)
    meta: dict[str, Any] = {}
    for kind in args.inputs:
        res = learned(train, held, kind, args.seed)
        regret[f"learned V ({kind}) + guard"] = res["regret"]
        meta[kind] = {"tau": res["tau"], "oof_r2_V": res["oof_r2_V"]}
        print(f"{kind}: tau {res['tau']:.4f}, out-of-fold R^2 of V {res['oof_r2_V']:.3f}", flush=True)
    groups = [f"{s}/{p['instance']}" for s, ps in held.items() for p in ps]
    rule = regret["marginal_gain + guard"]
    base = np.concatenate(list(rule.values()))
    base_b = np.concatenate([rule[s] for s in UNSEEN_TASKS])
    rows = []
    for label, per in regret.items():
        allr = np.concatenate(list(per.values()))
        on_b = np.concatenate([per[s] for s in UNSEEN_TASKS])
        by: dict[str, list[float]] = {}  # paired by path; an instance's seeds resample together
        for g, d in zip(groups, allr - base, strict=True):
            by.setdefault(g, []).append(float(d))
        diff = clustered_bootstrap(by)
        m, lo, hi = diff["mean"], diff["lo"], diff["hi"]
        rows.append(
            {
                "governor": label,
                **{s: round(float(r.mean()), 4) for s, r in per.items()},
                "pooled": round(float(allr.mean()), 4),
                "x rule+guard": round(float(allr.mean() / base.mean()), 2),
                "minus rule+guard [95% CI]": f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]",
                "(b) x rule+guard": round(float(on_b.mean() / base_b.mean()), 2),
            }
        )
    print(format_table(rows))
    perr = predictor_error(held)
    print("\nthe packaged curve predictor's error on z = ln(E_final / E_t), held out")
    print(format_table(perr))
    out = Path(args.out)
    write_rows(out, "information_value", rows)
    write_rows(out, "predictor_error", perr)
    write_json(
        out / "information_value.json",
        {"rows": rows, "learned": meta, "paths": len(groups), "predictor_error": perr},
    )
    print(
        f"wrote {out}/information_value.csv/json ({len(groups)} held-out fixed paths; regret: lower is better)"
    )


if __name__ == "__main__":
    main()
