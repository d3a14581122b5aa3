"""Scorers: exact against autograd, batched, FLOPs reported; selection modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from govgym.efficiency.config import MemoryConfig
from govgym.efficiency.memory import Strategy, apply_strategy
from govgym.efficiency.pruning import SCORERS, score_examples, select
from tests.conftest import tiny_llama

X = torch.randint(0, 256, (5, 32), generator=torch.Generator().manual_seed(0))
LAB = X.clone()
LAB[0, 20:] = -100


def per_example(m, i):
    m.zero_grad()
    loss = m(input_ids=X[i : i + 1], labels=LAB[i : i + 1]).loss
    loss.backward()
    return loss.item(), m.lm_head.weight.grad.norm().item()


def test_loss_and_gradnorm_match_autograd():
    m = tiny_llama()
    ref = [per_example(m, i) for i in range(len(X))]
    loss = score_examples(m, X, LAB, "loss", batch_size=2)
    gn = score_examples(m, X, LAB, "gradnorm", batch_size=2)
    np.testing.assert_allclose(loss.values, [r[0] for r in ref], rtol=1e-5)
    np.testing.assert_allclose(gn.values, [r[1] for r in ref], rtol=1e-4)
    assert m.training  # mode restored


@pytest.mark.parametrize("strategy", ["lora+gc", "qlora", "int8"])
def test_scorers_work_on_every_strategy(strategy):
    m = apply_strategy(tiny_llama(), None, Strategy.parse(strategy), MemoryConfig(), 0)
    for s in SCORERS:
        sc = score_examples(m, X, LAB, s)
        assert sc.values.shape == (5,) and np.isfinite(sc.values).all() and sc.flops > 0


def test_el2n_bounds_and_flops_are_per_scorer():
    m = tiny_llama()
    el = score_examples(m, X, LAB, "el2n")
    assert ((el.values >= 0) & (el.values <= np.sqrt(2))).all()
    loss = score_examples(m, X, LAB, "loss")
    gn = score_examples(m, X, LAB, "gradnorm")
    assert gn.flops > loss.flops  # the Gram matrices are extra work, and counted


def test_noise_scores_higher_after_learning_the_patterns(make_run):
    run = make_run(noise_rate=0.25)
    run.advance(40)
    kept = run.sampler.kept
    for s in SCORERS:
        v = score_examples(run.model, run.train_ids[kept], run.train_labels[kept], s).values
        noisy = run.noise[kept] != 0
        assert v[noisy].mean() > v[~noisy].mean(), s


def test_select_modes():
    v = np.array([0.5, 3.0, 1.0, 3.0, 0.1])
    assert select(v, 0.4, "hardest").tolist() == [0, 2, 4]
    assert select(v, 0.4, "easiest").tolist() == [1, 2, 3]
    r1 = select(v, 0.4, "random", np.random.default_rng(1))
    assert len(r1) == 3 and r1.tolist() == select(v, 0.4, "random", np.random.default_rng(1)).tolist()
    with pytest.raises(ValueError, match="mode"):
        select(v, 0.4, "hardst")
