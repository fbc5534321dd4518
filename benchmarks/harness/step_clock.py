"""Wall time of the steps of a run, measured by wrapping the functions that do them.

:class:`StepClock` replaces named functions (module attributes, wherever they were imported to)
and methods by timed wrappers for the duration of a ``with`` block. Time is *exclusive*: while a
timed function calls another timed one (``fit`` calls ``load_scan``), the inner step's time is
taken off the outer one, so the steps of one thread add up to at most its wall time. Each thread
keeps its own stack: a scan read in a read-ahead thread
(:func:`mssoft.workflows.overlap.read_ahead`) while the model predicts is counted as reading, so with such overlap the steps may add up to more
than the wall time of the whole run (``overlap_seconds`` in :meth:`StepClock.record`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["StepClock", "Target"]

#: ``(module or class, attribute name, step name)``: the function to time and its step.
Target = tuple[Any, str, str]


class StepClock:
    """Exclusive wall seconds per step while the wrapped functions run.

    Parameters
    ----------
    targets : sequence of (owner, attribute, step)
        ``owner`` is a module (the function is also replaced in every ``mssoft`` module that
        imported it by name) or a class (a method).
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.seconds: dict[str, float] = {step: 0.0 for _, _, step in targets}
        self.calls: dict[str, int] = {step: 0 for _, _, step in targets}
        self._local = threading.local()
        self._lock = threading.Lock()

    def _wrap(self, function: Callable[..., Any], step: str) -> Callable[..., Any]:
        clock = self

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = getattr(clock._local, "stack", None)
            if stack is None:
                stack = clock._local.stack = []
            now = time.perf_counter()
            if stack:  # pause the caller's step
                outer, since = stack[-1]
                clock._add(outer, now - since)
            stack.append([step, now])
            try:
                return function(*args, **kwargs)
            finally:
                end = time.perf_counter()
                _, since = stack.pop()
                clock._add(step, end - since, call=True)
                if stack:
                    stack[-1][1] = end  # the caller's step resumes

        timed.__wrapped_by_step_clock__ = True  # type: ignore[attr-defined]
        return timed

    def _add(self, step: str, seconds: float, *, call: bool = False) -> None:
        with self._lock:
            self.seconds[step] += seconds
            if call:
                self.calls[step] += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[StepClock]:
        """Replace the targets by timed wrappers for the block, then restore them."""
        restore: list[tuple[Any, str, Any]] = []
        try:
            for owner, name, step in self.targets:
                original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
                if isinstance(owner, type):
                    wrapped = self._wrap(original, step)
                    restore.append((owner, name, original))
                    setattr(owner, name, wrapped)
                    continue
                wrapped = self._wrap(original, step)
                for module in list(sys.modules.values()):
                    if not getattr(module, "__name__", "").startswith("mssoft"):
                        continue
                    if module.__dict__.get(name) is original:
                        restore.append((module, name, original))
                        setattr(module, name, wrapped)
            yield self
        finally:
            for owner, name, original in reversed(restore):
                setattr(owner, name, original)

    def record(self, wall: float) -> dict[str, Any]:
        """Seconds, calls and share of ``wall`` of every step, plus the rest of the wall time.

        ``other`` is the wall time outside every step (bookkeeping, TensorFlow start-up,
        writing results); ``overlap_seconds`` how much the steps add up to beyond ``wall``
        (work overlapped in read-ahead and write-behind threads).
        """
        counted = sum(self.seconds.values())
        steps = {
            step: {
                "seconds": round(seconds, 3),
                "share": round(seconds / wall, 4) if wall > 0 else float("nan"),
                "calls": self.calls[step],
            }
            for step, seconds in self.seconds.items()
        }
        other = max(wall - counted, 0.0)
        steps["other"] = {
            "seconds": round(other, 3),
            "share": round(other / wall, 4) if wall > 0 else float("nan"),
            "calls": 0,
        }
        return {
            "wall_seconds": round(wall, 3),
            "steps": steps,
            "overlap_seconds": round(max(counted - wall, 0.0), 3),
        }
