"""Scorers: exact against autograd, batched, FLOPs reported; selection modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from govgym.efficiency.compute import FlopCache
from govgym.efficiency.config import MemoryConfig
from govgym.efficiency.memory import Strategy, apply_strategy
from govgym.efficiency.pruning import SCORERS, score_examples, select
from tests.conftest import pattern_data, tiny_llama

X = torch.randint(0, 256, (5, 32), generator=torch.Generator().manual_seed(0))
LAB = X.clone()
LAB[0, 20:] = -100  # a padded example: ignored tokens must not count


def per_example(m, i):
    """Reference by autograd, one example at a time: (loss, ‖∂loss/∂lm_head.weight‖_F)."""
    m.zero_grad()
    loss = m(input_ids=X[i : i + 1], labels=LAB[i : i + 1]).loss
    loss.backward()
    return loss.item(), m.lm_head.weight.grad.norm().item()


def test_loss_and_gradnorm_match_autograd():
    m = tiny_llama()  # untied lm_head, so its .grad is the output layer's alone
    ref = [per_example(m, i) for i in range(len(X))]
    loss = score_examples(m, X, LAB, "loss", batch_size=2)  # batches of 2, 2, 1
    gn = score_examples(m, X, LAB, "gradnorm", batch_size=2)
    np.testing.assert_allclose(loss.values, [r[0] for r in ref], rtol=1e-5)
    np.testing.assert_allclose(gn.values, [r[1] for r in ref], rtol=1e-4)
    assert m.training  # mode restored
    assert loss.values.dtype == np.float64 and loss.seconds > 0


def test_el2n_matches_its_definition_and_bounds():
    m = tiny_llama()
    el = score_examples(m, X, LAB, "el2n", batch_size=3)
    assert ((el.values >= 0) & (el.values <= np.sqrt(2))).all()
    with torch.no_grad():
        logits = m(input_ids=X[:1]).logits[0, :-1]
    tgt = LAB[0, 1:]
    ok = tgt != -100
    err = logits.softmax(-1)[ok] - torch.nn.functional.one_hot(tgt[ok], 256)
    assert el.values[0] == pytest.approx(err.norm(dim=-1).mean().item(), rel=1e-5)


def test_flops_per_scorer_and_cache():
    m = tiny_llama()
    cache = FlopCache()
    loss = score_examples(m, X, LAB, "loss", batch_size=2, flop_cache=cache)
    assert cache.measurements == 2  # batch shapes (2, 32) and the partial (1, 32)
    again = score_examples(m, X, LAB, "loss", batch_size=2, flop_cache=cache)
    assert cache.measurements == 2 and again.flops == loss.flops
    np.testing.assert_array_equal(again.values, loss.values)
    el = score_examples(m, X, LAB, "el2n", batch_size=2, flop_cache=cache)
    gn = score_examples(m, X, LAB, "gradnorm", batch_size=2, flop_cache=cache)
    assert el.flops == loss.flops  # softmax and norms are elementwise: the forward is the cost
    # the two Gram matrices per example: 2·T²·V + 2·T²·d over T = 31 predicting positions
    assert gn.flops - loss.flops == len(X) * 2 * 31 * 31 * (256 + 32)


@pytest.mark.parametrize("strategy", ["lora+gc", "qlora+gc", "int8"])
def test_scorers_work_on_every_strategy(strategy):
    lora = apply_strategy(tiny_llama(), None, Strategy.parse("lora"), MemoryConfig(), 0)
    m = apply_strategy(tiny_llama(), None, Strategy.parse(strategy), MemoryConfig(), 0)
    for s in SCORERS:
        sc = score_examples(m, X, LAB, s)
        assert sc.values.shape == (5,) and np.isfinite(sc.values).all()
        # quantized bases run the same matmuls as LoRA's (bnb ops counted, eval-mode int8 included)
        assert sc.flops == score_examples(lora, X, LAB, s).flops > 0
    assert m.training


def test_noisy_examples_score_higher_after_learning_the_patterns():
    ds = pattern_data(64, 32, 256, noise_rate=0.25, seed=0)  # 13 rows of uniformly random tokens
    ids, noisy = torch.tensor(ds["input_ids"]), np.array(ds["noise"]) == 1
    m = tiny_llama()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):  # 40 steps of 16 (noise included): the progressions are learned, noise is not
        b = torch.randint(0, 64, (16,), generator=g)
        m(input_ids=ids[b], labels=ids[b]).loss.backward()
        opt.step()
        opt.zero_grad()
    for s in SCORERS:
        v = score_examples(m, ids, ids, s).values
        assert v[noisy].mean() > v[~noisy].mean(), s
        keep = select(v, noisy.mean(), "hardest")
        assert noisy[keep].sum() <= 3, s  # dropping the hardest 20% drops most of the 13 noisy rows


def test_select_modes():
    v = np.array([0.5, 3.0, 1.0, 3.0, 0.1])
    assert select(v, 0.4, "hardest").tolist() == [0, 2, 4]
    assert select(v, 0.4, "easiest").tolist() == [1, 2, 3]
    assert select(v, 0.2, "hardest").tolist() == [0, 1, 2, 4]  # tie 3.0 at 1 and 3: the later one drops
    assert select(v, 0.0, "easiest").tolist() == [0, 1, 2, 3, 4]
    r1 = select(v, 0.4, "random", np.random.default_rng(1))
    assert len(r1) == 3 and r1.tolist() == select(v, 0.4, "random", np.random.default_rng(1)).tolist()
    assert list(r1) == sorted(r1)
    with pytest.raises(ValueError, match="mode"):
        select(v, 0.4, "hardst")
    with pytest.raises(ValueError, match="fraction_drop"):
        select(v, 1.0, "random")


def test_bad_inputs_are_errors():
    m = tiny_llama()
    with pytest.raises(ValueError, match="scorer"):
        score_examples(m, X, LAB, "forgetting")
    with pytest.raises(ValueError, match="same shape"):
        score_examples(m, X, LAB[:, :-1], "loss")


# ---------------------------------------------------------------------------- recorded losses, drop counts, config
def test_per_example_losses_are_each_examples_own_model_loss():
    from govgym.efficiency.pruning import per_example_losses

    m = tiny_llama()
    with torch.no_grad():
        logits = m(input_ids=X).logits
        want = [m(input_ids=X[i : i + 1], labels=LAB[i : i + 1]).loss.item() for i in range(len(X))]
    for chunk in (0, 1, 2):  # all rows at once, one at a time (the run), two at a time
        got = per_example_losses(logits, LAB, causal=True, chunk=chunk)
        assert got.dtype == torch.float32 and not got.requires_grad
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)  # example 0's padded tokens do not count
    np.testing.assert_allclose(score_examples(m, X, LAB, "loss").values, want, rtol=1e-5)
    none = LAB.clone()
    none[1] = -100
    assert torch.isnan(per_example_losses(logits, none)[1])  # no label tokens: nan, i.e. "not recorded"


def test_fill_unseen_and_drop_positions():
    from govgym.efficiency.pruning import drop_positions, fill_unseen

    vals, seen = fill_unseen(np.array([1.0, np.nan, 3.0, np.nan], dtype=np.float32))
    assert vals.tolist() == [1.0, 2.0, 3.0, 2.0] and seen.tolist() == [True, False, True, False]
    assert fill_unseen(np.full(3, np.nan))[0].tolist() == [0.0, 0.0, 0.0]
    v = np.array([0.5, 3.0, 1.0, 3.0, 0.1])
    assert drop_positions(v, 2, "hardest").tolist() == [1, 3]
    assert drop_positions(v, 2, "easiest").tolist() == [0, 4]
    assert drop_positions(v, 0, "hardest").tolist() == []
    for n_drop in range(5):  # select() is drop_positions' complement
        keep = select(v, n_drop / 5, "hardest")
        assert sorted(keep.tolist() + drop_positions(v, n_drop, "hardest").tolist()) == list(range(5))
    with pytest.raises(ValueError, match="n_drop"):
        drop_positions(v, 6, "hardest")


@pytest.mark.parametrize(
    "bad",
    [
        {"reprune_sample": -1},
        {"reprune_sample": 2.5},
        {"reprune_sample": True},
        {"reprune_sample": "400"},
        {"reprune_scorer": "recorded", "reprune_sample": 100},
    ],
)
def test_bad_reprune_sample_is_a_config_error_naming_it(bad):
    from govgym.envs.instances import EnvConfig
    from govgym.typed import ConfigError, from_dict

    with pytest.raises(ConfigError, match="env.reprune_sample"):
        EnvConfig(**bad)
    if bad["reprune_sample"] != "400":  # from_dict reads the string "400" as the number, as YAML would
        with pytest.raises(ConfigError, match="reprune_sample"):
            from_dict(EnvConfig, bad)  # as a YAML instance set's env: block is read


def test_reprune_scorer_accepts_recorded_and_samples():
    from govgym.envs.instances import EnvConfig
    from govgym.typed import ConfigError

    assert EnvConfig(reprune_scorer="recorded").reprune_sample == 0
    assert EnvConfig(reprune_scorer="loss", reprune_sample=400).reprune_sample == 400
    with pytest.raises(ConfigError, match="recorded"):
        EnvConfig(reprune_scorer="recordd")


def test_losses_read_from_the_loss_graph_equal_a_recomputation():
    from govgym.efficiency.pruning import per_example_losses, per_example_losses_from_loss

    m = tiny_llama()
    out = m(input_ids=X, labels=LAB)  # the training forward: a graph, log-probabilities saved
    got = per_example_losses_from_loss(out.loss, LAB)
    np.testing.assert_allclose(got.numpy(), per_example_losses(out.logits, LAB).numpy(), rtol=1e-6)
    with torch.no_grad():
        assert per_example_losses_from_loss(m(input_ids=X, labels=LAB).loss, LAB) is None  # no graph
    assert per_example_losses_from_loss(out.logits.sum(), LAB) is None  # not a cross-entropy
