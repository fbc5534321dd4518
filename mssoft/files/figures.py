"""Matplotlib figures written as files: the headless pyplot and the one atomic figure writer.

Every figure mssoft writes (the reliability diagram of ``evaluate``, the sweep plot of ``cv``, the
demo's figures) goes through :func:`save_figure`, so a figure file is either complete or absent.
Matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mssoft.files.atomic import atomic_path

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int) -> Path:
    """Write ``fig`` to ``path`` atomically (the format from the file's extension) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The drawn figure; closed afterwards, also when writing fails.
    path : path-like
        Destination, e.g. ``reliability.png``; replaced only once the new file is complete.
    dpi : int
        Resolution in dots per inch.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        pyplot().close(fig)
    return path
