"""Every shipped YAML loads and validates (torchtune's test_configs habit)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from govgym.efficiency.config import RunConfig
from govgym.envs.instances import load_instances

SHIPPED = sorted(Path(str(files("govgym.configs"))).glob("*.yaml"))


def test_there_are_shipped_configs():
    assert {p.name for p in SHIPPED} >= {"default.yaml", "instances.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_yaml_validates(path):
    text = path.read_text()
    assert text.startswith("#") and (
        "govgym" in text.split("\n\n")[0] or "gymnasium" in text.split("\n\n")[0]
    )  # header with the run command
    # a world spec (configs/world_v2.yaml): the distribution an instance set is drawn from
    if "tuned_lr:" in text:
        from govgym.envs.world import load_spec

        spec = load_spec(path)
        assert spec.train.count >= 300 and all(getattr(spec, h).count > 0 for h in "abc")
    elif "train:" in text:
        s = load_instances(path)
        assert len(s.train) + len(s.test) >= 24 and len(s.test) >= 8
        for inst in s.train + s.test:
            s.run_config(inst)
        # the set varies every axis an instance fixes
        alli = s.train + s.test
        assert (
            len({i.lam for i in alli}) > 2
            and len({i.budget_tflops or i.budget_epochs for i in alli}) > 2
            and len({i.cap_mb for i in alli}) > 2
        )
        assert len({i.start_strategy for i in alli}) > 1 and any(i.cap_schedule for i in alli)
        # base models (v0) or fine-tuning tasks (v1) differ, and so does the noise
        assert (
            len({(str(i.run.get("model")), s.run_config(i).data.task) for i in alli}) > 1
            and len({i.run["data"]["noise_rate"] for i in alli}) > 2
        )
    elif "heuristics:" in text:
        from govgym.agents.heuristics import make_policy
        from govgym.agents.policies import load_knobs

        knobs = load_knobs(path)
        assert set(knobs) >= {"patience", "marginal_gain", "zeus", "memory_reactive"}
        names = ["continue", "reprune_hardest", "reprune_easiest", "switch:full", "stop"]
        for name, kv in knobs.items():
            make_policy(name, names, **kv)  # every tuned knob is one the heuristic takes, in range
    else:
        RunConfig.from_yaml(path)
