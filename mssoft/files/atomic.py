"""Atomic writes: a file appears under its final name only when it is complete."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PARTIAL_MARK", "atomic_path", "write_json"]

#: Part of the name of every temporary file of an atomic write: ``.<stem>.<hex>.partial<suffix>``.
PARTIAL_MARK = ".partial"


def _suffix(path: Path) -> str:
    for suffix in (".nii.gz", ".json", ".csv", ".keras", ".npz", ".npy", ".md", ".png"):
        if path.name.endswith(suffix):
            return suffix
    return path.suffix


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the file's extension (nibabel and Keras choose the format by it) and
    starts with a dot. If the block raises, the temporary file is removed and ``path`` is untouched;
    an ``OSError`` about the temporary file, or one that names no file (a full disk's ``write``),
    is raised again naming ``path``.

    Parameters
    ----------
    path : path-like
        The final destination.

    Yields
    ------
    Path
        Where to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = _suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.{uuid.uuid4().hex[:8]}{PARTIAL_MARK}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or Path(exc.filename) == tmp:  # name the real file
            reason = exc.strerror or (str(exc) if exc.errno is None else os.strerror(exc.errno))
            raise OSError(exc.errno, reason, str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON, atomically. NaN is written as ``NaN`` (Python's JSON).

    Parameters
    ----------
    obj : JSON-serialisable object
        Paths are written as strings.
    path : path-like
        Destination file.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
