"""FineTuneRun on a tiny real Llama: determinism, snapshot/restore, switching, repruning, failures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from govgym.efficiency.run import FineTuneRun, RunError, gradient_noise_scale
from tests.conftest import tiny_cfg, tiny_workload


def test_same_seed_gives_identical_results(make_run):
    a, b = make_run(), make_run()
    sa, sb = a.advance(6), b.advance(6)
    assert sa.losses == sb.losses
    assert a.evaluate() == b.evaluate()


def test_advance_reports_real_statistics(make_run):
    run = make_run()
    e0 = run.evaluate()
    s = run.advance(10)
    assert s.steps == 10 and run.step == 10 and len(s.losses) == 10 and s.finite
    assert s.flops > 0 and run.flops["train"] == s.flops and run.flops["eval"] > 0
    assert s.grad_norm > 0 and s.lr > 0
    assert s.memory_mb["params"] > 0 and s.memory_mb["activations"] > 0 and s.memory_mb["optimizer"] > 0
    run.advance(20)
    assert run.evaluate() < e0  # it really learns


def test_snapshot_restore_branches_bit_identically(make_run, tmp_path):
    run = make_run()
    run.advance(4)
    snap = run.snapshot()
    path = run.save(tmp_path / "snap.pt")
    first = run.advance(5).losses
    run.switch_strategy("lora+gc")  # a branch that changes structure
    run.advance(3)
    run.restore(snap)
    assert run.strategy.name == "full" and run.step == 4
    assert run.advance(5).losses == first
    other = FineTuneRun(tiny_cfg(), workload=tiny_workload())
    other.load(path)
    assert other.advance(5).losses == first


def test_switch_full_lora_full_is_continuous(make_run):
    run = make_run()
    run.advance(10)
    e = run.evaluate()
    run.switch_strategy("lora")
    assert run.strategy.adapters
    assert abs(run.evaluate() - e) < 1e-5  # B = 0: same function
    run.advance(10)
    e = run.evaluate()
    run.switch_strategy("full")
    assert abs(run.evaluate() - e) < 1e-4  # merge is exact in fp32
    assert run.n_params["trainable"] == run.n_params["total"]


def test_switch_to_qlora_and_int8_jump_only_by_quantization_error(make_run):
    for target in ("qlora", "int8"):
        run = make_run()
        run.advance(10)
        e = run.evaluate()
        run.switch_strategy(target)
        after = run.evaluate()
        assert abs(after - e) / e < 0.02, (target, e, after)
        s = run.advance(5)
        assert s.finite and s.strategy == target
        run.switch_strategy("lora+adam8")  # adapter -> adapter goes through full, still continuous
        assert abs(run.evaluate() - run.evaluate()) == 0
        assert run.advance(3).finite


def test_gc_toggle_carries_optimizer_state(make_run):
    run = make_run()
    run.advance(3)
    before = {id(p): run.optimizer.state[p]["exp_avg"].clone() for p in run.trainable}
    run.switch_strategy("full+gc")
    assert all(torch.equal(run.optimizer.state[p]["exp_avg"], before[id(p)]) for p in run.trainable)
    assert run.scheduler.last_epoch == 3


def test_reprune_on_live_run(make_run):
    run = make_run(noise_rate=0.25)
    run.advance(30)
    r = run.reprune("loss", 0.25, "hardest")
    assert r["dropped"] == 32 and len(run.sampler.kept) == 96 and r["flops"] > 0
    assert run.flops["score"] == r["flops"]
    assert r["noise_removed"] > 0.5  # random rows are hard for a model that learned the patterns
    run.advance(3)
    with pytest.raises(RunError, match="fewer than one batch"):
        run.reprune("loss", 0.99, "hardest")


def test_divergence_is_reported_not_raised():
    run = FineTuneRun(tiny_cfg(optim__lr=1e6, optim__max_grad_norm=0), workload=tiny_workload())
    s = run.advance(4)
    assert not s.finite or not math.isfinite(run.evaluate())


def test_batch_larger_than_data_is_a_clear_error():
    with pytest.raises(RunError, match="optim.batch_size"):
        FineTuneRun(tiny_cfg(optim__batch_size=512), workload=tiny_workload())


def test_gradient_noise_scale_estimator_recovers_known_value():
    rng = np.random.default_rng(0)
    dim, b, n = 200, 8, 64
    G = rng.normal(size=dim) * 0.1
    sigma2 = 1.0  # per-example covariance = I -> tr(Σ) = dim; B_simple = dim / |G|²
    grads = G + rng.normal(size=(n, dim)) * math.sqrt(sigma2 / b)  # batch-mean gradients
    est = gradient_noise_scale(float((grads**2).sum(1).mean()), float((grads.mean(0) ** 2).sum()), b, n * b)
    true = dim * sigma2 / float((G**2).sum())
    assert 0.6 * true < est < 1.6 * true


# ---------------------------------------------------------------------------- recorded per-example losses
def _plain_loop_from(run, n):
    """An explicit loop on a copy of the run's state: HF's ``.loss`` only, nothing recorded (the v0 path)."""
    import copy

    from transformers import get_scheduler

    from govgym.efficiency.memory import trainable_parameters

    o = run.cfg.optim
    model = copy.deepcopy(run.model)
    params = trainable_parameters(model)  # the run's order, which its optimizer state is indexed by
    opt = torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    sched = get_scheduler(o.schedule, opt, o.warmup_steps, o.total_steps)  # sets the group LRs: load after
    opt.load_state_dict(copy.deepcopy(run.optimizer.state_dict()))
    sched.load_state_dict(run.scheduler.state_dict())
    order = copy.deepcopy(run.sampler)
    losses = []
    for _ in range(n):
        idx = order.next_batch(o.batch_size)
        loss = model(input_ids=run.train_ids[idx], labels=run.train_labels[idx]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm or float("inf"))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return torch.stack(losses).tolist(), model


def test_recording_leaves_training_bit_identical(make_run):
    run = make_run(noise_rate=0.25)
    run.advance(1)  # the FLOP-counted first step rounds sdpa differently: compare from here
    plain_losses, plain_model = _plain_loop_from(run, 6)
    assert run.advance(6).losses == plain_losses
    got, want = run.model.state_dict(), plain_model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert torch.isfinite(run.example_loss).sum() == 7 * 8  # and it did record


def test_recorded_losses_are_the_per_example_losses_at_that_step(make_run):
    import copy

    run = make_run(noise_rate=0.25)
    run.advance(3)
    before = copy.deepcopy(run.model)  # the weights the 4th step's forward pass uses
    idx = copy.deepcopy(run.sampler).next_batch(8)
    run.advance(1)
    with torch.no_grad():
        want = [
            before(input_ids=run.train_ids[i : i + 1], labels=run.train_labels[i : i + 1]).loss.item()
            for i in idx
        ]
    np.testing.assert_allclose(run.example_loss[idx].numpy(), want, rtol=1e-5)
    assert (run.last_seen[idx] == 3).all()  # recorded with the weights after 3 updates
    seen = run.last_seen.numpy()
    assert sorted(np.bincount(seen[seen >= 0]).tolist()) == [8, 8, 8, 8] and (seen >= 0).sum() == 32
    assert torch.isnan(run.example_loss[torch.from_numpy(seen < 0)]).all()  # never drawn: nan / -1


def test_recorded_reprune_costs_nothing_and_drops_the_highest_recorded_losses(make_run):
    run = make_run(noise_rate=0.25)
    run.advance(20)  # 160 draws over 128 examples: every example recorded, 16 of them twice
    vals = run.example_loss.numpy().copy()
    assert np.isfinite(vals).all()
    want = set(np.argsort(vals)[-32:].tolist())
    kept = run.sampler.kept.copy()
    r = run.reprune("recorded", 0.25, "hardest")
    assert r["flops"] == 0 and run.flops["score"] == 0 and r["sample"] == 0
    assert set(np.setdiff1d(kept, run.sampler.kept).tolist()) == want
    drop = np.array(sorted(want))
    assert r["stale_steps"] == pytest.approx(float(np.mean(20 - run.last_seen.numpy()[drop])))
    assert r["noise_removed"] >= 0.4  # random: 0.25; random rows are hard once the patterns are learned
    run.advance(2)
    r = run.reprune("recorded", 0.2, "easiest")
    assert r["flops"] == 0 and r["dropped"] == 19


def test_recorded_reprune_ranks_never_drawn_examples_at_the_mean(make_run):
    run = make_run(noise_rate=0.25)
    run.advance(4)  # 32 of 128 drawn
    vals = run.example_loss.numpy().copy()
    seen = np.isfinite(vals)
    above = set(np.flatnonzero(seen & (vals > vals[seen].mean())).tolist())
    below = set(np.flatnonzero(seen & (vals < vals[seen].mean())).tolist())
    r = run.reprune("recorded", 0.25, "hardest")
    dropped = set(np.setdiff1d(np.arange(128), run.sampler.kept).tolist())
    assert above <= dropped and not (below & dropped)  # the rest of the 32 are never-drawn ones
    assert r["dropped_seen"] == len(above) and r["stale_steps"] > 0


def test_sampled_reprune_scores_only_the_sample_and_counts_its_flops(make_run):
    from govgym.efficiency.pruning import score_examples

    run = make_run(noise_rate=0.25)
    run.advance(5)
    snap = run.snapshot()
    flops = {}
    for m in (32, 64):
        run.restore(snap)
        kept = run.sampler.kept.copy()
        # the documented draw: m kept positions from default_rng([seed, step, 1])
        pick = np.sort(np.random.default_rng([run.cfg.seed, run.step, 1]).choice(len(kept), m, replace=False))
        exact = score_examples(
            run.model, run.train_ids[kept[pick]], run.train_labels[kept[pick]], "loss"
        ).values
        r = run.reprune("loss", 0.1, "hardest", sample=m)
        dropped = np.setdiff1d(kept, run.sampler.kept)
        assert r["sample"] == m and r["dropped"] == 13 and run.flops["score"] == r["flops"] > 0
        assert set(dropped) == set(kept[pick][np.argsort(exact)[-13:]])  # the sample's 13 hardest
        flops[m] = r["flops"]
    assert flops[64] == 2 * flops[32]  # FLOPs proportional to the sample, not the kept set
    run.restore(snap)
    full = run.reprune("loss", 0.1, "hardest")
    assert full["flops"] == 4 * flops[32] and full["sample"] == 0  # 128 kept
    run.restore(snap)
    assert run.reprune("loss", 0.25, "hardest", sample=4)["sample"] == 32  # raised to the 32 dropped


def test_bad_reprune_arguments_are_run_errors(make_run):
    run = make_run()
    run.advance(2)
    for bad in (-1, 2.5, True):
        with pytest.raises(RunError, match="sample"):
            run.reprune("loss", 0.1, sample=bad)
    with pytest.raises(RunError, match="recorded"):
        run.reprune("recorded", 0.1, sample=10)
    with pytest.raises(RunError, match="allowed"):
        run.reprune("forgetting", 0.1)


def test_snapshot_and_file_carry_the_recorded_losses(make_run, tmp_path):
    run = make_run(noise_rate=0.25)
    run.advance(4)
    snap = run.snapshot()
    path = run.save(tmp_path / "snap.pt")
    at_snap = run.example_loss.clone()
    first = run.advance(5).losses
    after = (run.example_loss.clone(), run.last_seen.clone())
    r_first = run.reprune("recorded", 0.2)
    run.restore(snap)
    torch.testing.assert_close(run.example_loss, at_snap, rtol=0, atol=0, equal_nan=True)
    assert run.advance(5).losses == first
    torch.testing.assert_close(run.example_loss, after[0], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(run.last_seen, after[1])
    assert run.reprune("recorded", 0.2)["noise_removed"] == r_first["noise_removed"]
    other = FineTuneRun(tiny_cfg(), workload=tiny_workload(0.25))
    other.load(path)
    torch.testing.assert_close(other.example_loss, at_snap, rtol=0, atol=0, equal_nan=True)
    assert other.advance(5).losses == first
    assert torch.equal(other.last_seen, after[1])
    assert other.reprune("recorded", 0.2)["dropped"] == r_first["dropped"]
    assert np.array_equal(other.sampler.kept, run.sampler.kept)


def test_version_2_snapshots_without_recorded_losses_still_load(make_run, tmp_path, monkeypatch):
    run = make_run()
    run.advance(3)
    full_state = run.training_state
    monkeypatch.setattr(
        run,
        "training_state",
        lambda: {k: v for k, v in full_state().items() if k not in ("example_loss", "last_seen")},
    )
    path = run.save(tmp_path / "old.pt")  # what today's v2 file holds: no recorded arrays
    first = run.advance(2).losses
    other = FineTuneRun(tiny_cfg(), workload=tiny_workload())
    other.advance(1)
    other.load(path)
    assert torch.isnan(other.example_loss).all() and (other.last_seen == -1).all()
    assert other.advance(2).losses == first
