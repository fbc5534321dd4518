"""Overlap file reading and writing with the model's work: one scan read ahead, one written behind.

``predict`` and ``calibrate`` read a scan (gzip decompression, reorientation), run the model on
it, then (``predict``) write two compressed volumes. Decompression, compression and TensorFlow's
kernels release the GIL, so a reading thread and a writing thread overlap with the model:
:func:`read_ahead` loads the next scan while the current one is predicted, and
:class:`WriteBehind` writes the previous scan's outputs while the next one is predicted. At most
one scan is read ahead and one write is pending, so memory holds at most three scans' arrays.
Errors are raised in the calling thread, at the point where the result or the next write is
needed (or when the writer is closed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["read_ahead", "WriteBehind"]

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(items: Iterable[T], load: Callable[[T], R]) -> Iterator[R]:
    """``load(item)`` for each item, in order, the next one loading in a thread meanwhile.

    Parameters
    ----------
    items : iterable
    load : callable
        Called in a worker thread; its exception is raised when its result is due.

    Yields
    ------
    The results of ``load``, in the order of ``items``.
    """
    items = iter(items)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mssoft-read")
    try:
        pending: Future[R] | None = None
        for item in items:
            pending = pool.submit(load, item)
            break
        while pending is not None:
            current = pending
            pending = None
            for item in items:
                pending = pool.submit(load, item)
                break
            yield current.result()
    finally:
        # never wait here: a generator its caller dropped (after an error or Ctrl-C) is closed
        # by the garbage collector, possibly in the pool's own thread, which cannot join itself
        pool.shutdown(wait=False, cancel_futures=True)


class WriteBehind:
    """Run write jobs in a thread, one at a time; a new job waits for the previous one.

    Use as a context manager; leaving the block waits for the last job and raises its error.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mssoft-write")
        self._pending: Future[Any] | None = None

    def submit(self, job: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Wait for the previous job (raising its error), then start ``job(*args, **kwargs)``."""
        self.wait()
        self._pending = self._pool.submit(job, *args, **kwargs)

    def wait(self) -> None:
        """Wait for the pending job, if any; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:  # finish the write, but report the first error
                self._pending.exception()
        finally:
            self._pool.shutdown(wait=True)
