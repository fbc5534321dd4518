"""Silencing TensorFlow's C++ start-up lines on the command line (unless ``mssoft -v``).

Importing TensorFlow prints lines from its C++ core straight to file descriptor 2, some before
its logging is even set up ("All log messages before absl::InitializeLog() ...", the oneDNN and
CUDA-driver notices), and its first device query an ``E0000 ... cuInit`` error on machines
without a GPU. ``TF_CPP_MIN_LOG_LEVEL=3`` silences those that come after the import; the others
are hidden by pointing descriptor 2 at ``/dev/null`` while ``tensorflow`` is first imported
(restored afterwards, so Python's own errors and mssoft's logs still show).

The commands import TensorFlow lazily, and only when they need it: :func:`quiet_tensorflow`
installs an import hook that applies the above the moment TensorFlow is first imported, so
``mssoft --help`` and ``mssoft build-masks`` still never load it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = ["quiet_tensorflow", "stderr_silenced"]


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at ``/dev/null`` for the block (C/C++ writes included)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (e.g. a captured stream)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of ``tensorflow`` with descriptor 2 silenced."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with stderr_silenced():
            self._loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and wraps its loader (once)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow(verbose: int) -> None:
    """Silence TensorFlow's C++ start-up lines from now on, unless ``verbose`` (``-v``) > 0.

    Sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the environment sets it) and installs the import hook
    described in the module docstring. Does nothing when TensorFlow is already imported.
    """
    if verbose > 0 or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
