"""The headroom of a corpus: how much return a perfect governor could still gain over the best rule.

    govgym dataset headroom corpus=/work/corpus_v2 --out runs/headroom

Per (instance, seed) unit of a ``govgym collect-world`` corpus (any split: collect a held-out split with
``split=test-a`` etc. into its own folder), from the episodes it holds:

- ``fixed``: the fixed-budget run's return;
- ``oracle``: the best stop in hindsight on the fixed run (``agents.rollout.oracle_episode``);
- ``explored``: the best *explored* schedule: every episode of the unit (lever branches, heuristics,
  random) scored at its own best stop (its highest-return prefix), and the oracle: the map's "all" row;
- ``heuristic``: the return of the best heuristic, the one with the highest mean return over the whole
  corpus (one rule for all units, as a deployed rule is), and each heuristic's own return.

Rows per family and per task: means of each column and of the gaps ``oracle - heuristic`` and
``explored - heuristic`` (the room the next governor must take), with the count of units.

With ``tolerance`` (the equal-quality objective), per unit whose fixed run ended without an error, the
least FLOPs (as a share of the fixed run's) at which an eval came within the tolerance of the fixed run's
final eval loss: ``eq_stop_frac`` on the fixed run itself (the best a stop-only governor can do) and
``eq_explored_frac`` on any episode of the unit (lever branches, heuristics, random: what a governor that
also pulls levers could reach on the schedules explored). The tables add the compute reduction each
allows, ``1 / mean(frac)`` as ``govgym evaluate`` and the judging script count it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from govgym.typed import ConfigError, check_range

HEURISTIC_POLICIES = ("marginal_gain", "patience", "zeus", "memory_reactive")


@dataclass
class HeadroomConfig:
    """What ``govgym dataset headroom`` reads."""

    corpus: str = "runs/corpus_v2"
    """Folder written by ``govgym collect-world`` (episodes/, memo/, collection.json); any split."""
    tolerance: float = 0.0
    """> 0: add the equal-quality bounds at this tolerance (e.g. 0.005): the least FLOPs to the fixed run's
    final eval within it, stop-only and over any explored schedule (0 = the price columns only)."""

    def __post_init__(self) -> None:
        check_range("headroom.tolerance", self.tolerance, 0.0, 0.5)
        if not (Path(self.corpus) / "collection.json").is_file():
            raise ConfigError(
                f"corpus: {self.corpus!r} holds no collection.json; point it at the folder `govgym collect-world "
                "out=...` wrote."
            )


def _best_stop(rewards: list[float], error: str) -> float:
    cum = np.concatenate([[0.0], np.cumsum(rewards)])
    n_ok = len(rewards) - (1 if error else 0)
    return float(np.max(cum[: n_ok + 1]))


def eq_fracs(corpus: Path, tolerance: float) -> dict[str, dict[str, float]]:
    """Per unit: the least FLOPs share to equal quality on the fixed run and on any explored episode."""
    from govgym.agents.dataset import episodes

    eps, _ = episodes(corpus)
    by_unit: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in eps:
        by_unit[e["unit"]].append(e)
    out = {}
    for unit, es in by_unit.items():
        fixed = next((e for e in es if e["record"]["id"] == "fixed"), None)
        if fixed is None or fixed["record"]["error"]:
            continue
        last = fixed["nodes"][-1].info
        target, total = float(last["eval_loss"]) * (1 + tolerance), float(last["flops_used"])

        def first(e: dict[str, Any], target: float = target, total: float = total) -> float:
            for n in e["nodes"][1:]:
                i = n.info
                if i.get("error"):
                    break
                if float(i["eval_loss"]) <= target:
                    return float(i["flops_used"]) / total
            return float("inf")

        out[unit] = {"eq_stop_frac": first(fixed), "eq_explored_frac": min(first(e) for e in es)}
    return out


def unit_rows(corpus: Path) -> list[dict[str, Any]]:
    """One row per finished unit of ``corpus``: fixed, oracle, explored and each heuristic's return."""
    from govgym.envs.instances import load_instances

    meta = json.loads((corpus / "collection.json").read_text(encoding="utf-8"))
    iset = load_instances(meta["instances"])
    rows = []
    for f in sorted((corpus / "episodes").glob("*.json")):
        unit = json.loads(f.read_text(encoding="utf-8"))
        inst = iset.get(unit["instance"])
        eps = {e["id"]: e for e in unit["episodes"]}
        fixed = eps["fixed"]
        row: dict[str, Any] = {
            "unit": f.stem,
            "family": inst.family,
            "task": inst.draw.get("task", "?"),
            "base": inst.draw.get("base", "?"),
            "holdout": inst.holdout or "train",
            "fixed": float(fixed["return"]),
            "oracle": _best_stop(fixed["rewards"], fixed["error"]),
            "explored": max(_best_stop(e["rewards"], e["error"]) for e in eps.values()),
        }
        for h in HEURISTIC_POLICIES:
            if h in eps:
                row[h] = float(eps[h]["return"])
        rows.append(row)
    if not rows:
        raise ConfigError(
            f"headroom: {str(corpus)!r} has no finished units yet; let `govgym collect-world` run longer."
        )
    return rows


def headroom(corpus: Path, tolerance: float = 0.0) -> dict[str, Any]:
    """The per-unit rows and the tables per family and per task (see the module docstring)."""
    rows = unit_rows(corpus)
    eq = eq_fracs(corpus, tolerance) if tolerance > 0 else {}
    means = {
        h: float(np.mean([r[h] for r in rows if h in r]))
        for h in HEURISTIC_POLICIES
        if any(h in r for r in rows)
    }
    # a corpus collected without heuristics (collect-world heuristics=[]): the fixed run stands in
    best = max(means, key=means.get) if means else "fixed_budget"
    for r in rows:
        r["heuristic"] = r.get(best, r["fixed"])
        r["oracle_gap"] = r["oracle"] - r["heuristic"]
        r["explored_gap"] = r["explored"] - r["heuristic"]
    cols = ("fixed", "heuristic", "oracle", "explored", "oracle_gap", "explored_gap")

    def table(key: str) -> list[dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[r[key]].append(r)
            groups["all"].append(r)
        res = []
        for g, rs in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
            row = {
                key: g,
                "units": len(rs),
                **{c: round(float(np.mean([r[c] for r in rs])), 4) for c in cols},
            }
            q = [eq[r["unit"]] for r in rs if r["unit"] in eq]
            if eq:  # every row the same columns; nan where no fixed run of the group ended without an error
                row["eq_units"] = len(q)
                for c, name in (("eq_stop_frac", "eq_stop_x"), ("eq_explored_frac", "eq_explored_x")):
                    m = float(np.mean([u[c] for u in q])) if q else float("nan")
                    row[c], row[name] = round(m, 4), round(1.0 / m, 3)
            res.append(row)
        return res

    return {
        "best_heuristic": best,
        "heuristic_means": means,
        "by_family": table("family"),
        "by_task": table("task"),
        "rows": rows,
        **({"tolerance": tolerance, "eq_units": eq} if eq else {}),
    }


__all__ = ["HeadroomConfig", "eq_fracs", "headroom", "unit_rows"]
