"""Reading a run's ``history.csv`` (one row per epoch), for training, resuming and reports."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["read_history"]


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``history.csv`` (empty list if there is none); ``epoch`` is 1-based."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(handle)
        ]
