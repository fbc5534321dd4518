"""Reading a run folder: the model, its inputs, its rater, its training scans, its calibration.

A run folder is written by ``mssoft fit``: ``model.keras`` and ``config.json`` whose ``config``
entry holds the modalities (the model's channel order), the rater and the training scans.
``mssoft calibrate`` adds ``calibration.json`` (threshold, minimum lesion size, connectivity),
which ``mssoft predict`` reads. Only :func:`load_run_model` imports TensorFlow.

An export folder (``mssoft export``) holds a TensorFlow SavedModel (``1/``) and ``mssoft.json``:
the model's input (modalities in channel order, normalisation, slicing, padding multiple), the
calibrated binarisation, the training voxel size and orientation, the run's own ``config.json``
record and package versions (written by :mod:`mssoft.workflows.export`), and a copy of the run's
``calibration.json``. :func:`read_model_folder` reads either kind of folder into one
:class:`RunInfo`, so ``predict`` treats them alike. Nothing here imports TensorFlow.
Several runs with the same input channels make an *ensemble* (``mssoft calibrate``/``predict``
with several RUN folders): their probabilities are averaged
(:class:`mssoft.nn.inference.AveragedModel`). One run keeps its threshold in
``RUN/calibration.json`` (which records the test-time augmentation, ``tta``, it was chosen with);
an ensemble's goes to ``mssoft calibrate RUN1 RUN2 ... DATA --out FOLDER``, which writes
``FOLDER/calibration.json`` naming the runs and the TTA, and ``mssoft predict RUN1 RUN2 ... DATA
--calibration FOLDER`` reads it (:func:`ensemble_binarisation`, which warns when the calibration
was made for other runs or another TTA).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mssoft.arrays.postprocess import DEFAULT_THRESHOLD, Binarisation
from mssoft.errors import ConfigError, DataError
from mssoft.files.folders import read_config
from mssoft.files.run_record import RunRecord, parse_run_record
from mssoft.files.layout import (
    CALIBRATION_NAME,
    CONFIG_NAME,
    EXPORT_INFO_NAME,
    LANDMARKS_NAME,
    MODEL_NAME,
    SAVED_MODEL_DIR,
    SAVED_MODEL_FILE,
)
from mssoft.files.scans import normalise_modality

__all__ = [
    "MODEL_NAME",
    "CALIBRATION_NAME",
    "RunInfo",
    "read_run",
    "read_calibration",
    "resolve_binarisation",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "NORMALISATION_TEXT",
    "is_export_folder",
    "read_export",
    "read_model_folder",
    "check_export_finished",
    "input_multiple_of",
    "normalisation_of",
    "RunsLike",
    "as_runs",
    "read_ensemble",
    "ensemble_binarisation",
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
    run_record : RunRecord
        Its ``config`` entry, validated (:mod:`mssoft.files.run_record`).
    """

    path: Path
    modalities: tuple[str, ...]
    rater: int
    train_scans: tuple[str, ...] | None
    record: dict[str, Any] = field(repr=False)
    run_record: RunRecord = field(repr=False)

    @property
    def input_multiple(self) -> int:
        """What the model's slice sides must be multiples of (the slices are zero-padded to it).

        The run's ``config["input_multiple"]``; ``2 ** depth`` for runs that do not record it.
        """
        return self.run_record.input_multiple



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
    parsed = parse_run_record(record.get("config"), run / CONFIG_NAME)
    config = parsed.config
    if not (run / MODEL_NAME).is_file():
        raise DataError(f"{run / MODEL_NAME}: not found (is {run} a finished `mssoft fit` run?)")
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
        modalities=tuple(normalise_modality(m) for m in parsed.modalities),
        rater=parsed.rater,
        train_scans=train_scans,
        record=record,
        run_record=parsed,
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


#: ``mssoft.json``'s ``format`` and ``format_version``.
EXPORT_FORMAT = "mssoft-export"
EXPORT_FORMAT_VERSION = 1

#: How each ``--normalise`` method maps a scan's intensities (the model's input).
NORMALISATION_TEXT: dict[str, str] = {
    "zscore": (
        "per scan and per channel: x -> (x - mean) / std, mean and std over the channel's "
        "non-zero finite voxels of the whole 3D scan (std 1 if it is 0); voxels that are 0 or "
        "not finite become 0"
    ),
    "percentile": (
        "per scan and per channel: brain (non-zero) intensities clipped to their "
        "clip_percentiles, then z-scored as for zscore"
    ),
    "histogram": (
        "per scan and per channel: Nyul-Udupa histogram standardisation: the brain's "
        "intensities at landmark_percentiles are mapped piecewise linearly onto the channel's "
        "standard landmarks (landmarks_file, learned on the training scans), then z-scored"
    ),
}


def normalisation_of(info: RunInfo) -> dict[str, Any]:
    """How the run's model expects its input intensities normalised.

    The run's ``config["normalise"]`` record (method, parameters, landmarks file; written by
    ``mssoft fit``) with a description; runs that record none used ``zscore``.
    """
    record = dict(info.run_record.normalise.record)
    record.setdefault("description", NORMALISATION_TEXT.get(str(record.get("method")), ""))
    return record


def input_multiple_of(info: RunInfo) -> int:
    """What the model's slice sides must be multiples of (:attr:`RunInfo.input_multiple`)."""
    return info.input_multiple


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
    if not (saved_model / SAVED_MODEL_FILE).is_file():
        raise DataError(f"{saved_model}: no saved_model.pb (an incomplete `mssoft export`?)")
    run_record = info.get("run_config") if isinstance(info.get("run_config"), dict) else {}
    parsed = parse_run_record(run_record.get("config"), path)
    modalities = tuple(normalise_modality(m) for m in parsed.modalities)
    if modalities != _export_modalities(info.get("modalities"), path):
        raise DataError(
            f"{path}: `modalities` {info.get('modalities')!r} disagree with the run record's "
            f"{list(parsed.modalities)}"
        )
    if info.get("input_multiple") != parsed.input_multiple:
        raise DataError(
            f"{path}: `input_multiple` {info.get('input_multiple')!r} disagrees with the run "
            f"record's {parsed.input_multiple}"
        )
    normalisation = info.get("normalisation")
    method = normalisation.get("method") if isinstance(normalisation, dict) else None
    if method not in NORMALISATION_TEXT:
        raise DataError(
            f"{path}: normalisation {method!r} is not one this mssoft applies "
            f"(expected one of {', '.join(NORMALISATION_TEXT)})"
        )
    training = info.get("training") if isinstance(info.get("training"), dict) else {}
    train_scans = _scan_ids(training.get("train_scans"))
    return RunInfo(
        path=folder,
        modalities=modalities,
        rater=parsed.rater,
        train_scans=train_scans,
        record=run_record,
        run_record=parsed,
    )


def _export_modalities(value: Any, path: Path) -> tuple[str, ...]:
    """``mssoft.json``'s ``modalities`` list, canonical names."""
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise DataError(f"{path}: no `modalities` list")
    return tuple(normalise_modality(m) for m in value)


def read_model_folder(folder: str | Path) -> RunInfo:
    """Read a run folder (``mssoft fit``) or an export folder (``mssoft export``) alike.

    Raises
    ------
    DataError
        See :func:`mssoft.files.run_folder.read_run` and :func:`read_export`; also an export
        folder that ``mssoft export`` did not finish (stopped or killed part-way).
    """
    check_export_finished(folder)
    return read_export(folder) if is_export_folder(folder) else read_run(folder)


def check_export_finished(folder: str | Path) -> None:
    """Refuse an export folder whose ``config.json`` says ``mssoft export`` did not finish.

    An export stopped part-way (even by ``kill -9``) leaves ``config.json`` with ``"status":
    "incomplete"``, or without ``mssoft.json`` (written last). Folders without ``config.json``
    (an export copied without it) are not judged here.

    Raises
    ------
    DataError
        Naming the folder and the remedy.
    """
    path = Path(folder) / CONFIG_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # judged by the record reader later
        return
    if not isinstance(record, dict) or record.get("command") != "export":
        return
    if record.get("status") == "incomplete" or not is_export_folder(folder):
        raise DataError(
            f"{folder}: an incomplete export (`mssoft export` stopped before it had written "
            "every file): delete it and run mssoft export again"
        )


RunsLike = str | Path | Sequence[str | Path]


def as_runs(run: RunsLike) -> list[Path]:
    """One run folder or several, as a list of paths (duplicates refused)."""
    runs = [Path(run)] if isinstance(run, (str, Path)) else [Path(r) for r in run]
    if not runs:
        raise ConfigError("Invalid value for `RUN`: expected at least one run folder")
    resolved = [r.resolve() for r in runs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"Invalid value for `RUN`: a run folder is named twice ({runs})")
    return runs


def read_ensemble(runs: Sequence[Path]) -> list[RunInfo]:
    """Read every run's ``config.json``; the runs must take the same channels in the same order.

    Raises
    ------
    DataError
        A folder is not a finished ``mssoft fit`` run nor an ``mssoft export`` folder.
    ConfigError
        The runs' input channels or normalisations differ.
    """
    infos = [read_model_folder(r) for r in runs]
    first = normalisation_of(infos[0])
    for info in infos[1:]:
        if info.modalities != infos[0].modalities:
            raise ConfigError(
                f"Invalid value for `RUN`: {info.path} takes {','.join(info.modalities)} but "
                f"{infos[0].path} takes {','.join(infos[0].modalities)}; an ensemble's runs need "
                "the same input channels"
            )
        mine = normalisation_of(info)
        same = mine == first
        if same and mine.get("method") == "histogram":  # the landmarks learned must agree too
            landmarks = mine.get("landmarks_file") or LANDMARKS_NAME
            same = (info.path / landmarks).read_bytes() == (infos[0].path / landmarks).read_bytes()
        if not same:
            raise ConfigError(
                f"Invalid value for `RUN`: {info.path} normalises its input otherwise than "
                f"{infos[0].path} ({mine.get('method')} / {first.get('method')}); an ensemble's "
                "runs need one normalisation"
            )
    return infos


def _setup(folder: Path) -> dict[str, Any] | None:
    """The ``runs`` and ``tta`` a calibration file records (None without the file)."""
    path = folder / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # resolve_binarisation reports the unreadable file
    return record if isinstance(record, dict) else None


def ensemble_binarisation(
    runs: Sequence[Path],
    *,
    calibration: str | Path | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    tta: str = "none",
) -> tuple[Binarisation, str]:
    """The binarisation of an ensemble: options, then its calibration, then the defaults.

    Parameters
    ----------
    runs : sequence of Path
    calibration : path-like, optional
        Folder holding the ensemble's ``calibration.json`` (default: the run's own folder with one
        run; none with several, so the defaults apply unless ``threshold`` is given).
    threshold, min_size, tta
        As ``mssoft predict``.

    Returns
    -------
    binarisation : Binarisation
    source : str
        As :func:`mssoft.files.run_folder.resolve_binarisation`.
    """
    folder = Path(calibration) if calibration is not None else None
    if folder is not None and folder.is_file():
        folder = folder.parent
    if folder is None and len(runs) == 1:
        folder = runs[0]
    if folder is None:
        base = Binarisation()
        if threshold is None:
            logger.warning(
                "no --calibration for an ensemble of %d runs: using threshold %g and min_size %d "
                "(run `mssoft calibrate RUN... DATA --out FOLDER` first)",
                len(runs),
                base.threshold,
                base.min_size if min_size is None else min_size,
            )
        return (
            Binarisation(
                base.threshold if threshold is None else threshold,
                base.min_size if min_size is None else min_size,
                base.connectivity,
            ),
            "default" if threshold is None else "option",
        )
    setup = _setup(folder)
    # a run's own calibration.json (also in a copied run or an export folder) is the run's
    own = len(runs) == 1 and folder.resolve() == runs[0].resolve()
    if setup is not None and threshold is None:
        wanted = sorted(str(r.resolve()) for r in runs)
        recorded = sorted(
            str(Path(r).resolve()) for r in setup.get("runs", [setup.get("run")]) if r
        )
        if recorded and recorded != wanted and not own:
            logger.warning(
                "%s was calibrated for the runs %s, not %s",
                folder / CALIBRATION_NAME,
                ", ".join(recorded),
                ", ".join(wanted),
            )
        if setup.get("tta", "none") != tta:
            logger.warning(
                "%s was calibrated with --tta %s, predicting with --tta %s",
                folder / CALIBRATION_NAME,
                setup.get("tta", "none"),
                tta,
            )
    return resolve_binarisation(folder, threshold=threshold, min_size=min_size)

