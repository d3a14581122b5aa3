"""The memory cap's rules, once: the cap in force at a budget fraction, an OOM, and a cap with no room.

Every surface that has a memory cap uses these (numpy- and torch-free, so ``govgym.deploy`` may import
them): ``envs.instances.Instance.cap_at``, ``envs.fast_env.Plan.cap_at`` and its OOM, the real env's
masks and reset check (``envs.finetune_env``), ``deploy.memory.MemoryCap`` (the ``GovernorCallback``'s
virtual cap) and the transfer experiment's post-hoc OOM count (``agents.transfer.oom_intervals``).

The rules (``FineTuneEnv.step``):

- **schedule**: the cap starts at ``cap_mb``; a schedule is ``(at, cap_mb)`` changes by budget fraction
  spent; once ``fraction >= at`` the change's cap is in force, the latest ``at`` winning (changes at the
  same ``at`` apply in the order given). A cap of 0 means no cap.
- **OOM**: an interval OOMs when the peak of the strategy it ran under exceeds the cap it ran under
  (a cap > 0); a peak equal to the cap fits.
- **no room**: a cap > 0 below the peak of every strategy a run can reach leaves it nothing to run
  under: the first interval OOMs whatever the governor does, so the real env refuses it at reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def cap_at(cap_mb: float, schedule: Iterable[tuple[float, float]], fraction: float) -> float:
    """The cap in force (MiB, 0 = none) once ``fraction`` of the budget is spent.

    Args:
        cap_mb: the cap at the start.
        schedule: ``(at, cap_mb)`` pairs (any order; sorted by ``at``, ties kept in the order given).
        fraction: budget fraction spent so far.
    """
    cap = float(cap_mb)
    for at, mb in sorted(((float(a), float(c)) for a, c in schedule), key=lambda ch: ch[0]):
        if fraction >= at:
            cap = mb
    return cap


def over_cap(peak_mb: float, cap_mb: float) -> bool:
    """Whether a peak of ``peak_mb`` under a cap of ``cap_mb`` is an OOM (a cap of 0 is no cap)."""
    return cap_mb > 0 and peak_mb > cap_mb


def no_room(cap_mb: float, peaks: Mapping[str, float]) -> bool:
    """Whether a cap > 0 lies below the peak of every strategy in ``peaks`` (a run could only OOM)."""
    return cap_mb > 0 and bool(peaks) and cap_mb < min(peaks.values())


def room_error(
    where: str, cap_mb: float, schedule: Iterable[tuple[float, float]], peaks: Mapping[str, float], fix: str
) -> str | None:
    """The sentence refusing a start cap or schedule entry with no room (``no_room``), or None if all leave room.

    Args:
        where: who is refusing, e.g. ``"instance 't-squeeze'"`` or ``"GovernorCallback"``.
        cap_mb: the cap at the start.
        schedule: ``(at, cap_mb)`` changes; each is checked as the start cap is (a later entry with no room
            makes every episode OOM once it comes into force).
        peaks: measured peak MiB of every strategy the run can reach.
        fix: the last sentence: what to change.
    """
    for name, cap in [
        ("cap_mb", float(cap_mb)),
        *((f"cap_schedule[{i}].cap_mb", float(c)) for i, (_, c) in enumerate(schedule)),
    ]:
        if no_room(cap, peaks):
            return (
                f"{where}: {name}={cap:g} is below the measured peak of every strategy the run can reach "
                f"({peaks_text(peaks)} MiB), so the run would OOM at its first interval under it. {fix}"
            )
    return None


def peaks_text(peaks: Mapping[str, float]) -> str:
    """``peaks`` smallest first, ``"lora 41.0, full 68.2"``: the figures a no-room error quotes."""
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(peaks.items(), key=lambda kv: kv[1]))


__all__ = ["cap_at", "no_room", "over_cap", "peaks_text", "room_error"]
