"""Timing helpers: repeated calls with wall and CPU time, and the CPU used by other processes."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Timing", "timed", "usable_cores", "load_average", "CpuShare"]


@dataclass(frozen=True)
class Timing:
    """Wall and process CPU seconds of repeated calls.

    Attributes
    ----------
    wall, cpu : list of float
        Seconds of each call.
    """

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        """Median wall seconds."""
        return float(np.median(self.wall))

    def cpu_utilisation(self, cores: int) -> float:
        """Process CPU seconds over wall seconds times cores (1.0: every core busy for us)."""
        total = sum(self.wall)
        return float(sum(self.cpu) / (total * cores)) if total > 0 else math.nan


def timed(fn: Callable[[], Any], repeats: int) -> tuple[Timing, Any]:
    """Call ``fn`` ``repeats`` times; the timings and the last result."""
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(wall, cpu), result


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


class CpuShare:
    """Share of the machine's CPU time that other processes used since the last reading.

    Busy CPU time of the whole machine (``psutil.cpu_times``: everything but idle and I/O wait)
    minus the CPU time of this process and its children (finished or running), over wall time
    times cores. A share near
    0 means the timings had the machine to themselves; 0.5 on 2 cores means another process kept
    one core busy, and the timings of multi-threaded stages are then up to twice too slow.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._cores = usable_cores()
        self._last = self._read()

    def _read(self) -> tuple[float, float, float]:
        cpu = self._psutil.cpu_times()
        busy = sum(cpu) - cpu.idle - getattr(cpu, "iowait", 0.0)
        own = self._process.cpu_times()
        ours = own.user + own.system + own.children_user + own.children_system
        for child in self._process.children(recursive=True):  # running children: also ours
            try:
                times = child.cpu_times()
            except self._psutil.Error:
                continue
            ours += times.user + times.system
        return time.perf_counter(), busy, ours

    def since_last(self) -> float:
        """Others' share of the CPU since the previous call (or since creation), in [0, 1]."""
        now = self._read()
        wall = now[0] - self._last[0]
        others = (now[1] - self._last[1]) - (now[2] - self._last[2])
        self._last = now
        if wall <= 0:
            return math.nan
        return round(min(max(others / (wall * self._cores), 0.0), 1.0), 3)
