"""The observation features: fixed length, bounded, scale-free, and meaningful."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from govgym.efficiency.signals import (
    FEATURE_NAMES,
    FEATURES,
    HIGH,
    LOW,
    Reading,
    SignalTracker,
    markdown_table,
    spec_hash,
)


def reading(**kw) -> Reading:
    base = dict(
        flops_used=1e9,
        budget=1e10,
        eval_loss=3.0,
        train_loss=2.9,
        grad_norm=1.0,
        grad_norm_std=0.1,
        grad_noise_scale=80.0,
        batch_size=8,
        mem_peak_mb=50.0,
        cap_mb=100.0,
        strategy="lora+gc",
        kept_fraction=0.8,
        lr_frac=0.5,
        lam=0.3,
    )
    base.update(kw)
    return Reading(**base)


def stream(scale_loss=1.0, scale_flops=1.0, scale_grad=1.0, scale_mem=1.0):
    t = SignalTracker()
    t.reset(4.0 * scale_loss, 0.0)
    out = []
    for i, e in enumerate([3.5, 3.2, 3.1, 3.15]):
        r = reading(
            flops_used=(i + 1) * 1e9 * scale_flops,
            budget=1e10 * scale_flops,
            eval_loss=e * scale_loss,
            train_loss=(e - 0.1) * scale_loss,
            grad_norm=(1 + i) * scale_grad,
            grad_norm_std=0.1 * scale_grad,
            mem_peak_mb=50 * scale_mem,
            cap_mb=100 * scale_mem,
        )
        out.append(t.observe(r))
    return np.stack(out)


def test_shape_bounds_and_dtype():
    obs = stream()
    assert obs.shape == (4, len(FEATURE_NAMES)) and obs.dtype == np.float32
    assert (obs >= LOW).all() and (obs <= HIGH).all()


def test_features_are_scale_free():
    ref = stream()
    np.testing.assert_allclose(
        stream(scale_loss=7.0, scale_flops=1e4, scale_grad=30.0, scale_mem=1e3), ref, rtol=1e-5, atol=1e-6
    )


def test_feature_meanings():
    obs = stream()
    f = dict(zip(FEATURE_NAMES, obs.T))
    np.testing.assert_allclose(f["budget_left"], [0.9, 0.8, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_allclose(f["eval_ratio"], np.array([3.5, 3.2, 3.1, 3.15]) / 4.0, rtol=1e-6)
    # (3.5 -> 3.2)/4 over 0.1 of the budget = 0.75 per budget fraction
    np.testing.assert_allclose(f["gain_rate"][1], 0.75, rtol=1e-5)
    assert f["gain_rate"][3] < 0 and f["since_best"][3] == 1 / 20 and f["best_gap"][3] > 0
    np.testing.assert_allclose(f["log_noise_scale"][0], np.log(80 / 8), rtol=1e-6)
    assert f["strategy_lora"][0] == 1 and f["strategy_gc"][0] == 1 and f["strategy_full"][0] == 0
    assert f["mem_frac"][0] == 0.5 and f["lam"][0] == np.float32(0.3)


def test_non_finite_inputs_never_leak():
    t = SignalTracker()
    t.reset(3.0)
    obs = t.observe(reading(eval_loss=float("nan"), grad_norm=float("inf"), grad_noise_scale=float("nan")))
    assert np.isfinite(obs).all() and (obs <= HIGH).all()


ENVIRONMENT_DOC = Path(__file__).resolve().parents[1] / "docs" / "environment.md"
"""Where the observation features table lives (it moved out of the README with issue 19's short README)."""


def readme_features() -> list[tuple[int, str, str, float, float]]:
    """(#, name, formula, low, high) of each row of docs/environment.md's "Observation features" table."""
    text = ENVIRONMENT_DOC.read_text(encoding="utf-8")
    section = text.split("\n## Observation features", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| # ")]
    # the formula may itself hold '|' (|G|²): anchor on the first two and the last two cells
    pattern = re.compile(r"^\| (\d+) \| `(\w+)` \| (.*) \| \[(-?[\d.]+), (-?[\d.]+)\] \|$")
    parsed = []
    for line in rows:
        m = pattern.match(line)
        assert m, (
            f"docs/environment.md feature row not in the form '| # | `name` | formula | [low, high] |': {line}"
        )
        parsed.append((int(m[1]), m[2], m[3], float(m[4]), float(m[5])))
    return parsed


def test_readme_table_is_the_observation_spec():
    """docs/environment.md documents exactly the features the code computes: names, order, formulas and ranges."""
    rows = readme_features()
    assert [r[0] for r in rows] == list(range(len(rows)))
    assert [r[1] for r in rows] == list(FEATURE_NAMES)
    assert [r[2] for r in rows] == [f.formula for f in FEATURES]
    np.testing.assert_array_equal(np.array([r[3] for r in rows], dtype=np.float32), LOW)
    np.testing.assert_array_equal(np.array([r[4] for r in rows], dtype=np.float32), HIGH)
    assert markdown_table() in ENVIRONMENT_DOC.read_text(encoding="utf-8")
    assert len(spec_hash()) == 16  # what saved artifacts carry
