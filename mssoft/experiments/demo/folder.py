"""The demo folder: preparing it (the names of what a demo writes are in
:mod:`mssoft.files.layout`).

Shared by :mod:`mssoft.experiments.demo.run` (soft against binary) and
:mod:`mssoft.experiments.demo.cross_site` (one site against another).
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mssoft.files.folders import locked_output_folder, prepare_output_folder
from mssoft.files.layout import DEMO_ENTRIES

__all__ = ["prepare_demo_folder", "holding_demo_folder"]

R = TypeVar("R")


def prepare_demo_folder(out: str | Path, *, overwrite: bool = False) -> Path:
    """Create the demo folder, or empty an earlier demo's outputs from it with ``overwrite``.

    Only the entries a demo writes are removed (``data``, ``runs``, ``report.md``, ...); any other
    file in the folder stays.

    Raises
    ------
    ConfigError
        ``out`` is a file, a non-empty folder that is not a demo output, or an earlier demo
        without ``overwrite``.
    """
    out = prepare_output_folder(out, command="demo", overwrite=overwrite)
    for name in DEMO_ENTRIES:
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()  # a link is removed, never followed
        elif path.is_dir():
            shutil.rmtree(path)
    return out


def holding_demo_folder(run: Callable[..., R]) -> Callable[..., R]:
    """Decorate ``run(config, ...)`` to hold the lock of the demo folder ``config.out`` throughout.

    A second demo on the same folder fails at once; a folder inside the ``data`` keyword
    argument's folder is refused before anything is created, and a folder the run created is
    removed again if the run fails before writing into it.
    """

    @functools.wraps(run)
    def locked(config: Any, *args: Any, **kwargs: Any) -> R:
        with locked_output_folder(config.out, command="demo", data=kwargs.get("data")):
            return run(config, *args, **kwargs)

    return locked
