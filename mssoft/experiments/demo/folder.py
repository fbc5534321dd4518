"""The demo folder: the names of what a demo writes in it, and preparing it.

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
from mssoft.files.layout import DEMO_REPORT_NAME, DEMO_TABLE_NAME

__all__ = [
    "DATA_DIR",
    "MASKS_DIR",
    "RUNS_DIR",
    "PRED_DIR",
    "EVAL_DIR",
    "FIGURES_DIR",
    "REPORT_NAME",
    "TABLE_NAME",
    "prepare_demo_folder",
    "holding_demo_folder",
]

R = TypeVar("R")

DATA_DIR, MASKS_DIR, RUNS_DIR = "data", "softmasks", "runs"
PRED_DIR, EVAL_DIR, FIGURES_DIR = "predictions", "evaluation", "figures"
REPORT_NAME, TABLE_NAME = DEMO_REPORT_NAME, DEMO_TABLE_NAME
#: What a demo writes in its folder; only these are removed by ``overwrite``.
_ENTRIES = (DATA_DIR, MASKS_DIR, RUNS_DIR, PRED_DIR, EVAL_DIR, FIGURES_DIR, REPORT_NAME, TABLE_NAME)


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
    for name in _ENTRIES:
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
