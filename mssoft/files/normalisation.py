"""A run's intensity normalisation on disk: the landmarks file and reading it back.

``mssoft fit`` records the method in the run's ``config.json`` (``config.normalise``: method,
parameters and, for ``histogram``, the landmarks file name
:data:`~mssoft.files.layout.LANDMARKS_NAME`) and writes the learned landmarks next to the
model. :func:`run_normaliser` rebuilds the same :class:`~mssoft.arrays.intensity.Normaliser` for
``calibrate``, ``predict`` and any other reader of the run; a run without the entry (older runs)
used ``zscore``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.intensity import LANDMARK_PERCENTILES, STANDARD_SCALE, Normaliser
from mssoft.errors import DataError
from mssoft.files.atomic import write_json
from mssoft.files.layout import CONFIG_NAME, LANDMARKS_NAME
from mssoft.files.run_record import LEGACY_DEFAULTS

__all__ = ["normalise_record", "write_landmarks", "read_landmarks", "run_normaliser"]


def normalise_record(normaliser: Normaliser) -> dict[str, Any]:
    """The ``normalise`` entry of a run's config: method, parameters, landmarks file name."""
    return {
        **normaliser.describe(),
        "landmarks_file": LANDMARKS_NAME if normaliser.method == "histogram" else None,
    }


def write_landmarks(run: str | Path, modalities: Sequence[str], landmarks: np.ndarray) -> Path:
    """Write ``RUN/intensity_landmarks.json`` (atomically).

    Parameters
    ----------
    run : path-like
        Run folder.
    modalities : sequence of str
        Channel order of ``landmarks``.
    landmarks : ndarray of shape (C, L)
        Standard landmarks of each channel.

    Returns
    -------
    Path
    """
    path = Path(run) / LANDMARKS_NAME
    write_json(
        {
            "method": "nyul-udupa histogram standardisation",
            "percentiles": list(LANDMARK_PERCENTILES),
            "standard_scale": list(STANDARD_SCALE),
            "landmarks": {
                m: [float(v) for v in row] for m, row in zip(modalities, landmarks, strict=True)
            },
        },
        path,
    )
    return path


def read_landmarks(path: str | Path, modalities: Sequence[str]) -> np.ndarray:
    """The standard landmarks in ``path`` for ``modalities`` (channel order), shape (C, L).

    Raises
    ------
    DataError
        The file is missing, unreadable, or lacks a channel or the run's percentiles.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        table = record["landmarks"]
        if [float(p) for p in record["percentiles"]] != list(LANDMARK_PERCENTILES):
            raise DataError(f"{path}: landmarks at other percentiles than {LANDMARK_PERCENTILES}")
        rows = np.asarray([table[m] for m in modalities], dtype=np.float64)
        Normaliser("histogram", rows)  # validates shape and order
    except OSError as exc:
        raise DataError(f"{path}: cannot read the histogram landmarks ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a histogram landmarks file ({exc})") from None
    return rows


def run_normaliser(
    run: str | Path, config: Mapping[str, Any], modalities: Sequence[str]
) -> Normaliser:
    """The normalisation a run was trained with.

    Parameters
    ----------
    run : path-like
        Run folder.
    config : mapping
        The ``config`` entry of its ``config.json``.
    modalities : sequence of str
        The model's channels, in order.

    Raises
    ------
    DataError
        An unknown method, or a missing or bad landmarks file.
    """
    entry = config.get("normalise") or LEGACY_DEFAULTS["normalise"]
    method = entry.get("method") if isinstance(entry, Mapping) else entry
    if method == "histogram":
        name = entry.get("landmarks_file") or LANDMARKS_NAME
        return Normaliser("histogram", read_landmarks(Path(run) / name, modalities))
    try:
        return Normaliser(str(method))
    except ValueError as exc:
        raise DataError(f"{Path(run) / CONFIG_NAME}: {exc}") from None
