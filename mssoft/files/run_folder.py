"""Reading a run folder: the model, its inputs, its rater, its training scans, its calibration.

A run folder is written by ``mssoft fit``: ``model.keras`` and ``config.json`` whose ``config``
entry holds the modalities (the model's channel order), the rater and the training scans.
``mssoft calibrate`` adds ``calibration.json`` (threshold, minimum lesion size, connectivity),
which ``mssoft predict`` reads. Only :func:`load_run_model` imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mssoft.arrays.postprocess import DEFAULT_THRESHOLD, Binarisation
from mssoft.errors import DataError
from mssoft.files.folders import read_config
from mssoft.files.layout import CALIBRATION_NAME, CONFIG_NAME, MODEL_NAME
from mssoft.files.scans import Scan, normalise_modality

__all__ = [
    "MODEL_NAME",
    "CALIBRATION_NAME",
    "RunInfo",
    "read_run",
    "check_modalities",
    "read_calibration",
    "resolve_binarisation",
]

logger = logging.getLogger(__name__)

#: Keys under which a run's config.json may list its training scans (first found wins).
_TRAIN_SCAN_KEYS = (
    "train_scans",
    "training_scans",
    "scans_train",
    "train_scan_ids",
    "scan_ids",
    "scans",
)


@dataclass(frozen=True)
class RunInfo:
    """What a run folder says about its model.

    Attributes
    ----------
    path : Path
        The run folder.
    modalities : tuple of str
        Input channels of the model, in order (canonical names).
    rater : int
        Rater whose masks trained the model.
    train_scans : tuple of str or None
        Scan ids the model was trained on, if the run records them.
    record : dict
        The whole ``config.json``.
    """

    path: Path
    modalities: tuple[str, ...]
    rater: int
    train_scans: tuple[str, ...] | None
    record: dict[str, Any] = field(repr=False)


def _scan_ids(value: Any) -> tuple[str, ...] | None:
    """Scan ids from a list of ids or {"scan": id} records, a {"train": [...]} or {id: ...} map."""
    if isinstance(value, (list, tuple)):
        ids: list[str] = []
        for item in value:
            scan_id = item.get("scan", item.get("scan_id")) if isinstance(item, dict) else item
            if not isinstance(scan_id, str):
                return None
            ids.append(scan_id)
        return tuple(ids) or None
    if isinstance(value, dict):
        for key in ("train", "training"):
            if key in value:
                return _scan_ids(value[key])
        if value and all(isinstance(k, str) for k in value):
            return tuple(value)
    return None


def read_run(run: str | Path) -> RunInfo:
    """Read a run folder's ``config.json``.

    Parameters
    ----------
    run : path-like
        Output folder of ``mssoft fit``.

    Returns
    -------
    RunInfo

    Raises
    ------
    DataError
        The folder has no ``model.keras`` or ``config.json``, or the configuration names no
        modalities.
    """
    run = Path(run)
    if not run.is_dir():
        raise DataError(f"{run}: run folder not found")
    record = read_config(run)
    config: dict[str, Any] = record["config"] if isinstance(record.get("config"), dict) else {}
    modalities = config.get("modalities")
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split(",") if m.strip()]
    if not modalities or not all(isinstance(m, str) for m in modalities):
        raise DataError(
            f"{run / CONFIG_NAME}: no `modalities` list in its config "
            f"(is {run} a `mssoft fit` run?)"
        )
    if not (run / MODEL_NAME).is_file():
        raise DataError(f"{run / MODEL_NAME}: not found (is {run} a finished `mssoft fit` run?)")
    rater = config.get("rater")
    if rater is None:
        logger.warning("%s: no `rater` in the run's config; assuming rater 1", run / CONFIG_NAME)
        rater = 1
    train_scans = None
    for source in (config, record):
        for key in _TRAIN_SCAN_KEYS:
            if key in source:
                train_scans = _scan_ids(source[key])
                if train_scans:
                    break
        if train_scans:
            break
    return RunInfo(
        path=run,
        modalities=tuple(normalise_modality(m) for m in modalities),
        rater=int(rater),
        train_scans=train_scans,
        record=record,
    )


def read_calibration(run: str | Path) -> Binarisation | None:
    """The threshold and lesion definition chosen by ``mssoft calibrate``, if the run has one.

    Returns
    -------
    Binarisation or None
        None when ``RUN/calibration.json`` does not exist.

    Raises
    ------
    DataError
        The file exists but cannot be read or holds no valid threshold.
    """
    path = Path(run) / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return Binarisation(
            threshold=record["threshold"],
            min_size=record["min_size"],
            connectivity=record.get("connectivity", 18),
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: not a valid calibration file ({type(exc).__name__}: {exc})"
        ) from None


def resolve_binarisation(
    run: str | Path, *, threshold: float | None = None, min_size: int | None = None
) -> tuple[Binarisation, str]:
    """The binarisation ``predict`` uses: options first, then the run's calibration, then defaults.

    Parameters
    ----------
    run : path-like
        Run folder.
    threshold, min_size : optional
        Explicit values (``--threshold``, ``--min-size``); they override the calibration.

    Returns
    -------
    binarisation : Binarisation
    source : str
        ``"calibration"``, ``"option"`` (threshold given), or ``"default"`` (no calibration file:
        threshold 0.5 and min_size 18; a warning is logged).
    """
    calibrated = read_calibration(run)
    base = calibrated if calibrated is not None else Binarisation()
    binarisation = Binarisation(
        threshold=base.threshold if threshold is None else threshold,
        min_size=base.min_size if min_size is None else min_size,
        connectivity=base.connectivity,
    )
    if threshold is not None:
        source = "option"
    elif calibrated is not None:
        source = "calibration"
    else:
        source = "default"
        logger.warning(
            "%s not found: using threshold %g and min_size %d (run `mssoft calibrate` first)",
            Path(run) / CALIBRATION_NAME,
            DEFAULT_THRESHOLD,
            binarisation.min_size,
        )
    return binarisation, source


def check_modalities(scans: Sequence[Scan], run: RunInfo) -> None:
    """Raise :class:`DataError` naming the first scan that lacks one of the run's modalities."""
    for scan in scans:
        missing = [m for m in run.modalities if m not in scan.images]
        if missing:
            raise DataError(
                f"scan {scan.scan_id} ({scan.images['flair'].parent}) has no "
                f"{', '.join(missing)} image, "
                f"which the model of {run.path} needs (modalities {','.join(run.modalities)})"
            )
