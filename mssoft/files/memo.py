"""Keeping what was read from files in memory while one process runs many models on them.

A cross-validation sweep (:mod:`mssoft.experiments.cv.run`) fits, calibrates and predicts many
models on the same scans: every repeat and grid point of a fold reads the fold's scans again, and
calibration reads the training scans that fitting has just read. Inside
:func:`keep_in_memory`, :func:`mssoft.files.scans.load_scan` and the training-slice loader
(:func:`mssoft.workflows.training_data.load_slices`) keep their results in one process-wide
:class:`Memo` and return them again for the same files (same paths, sizes and modification
times) and settings, instead of reading them again.

The memo is bounded in bytes and forgets the least recently used entries first; the arrays it
holds are made read-only, so a caller that would change a shared array fails at once instead of
changing another model's data. Outside :func:`keep_in_memory` nothing is kept (the commands run
as before).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = ["Memo", "keep_in_memory", "active_memo", "memo_key", "file_stamps", "freeze"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_active: Memo | None = None
_active_lock = threading.Lock()


def file_stamps(files: Sequence[str | Path]) -> list[list[Any]]:
    """``[resolved path, size, mtime_ns]`` of each file (size and mtime None if it is missing):
    what a result read from them depends on."""
    stamps: list[list[Any]] = []
    for path in files:
        try:
            stat = Path(path).stat()
        except OSError:
            stamps.append([str(Path(path).resolve()), None, None])
            continue
        stamps.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return stamps


def memo_key(kind: str, **parts: Any) -> str:
    """A memo key: ``kind`` and JSON-ready ``parts`` (file stamps, settings) as one string."""
    return json.dumps({"kind": kind, **parts}, sort_keys=True, default=str)


def freeze(value: Any) -> int:
    """Make every ndarray in ``value`` (an array, tuple, list or dataclass) read-only.

    Returns
    -------
    int
        Bytes of the arrays found.
    """
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(freeze(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(freeze(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0


class Memo:
    """A thread-safe least-recently-used store of results, bounded in bytes.

    Parameters
    ----------
    max_bytes : int
        Arrays held at most (an entry larger than this is not kept).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: str, make: Callable[[], T]) -> T:
        """The stored result of ``key``, else ``make()`` (frozen and stored when it fits)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]  # type: ignore[no-any-return]
            self.misses += 1
        value = make()  # outside the lock: a read-ahead thread may read another scan meanwhile
        size = freeze(value)
        with self._lock:
            if size > self.max_bytes or key in self._entries:
                return value
            self._entries[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped
        return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


def active_memo() -> Memo | None:
    """The memo of the enclosing :func:`keep_in_memory` block (any thread), else None."""
    return _active


@contextlib.contextmanager
def keep_in_memory(max_bytes: int) -> Iterator[Memo]:
    """Keep scans and training slices read inside the block in memory (module docstring).

    Parameters
    ----------
    max_bytes : int
        Bound of the memo (e.g. a quarter of the available memory).

    Yields
    ------
    Memo
        Emptied when the block ends. Blocks do not nest: an inner block uses the outer memo.
    """
    global _active
    with _active_lock:
        outer = _active
        memo = outer if outer is not None else Memo(max_bytes)
        _active = memo
    try:
        yield memo
    finally:
        if outer is None:
            with _active_lock:
                _active = None
            logger.debug(
                "memo: %d hits, %d misses, %.0f MB at the end",
                memo.hits,
                memo.misses,
                memo.nbytes / 2**20,
            )
            memo.clear()
