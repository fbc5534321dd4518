"""The one way workflows report progress: a callable that wraps an iteration with a label.

Library code never draws anything itself: the CLI passes a callable that shows a progress bar on
stderr, a script may pass its own, and the default shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["Progress", "no_progress", "labelled"]

T = TypeVar("T")

#: ``progress(items, label)`` yields ``items`` (e.g. through a progress bar labelled ``label``).
Progress = Callable[[Sequence[Any], str], Iterable[Any]]


def no_progress(items: Sequence[T], label: str) -> Iterable[T]:
    """Yield ``items`` unchanged (the default: no progress display)."""
    del label
    return items


def labelled(progress: Progress, label: str) -> Progress:
    """``progress`` with every step labelled ``label`` (e.g. ``"predict soft"``)."""

    def wrapped(items: Sequence[T], _: str) -> Iterable[T]:
        return progress(items, label)

    return wrapped
