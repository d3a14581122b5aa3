"""CLI jobs of the learned models: the fast backend (fit it from real step trees; compare it with the real env),
the curve predictor, the offline-RL governor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from govgym.results import format_table, write_json


def fit_fast_job(cfg: Any, out: Path) -> Path:
    """Fit, write ``out/fast_model.json`` and ``out/fit.json``, print the fit's report."""
    from govgym.envs.fastfit import fit_fast

    t0 = time.perf_counter()
    fm, report = fit_fast(cfg)
    report["fit_seconds"] = round(time.perf_counter() - t0, 1)
    chk = report["mechanics_check"]
    print(
        f"fitted in {report['fit_seconds']} s, {report['members']} member(s) on inputs v{report['inputs']}, "
        f"cross-validated error {report['cv_error']}"
    )
    print(
        f"fitted on {report['traces']} real traces of {len(report['instances'])} train instances: "
        f"{chk['transitions']} transitions ({chk['nodes']} tree nodes, {chk['oom_nodes']} OOMs)"
    )
    print(
        f"mechanics vs the real env: budget fraction max |err| {chk['budget_frac_max_abs_err']:.2e}, "
        f"LR fraction max |err| {chk['lr_frac_max_abs_err']:.2e}, fixed-run length mismatches {chk['fixed_length_mismatches']}"
    )
    if report.get("val_mae"):
        rows = [
            {"output": k, "held-back MAE": v, "train MAE": report["train_mae"][k]}
            for k, v in report["val_mae"].items()
        ]
        print(format_table(rows))
    out.mkdir(parents=True, exist_ok=True)  # written after the report is shown: a failed write loses nothing
    path = fm.save(out / "fast_model.json")
    write_json(out / "fit.json", report)
    print(f"wrote {path} and {out / 'fit.json'}")
    return path


def sim2real_job(cfg: Any, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run ``agents.sim2real`` and print its tables."""
    from govgym.agents.sim2real import sim2real

    s = sim2real(cfg, out, progress=progress)
    print(
        f"fixed action sequences ({s['paths']} held-out episodes, {s['steps']} steps): per-step |ΔE/E| mean "
        f"{s['eval_rel_err_mean']:.4f} (median {s['eval_rel_err_median']:.4f}), budget fraction |err| "
        f"{s['budget_frac_err_mean']:.2e}, return |err| {s['return_abs_err_mean']:.4f}, OOM agreement {s['oom_agreement']:.0%}"
    )
    if s["policies"]:
        print(format_table(s["policies"]))
        print(f"policy ranking, real vs fast: Spearman rho = {s['spearman']:.3f}")
    if s["curve"]:
        print(format_table(s["curve"]))
    print(f"wrote {out}/sim2real.json, sim2real_policies.csv/json, sim2real.png")
    return s


__all__ = ["fit_curve_job", "fit_fast_job", "offline_job", "sim2real_job"]


def fit_curve_job(cfg: Any, out: Path) -> Path:
    """Fit the learned curve predictor; print its out-of-fold calibration; write ``out/curve_model.json`` + ``fit.json``."""
    from govgym.agents.curvetrain import fit_curve

    model, report = fit_curve(cfg)
    print(
        f"fitted on the fixed paths of {report['instances']} train instances: {report['rows']} decisions, "
        f"{report['iterations']} iterations ({report['cv_folds']}-fold CV over instances)"
    )
    rows = [
        {
            "quantile": q,
            "out-of-fold coverage": report["oof_coverage_raw"][q],
            "after conformal shift": report["oof_coverage_conformal"][q],
        }
        for q in report["oof_coverage_raw"]
    ]
    print(format_table(rows))
    print(
        f"median |z error| {report['oof_median_abs_err_z']:.4f} (mean |z| {report['mean_abs_z']:.4f}); "
        f"continuation value MAE {report['oof_mae_v']:.4f} (mean V {report['mean_v']:.4f})"
    )
    out.mkdir(parents=True, exist_ok=True)
    path = model.save(out / "curve_model.json")
    write_json(out / "fit.json", report)
    print(f"wrote {path} and {out / 'fit.json'}")
    return path


def offline_job(cfg: Any, out: Path, progress: bool = True) -> Path:
    """Learn the offline CQL governor; print its validation against the fixed run and the best stop."""
    from govgym.agents.offline import train_offline

    path, s = train_offline(cfg, out, progress=progress)
    print(
        f"learned from {s['transitions']} continue/stop transitions of {s['train_units']} units; "
        f"validated on the fixed runs of {s['val_units']} held-out units:"
    )
    print(
        format_table(
            [
                {"policy": "fixed budget", "return": s["val_fixed_return"], "stops at (share of run)": 1.0},
                {
                    "policy": "offline CQL",
                    "return": s["val_return"],
                    "stops at (share of run)": s["val_stop_frac"],
                },
                {
                    "policy": "hindsight-best stop",
                    "return": s["val_best_stop_return"],
                    "stops at (share of run)": "",
                },
            ]
        )
    )
    print(f"wrote {path} and {out / 'train_log.csv'}")
    return path
