"""Export folders (``mssoft export``) and what ``predict`` needs from a run or an export folder.

An export folder holds a TensorFlow SavedModel (``1/``) and ``mssoft.json``: the model's input
(modalities in channel order, normalisation, slicing, padding multiple), the calibrated
binarisation, the training voxel size and orientation, the run's own ``config.json`` record and
package versions (written by :mod:`mssoft.workflows.export`). :func:`read_model_folder` reads
either kind of folder into one :class:`~mssoft.files.run_folder.RunInfo`, so ``predict`` treats
them alike. Pure JSON: nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mssoft.errors import DataError
from mssoft.files.layout import EXPORT_INFO_NAME, SAVED_MODEL_DIR
from mssoft.files.run_folder import RunInfo, read_run
from mssoft.files.scans import normalise_modality

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "ZSCORE_BRAIN",
    "is_export_folder",
    "read_export",
    "read_model_folder",
    "input_multiple_of",
    "normalisation_of",
]

#: ``mssoft.json``'s ``format`` and ``format_version``.
EXPORT_FORMAT = "mssoft-export"
EXPORT_FORMAT_VERSION = 1

#: The normalisation of every mssoft model (:func:`mssoft.arrays.intensity.zscore_brain`).
ZSCORE_BRAIN: dict[str, str] = {
    "method": "zscore_brain",
    "description": (
        "per scan and per channel: x -> (x - mean) / std, mean and std over the channel's "
        "non-zero finite voxels of the whole 3D scan (std 1 if it is 0); voxels that are 0 or "
        "not finite become 0"
    ),
}


def normalisation_of(info: RunInfo) -> dict[str, Any]:
    """How the run's model expects its input intensities normalised.

    The run's ``config["normalisation"]`` (a method name or a ``{"method": ...}`` record) when it
    records one, else :data:`ZSCORE_BRAIN`, the only normalisation of runs that record none.
    """
    config = info.record.get("config") if isinstance(info.record.get("config"), dict) else {}
    value = config.get("normalisation")
    if value is None or value == ZSCORE_BRAIN["method"]:
        return dict(ZSCORE_BRAIN)
    return {"method": value} if isinstance(value, str) else dict(value)


def input_multiple_of(info: RunInfo) -> int:
    """What the model's slice sides must be multiples of (the slices are zero-padded to it).

    The run's ``config["input_multiple"]``; ``2 ** depth`` for runs that do not record it.
    """
    config = info.record.get("config") if isinstance(info.record.get("config"), dict) else {}
    multiple = config.get("input_multiple")
    if multiple is None:
        multiple = 2 ** int(config.get("depth", 0))
    return int(multiple)


def is_export_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds ``mssoft.json`` (a finished ``mssoft export``)."""
    return (Path(folder) / EXPORT_INFO_NAME).is_file()


def read_export(folder: str | Path) -> RunInfo:
    """Read an export folder's ``mssoft.json``.

    Returns
    -------
    RunInfo
        ``path`` the export folder; ``modalities``, ``rater`` and ``train_scans`` of the exported
        run; ``record`` the run's own ``config.json`` record (so ``record["config"]`` holds the
        training options, as for a run folder).

    Raises
    ------
    DataError
        Unreadable ``mssoft.json``, another format or version, no SavedModel, or a normalisation
        that ``mssoft predict`` does not apply.
    """
    folder = Path(folder)
    path = folder / EXPORT_INFO_NAME
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != EXPORT_FORMAT:
        raise DataError(f"{path}: not an `mssoft export` description")
    if info.get("format_version") != EXPORT_FORMAT_VERSION:
        raise DataError(
            f"{path}: format_version {info.get('format_version')!r} is not supported by this "
            f"mssoft (expected {EXPORT_FORMAT_VERSION}); export the run again"
        )
    saved_model = folder / str(info.get("saved_model", SAVED_MODEL_DIR))
    if not (saved_model / "saved_model.pb").is_file():
        raise DataError(f"{saved_model}: no saved_model.pb (an incomplete `mssoft export`?)")
    modalities = info.get("modalities")
    if not modalities or not all(isinstance(m, str) for m in modalities):
        raise DataError(f"{path}: no `modalities` list")
    method = (info.get("normalisation") or {}).get("method")
    if method != ZSCORE_BRAIN["method"]:
        raise DataError(
            f"{path}: normalisation {method!r} is not one this mssoft applies "
            f"(expected {ZSCORE_BRAIN['method']!r})"
        )
    training = info.get("training") if isinstance(info.get("training"), dict) else {}
    run_record = info.get("run_config") if isinstance(info.get("run_config"), dict) else {}
    train_scans = training.get("train_scans")
    return RunInfo(
        path=folder,
        modalities=tuple(normalise_modality(m) for m in modalities),
        rater=int(training.get("rater", 1)),
        train_scans=tuple(train_scans) if train_scans else None,
        record=run_record,
    )


def read_model_folder(folder: str | Path) -> RunInfo:
    """Read a run folder (``mssoft fit``) or an export folder (``mssoft export``) alike.

    Raises
    ------
    DataError
        See :func:`mssoft.files.run_folder.read_run` and :func:`read_export`.
    """
    return read_export(folder) if is_export_folder(folder) else read_run(folder)
