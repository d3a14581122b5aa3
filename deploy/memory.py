"""The memory cap a ``GovernorCallback`` enforces: the env's rules, for a Trainer run.

``FineTuneEnv`` (on CPU, where memory is virtual) knows each strategy's peak, measured once by
``efficiency.memstats`` (``envs.probe.strategy_peaks``: one real step per strategy), and a cap that
follows the instance's schedule (``Instance.cap_at``). Its rules, which ``MemoryCap`` applies with the
same functions (``efficiency/caps.py``, the one place they are written):

- the observation's ``mem_frac`` is the peak of the strategy the last interval ran under (at the
  first decision: the start strategy's) over the cap in force;
- the cap in force starts at ``cap_mb`` and, at the end of every decision interval but the first
  decision, becomes ``cap_at(budget fraction used)``, *before* the observation is built and the
  action chosen (``FineTuneEnv.step``: ``run.set_cap(instance.cap_at(frac))``); the next interval
  runs under it;
- a switch to a strategy whose peak exceeds the cap in force is masked (``action_masks``);
- an interval whose strategy's peak exceeds the cap it ran under is an OOM: the episode ends.

A strategy with no measured peak counts as not fitting under a cap (masked), never as fitting.
"""

from __future__ import annotations

import math
from typing import Any

from govgym.deploy.arguments import is_number
from govgym.efficiency import caps
from govgym.efficiency.strategy import Strategy
from govgym.errors import ConfigError

WHO = "GovernorCallback"


def _number(x: Any) -> bool:
    return is_number(x) and math.isfinite(x)  # numpy scalars too, never a bool


def check_cap_schedule(value: Any) -> list[list[float]]:
    """``cap_schedule`` as ``[[at, cap_mb], ...]`` (JSON-able), or a ``ConfigError`` naming the bad entry.

    Accepts (budget fraction, cap MiB) pairs, ``{"at": ..., "cap_mb": ...}`` dicts (an instance
    YAML's form) or ``CapChange`` objects; ``at`` in [0, 1], ``cap_mb`` >= 0 (0 = no cap from there on).
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ConfigError(
            f"{WHO}: cap_schedule must be a list of (budget fraction, cap MiB) pairs, e.g. [(0.4, 45.0)]; "
            f"got {value!r} ({type(value).__name__})."
        )
    out = []
    for i, ch in enumerate(value):
        if isinstance(ch, dict) and set(ch) == {"at", "cap_mb"}:
            pair: Any = (ch["at"], ch["cap_mb"])
        elif hasattr(ch, "at") and hasattr(ch, "cap_mb"):
            pair = (ch.at, ch.cap_mb)
        else:
            pair = ch
        if (
            isinstance(pair, (str, bytes, dict))
            or not hasattr(pair, "__len__")
            or len(pair) != 2
            or not all(_number(x) for x in pair)
        ):
            raise ConfigError(
                f"{WHO}: cap_schedule[{i}] must be a (budget fraction, cap MiB) pair of numbers, e.g. (0.4, 45.0) "
                f"for a cap of 45 MiB once 40% of the budget is spent; got {ch!r}."
            )
        at, cap = float(pair[0]), float(pair[1])
        if not 0.0 <= at <= 1.0:
            raise ConfigError(
                f"{WHO}: cap_schedule[{i}] changes the cap at budget fraction {at:g}; a fraction of the budget "
                "spent must lie in [0, 1] (0.4 = once 40% is spent)."
            )
        if cap < 0:
            raise ConfigError(
                f"{WHO}: cap_schedule[{i}] sets the cap to {cap:g} MiB; a cap must be >= 0 MiB (0 = no cap)."
            )
        out.append([at, cap])
    return out


def check_memory_peaks(value: Any) -> dict[str, float] | None:
    """``memory_peaks`` as ``{strategy name: MiB}`` with canonical names, or a ``ConfigError``."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"{WHO}: memory_peaks must be a non-empty dict of strategy name -> measured peak MiB, e.g. "
            f"{{'full': 68.2, 'lora': 41.0}} (envs.probe.strategy_peaks measures them); got {value!r}."
        )
    out: dict[str, float] = {}
    for k, v in value.items():
        try:
            name = Strategy.parse(str(k)).name
        except ConfigError as err:
            raise ConfigError(f"{WHO}: memory_peaks key {k!r}: {err}") from None
        if not (_number(v) and v > 0):
            raise ConfigError(
                f"{WHO}: memory_peaks[{k!r}] must be the strategy's measured peak in MiB, a finite number > 0; "
                f"got {v!r}."
            )
        out[name] = float(v)
    return out


class MemoryCap:
    """The cap in force, its schedule and (virtual mode) the measured peak of each strategy.

    Args:
        cap_mb: the cap at the start, MiB (0 = none).
        schedule: ``[[at, cap_mb], ...]`` from ``check_cap_schedule``.
        peaks: ``{strategy: MiB}`` from ``check_memory_peaks``; None = not virtual (no masks, no OOMs:
            on CUDA the allocator's peak is observed instead).
    """

    def __init__(self, cap_mb: float, schedule: list[list[float]], peaks: dict[str, float] | None) -> None:
        self.cap_mb, self.schedule, self.peaks = float(cap_mb), schedule, peaks
        self.cap = self.cap_mb  # in force for the interval now running

    @property
    def virtual(self) -> bool:
        return self.peaks is not None

    @property
    def capped(self) -> bool:
        """A cap at the start or anywhere in the schedule."""
        return self.cap_mb > 0 or any(c > 0 for _, c in self.schedule)

    def cap_at(self, fraction: float) -> float:
        """The cap in force once ``fraction`` of the budget is spent (``Instance.cap_at``)."""
        return caps.cap_at(self.cap_mb, self.schedule, fraction)

    def advance(self, fraction: float) -> None:
        """End of a decision interval with ``fraction`` of the budget used: the next interval's cap."""
        self.cap = self.cap_at(fraction)

    def end_interval(self, strategy: str, fraction: float) -> str | None:
        """A decision after an interval run under ``strategy``, ``fraction`` of the budget used (not E_0).

        The env's order (``FineTuneEnv.step``): the interval's OOM against the cap it ran under; without
        one, the cap of the next interval becomes ``cap_at(fraction)``. Returns the OOM sentence or None.
        The callback calls it at every decision but the first; ``transfer.oom_intervals`` replays a
        decision log through it, so the live rule and the post-hoc count are one code path.
        """
        oom = self.oom(strategy)
        if oom is None:
            self.advance(fraction)
        return oom

    def peak(self, strategy: str) -> float:
        """The measured peak of ``strategy`` (virtual mode)."""
        assert self.peaks is not None
        if strategy not in self.peaks:
            raise ConfigError(
                f"{WHO}: the run is under strategy {strategy!r}, which has no entry in memory_peaks "
                f"({', '.join(self.peaks)}); measure it too (envs.probe.strategy_peaks) and pass it."
            )
        return self.peaks[strategy]

    def fits(self, strategy: str) -> bool:
        """Whether a switch to ``strategy`` stays under the cap in force (the env's mask)."""
        if self.peaks is None or self.cap <= 0:
            return True
        return strategy in self.peaks and not caps.over_cap(self.peaks[strategy], self.cap)

    def oom(self, strategy: str) -> str | None:
        """The env's OOM sentence if an interval under ``strategy`` exceeded the cap it ran under, else None."""
        if self.peaks is None or self.cap <= 0:
            return None
        peak = self.peak(strategy)
        if not caps.over_cap(peak, self.cap):
            return None
        return f"oom: measured peak {peak:.1f} MiB above the {self.cap:.1f} MiB cap under {strategy} (virtual cap)"

    def check_start(self, strategy: str) -> None:
        """Refuse a run that could only OOM or that has no peak for its start strategy (the env's reset check)."""
        if self.peaks is None:
            return
        self.peak(strategy)
        fix = "Raise it (0 = no cap), or measure and pass a smaller strategy in memory_peaks."
        err = caps.room_error(WHO, self.cap_mb, self.schedule, self.peaks, fix)
        if err:
            raise ConfigError(err)


__all__ = ["MemoryCap", "check_cap_schedule", "check_memory_peaks"]
