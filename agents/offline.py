"""``govgym offline``: a stop-only governor learned by offline RL (discrete CQL) on the Minari dataset.

No env is stepped, real or modelled: the governor is learned from the transitions that
``govgym dataset export`` wrote (``minari.load_dataset``, arrow storage, offline), so it cannot exploit a
model's errors, only the data's coverage — which CQL's conservative term guards (Kumar et al. 2020:
Q-values of actions the data never took at a state are pushed down, so the greedy policy stays on
the behaviour's support; on FineTune-v2 the weight that validates best is 0, see ``OfflineConfig.alpha``;
the dataset side is ``agents/offline_data.py``). torchrl supplies the loss (``DiscreteCQLLoss``: TD error + the CQL term,
target network by ``SoftUpdate``) and the replay buffer; the Q-network is SB3's ``DQNPolicy`` so the
agent folder is the one every other agent has (``policy.safetensors``, ``obs_norm.json``,
``agent.json`` with ``algo: cql``) and evaluate / export / deploy load it unchanged.

**Stop-only.** Only the transitions whose action is ``continue`` or ``stop`` are learned from (the
lever transitions are left out, the states after them kept), the bootstrap target maxes over those two,
and the agent acts among them (``allowed_actions``). Why: a lever policy cannot be judged on the held-out
step trees without new real runs, and levers are worth 0.0035 of return on the corpus (docs/results_v2.md).

**Ends.** A run that reached its budget is truncated in the dataset but nothing can follow it (the
budget fraction is in the observation), so every episode end is terminal for the bootstrap.

**Validation.** ``val_fraction`` of the (instance, seed) units are held out of the replay buffer; on
each of their fixed-budget runs the greedy policy's return is exact without stepping anything (continue
follows the fixed run, ``stop`` scores 0): the per-update curve in ``train_log.csv`` beside the fixed
run's and the hindsight-best stop's return. Held-out splits are never read here.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from govgym.agents.offline_data import fixed_paths, is_val, load_dataset, require, stop_returns, transitions
from govgym.efficiency.signals import FEATURE_NAMES, HIGH, LOW, spec_hash
from govgym.envs.actions import CONTINUE, STOP, masked_argmax
from govgym.typed import ConfigError, check_range

CLIP_OBS, EPSILON = 10.0, 1e-8
"""VecNormalize's defaults, written to obs_norm.json and applied by AgentPolicy as for every agent."""


@dataclass
class OfflineConfig:
    """What ``govgym offline`` learns from and how."""

    dataset: str = "runs/dataset"
    """Folder ``govgym dataset export`` wrote (its dataset.json and minari/ folder)."""
    instances: str = ""
    """Instance-set YAML the dataset was collected on, for its action names ('' = the one dataset.json names,
    else the packaged configs/instances_v2.yaml)."""
    alpha: float = 0.0
    """Weight of the CQL term. 0 (plain offline Q-learning) validated best on FineTune-v2's corpus: ``stop``'s
    value is exact (0, terminal) and it is the data's rare action, so the term only delays stops
    (docs/results_v2.md: 0.106 at 0 vs 0.040 at 0.03 and -0.086 at 0.3). Raise it for data whose rare
    actions' values must be extrapolated."""
    gamma: float = 1.0
    """Discount: 1.0, an episode's return is a sum over its intervals (as ``govgym train``)."""
    learning_rate: float = 3e-4
    """Adam learning rate of the Q-network."""
    batch_size: int = 256
    """Transitions per update."""
    updates: int = 20_000
    """Gradient updates."""
    tau: float = 0.005
    """Soft target-network update rate per gradient update."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the Q-network (ReLU)."""
    val_fraction: float = 0.2
    """Share of the dataset's units held out of training to validate on (0 = train on all)."""
    log_every: int = 1000
    """Validate and log every this many updates."""
    seed: int = 0
    """Seed of the network, the sampling and nothing else (the validation units are chosen by hash)."""

    def __post_init__(self) -> None:
        check_range("offline.alpha", self.alpha, 0.0)
        check_range("offline.gamma", self.gamma, 0.0, 1.0)
        check_range("offline.learning_rate", self.learning_rate, 1e-7, 1.0)
        check_range("offline.batch_size", self.batch_size, 1)
        check_range("offline.updates", self.updates, 1)
        check_range("offline.tau", self.tau, 1e-6, 1.0)
        check_range("offline.val_fraction", self.val_fraction, 0.0, 0.9)
        check_range("offline.log_every", self.log_every, 1)
        if not self.net_arch or not all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in self.net_arch
        ):
            raise ConfigError(
                f"offline.net_arch: {self.net_arch!r} must be a list of layer widths, integers in [1, 4096]."
            )


def train_offline(cfg: OfflineConfig, out: Path, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Learn the Q-network, write the agent folder and ``train_log.csv``; returns (agent.json, summary)."""
    require("torchrl")
    import torch
    from gymnasium import spaces
    from stable_baselines3.dqn.policies import DQNPolicy
    from tensordict import TensorDict
    from torchrl.data import Categorical, LazyTensorStorage, TensorDictReplayBuffer
    from torchrl.modules import QValueActor
    from torchrl.objectives import DiscreteCQLLoss, SoftUpdate
    from tqdm.auto import tqdm

    from govgym import __version__
    from govgym.agents.agentfile import write_agent_files
    from govgym.efficiency.signals import normalize_obs

    clock = time.monotonic()
    eps, names, card = load_dataset(cfg)
    allowed = [names.index(CONTINUE), names.index(STOP)]
    train_eps = [e for e in eps if not is_val(e["unit"], cfg.val_fraction)]
    val_paths = fixed_paths([e for e in eps if is_val(e["unit"], cfg.val_fraction)])
    if not train_eps:
        raise ConfigError("offline.val_fraction: every unit fell in validation; lower it.")
    tr = transitions(train_eps, allowed)
    mean, var = tr["obs"].mean(0), tr["obs"].var(0)

    def norm(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(normalize_obs(x, mean, var, CLIP_OBS, EPSILON), dtype=torch.float32)

    torch.manual_seed(cfg.seed)
    n, n_act = len(tr["action"]), len(names)
    mask = torch.zeros(n_act, dtype=torch.bool)
    mask[allowed] = True
    policy = DQNPolicy(
        spaces.Box(LOW, HIGH, dtype=np.float32),
        spaces.Discrete(n_act),
        lambda _: cfg.learning_rate,
        net_arch=list(cfg.net_arch),
    )
    spec = Categorical(n_act)
    actor = QValueActor(policy.q_net, in_keys=["observation"], spec=spec, action_mask_key="action_mask")
    loss = DiscreteCQLLoss(actor, action_space=spec, delay_value=True)
    loss.make_value_estimator(gamma=cfg.gamma)
    updater = SoftUpdate(loss, tau=cfg.tau)
    data = TensorDict(
        {
            "observation": norm(tr["obs"]),
            "action": torch.as_tensor(tr["action"]),
            "action_mask": mask.expand(n, n_act).clone(),
            ("next", "observation"): norm(tr["next_obs"]),
            ("next", "action_mask"): mask.expand(n, n_act).clone(),
            ("next", "reward"): torch.as_tensor(tr["reward"], dtype=torch.float32).unsqueeze(-1),
            ("next", "done"): torch.as_tensor(tr["done"]).unsqueeze(-1),
            ("next", "terminated"): torch.as_tensor(tr["done"]).unsqueeze(-1),
        },
        batch_size=[n],
    )
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(n), batch_size=min(cfg.batch_size, n))
    buffer.extend(data)
    opt = torch.optim.Adam(policy.q_net.parameters(), lr=cfg.learning_rate)
    val_obs = [norm(p["obs"][:-1]) for p in val_paths]
    fixed_ret = float(np.mean([p["rewards"].sum() for p in val_paths])) if val_paths else float("nan")
    best_stop = (
        float(np.mean([max(0.0, np.cumsum(p["rewards"]).max()) for p in val_paths]))
        if val_paths
        else float("nan")
    )

    def validate() -> dict[str, float]:
        if not val_paths:
            return {"val_return": float("nan"), "val_stop_frac": float("nan")}
        rets, fracs = [], []
        with torch.no_grad():
            for p, o in zip(val_paths, val_obs, strict=True):
                stops = masked_argmax(policy.q_net(o).numpy(), mask.numpy()[None]) == allowed[1]
                rets.append(stop_returns(p, stops))
                at = np.flatnonzero(stops)
                fracs.append((int(at[0]) if len(at) else len(p["rewards"])) / len(p["rewards"]))
        return {"val_return": float(np.mean(rets)), "val_stop_frac": float(np.mean(fracs))}

    log: list[dict[str, float]] = []
    bar = tqdm(range(1, cfg.updates + 1), desc="offline CQL", disable=not progress, unit="upd")
    for u in bar:
        out_td = loss(buffer.sample())
        total = out_td["loss_qvalue"] + cfg.alpha * out_td["loss_cql"]
        if not torch.isfinite(total):
            raise ConfigError(
                f"offline: the loss diverged at update {u} ({float(total)}); lower learning_rate or alpha."
            )
        opt.zero_grad()
        total.backward()
        opt.step()
        updater.step()
        if u % cfg.log_every == 0 or u == cfg.updates:
            row = {
                "update": u,
                "loss_td": float(out_td["loss_qvalue"].detach()),
                "loss_cql": float(out_td["loss_cql"].detach()),
                **validate(),
            }
            log.append(row)
            bar.set_postfix(val=f"{row['val_return']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log[0]))
        w.writeheader()
        w.writerows(log)
    summary = {
        "transitions": n,
        "train_units": len({e["unit"] for e in train_eps}),
        "val_units": len(val_paths),
        "val_return": log[-1]["val_return"],
        "val_stop_frac": log[-1]["val_stop_frac"],
        "val_fixed_return": fixed_ret,
        "val_best_stop_return": best_stop,
    }
    meta = {
        "govgym_version": __version__,
        "algo": "cql",
        "obs_spec": spec_hash(),
        "features": list(FEATURE_NAMES),
        "action_names": names,
        "allowed_actions": [CONTINUE, STOP],
        "env_id": "govgym/FineTune-v2",
        "split": "train",
        "dataset": {"id": card.get("dataset_id"), "episodes": len(eps), "code": card.get("code")},
        "wall_seconds": round(time.monotonic() - clock, 1),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "summary": summary,
        "resume_only": "none: an offline agent has no SB3 pickles; `govgym offline` again retrains it",
    }
    obs_norm = {
        "norm_obs": True,
        "mean": [float(x) for x in mean],
        "var": [float(x) for x in var],
        "count": float(n),
        "clip_obs": CLIP_OBS,
        "epsilon": EPSILON,
    }
    path = write_agent_files(out, policy, n_act, obs_norm, {"net_arch": list(cfg.net_arch)}, meta)
    return path, summary


__all__ = [
    "OfflineConfig",
    "fixed_paths",
    "is_val",
    "load_dataset",
    "stop_returns",
    "train_offline",
    "transitions",
]
