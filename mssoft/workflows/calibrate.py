"""``mssoft calibrate``: predict the calibration scans once, then search the threshold.

The search itself (:mod:`mssoft.arrays.threshold_search`) is exact and pure NumPy: the Dice of the
post-processed prediction at every threshold of a grid and every candidate minimum lesion size.
The probabilities are not kept: only the Dice curves are.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.lesions import (
    DEFAULT_CONNECTIVITY,
    DEFAULT_MIN_SIZE,
)
from mssoft.arrays.postprocess import (
    THRESHOLD_RULE,
    Binarisation,
)
from mssoft.arrays.threshold_search import (
    choose_binarisation,
    dice_curves,
    grid_edge,
    parse_min_sizes,
    threshold_grid,
)
from mssoft.choices import TTA_MODES
from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import write_json
from mssoft.files.folders import (
    check_not_in_use,
    check_output_location,
    locked_output_folder,
    package_versions,
)
from mssoft.files.layout import CALIBRATION_NAME
from mssoft.files.run_folder import (
    RunInfo,
    RunsLike,
    as_runs,
    read_ensemble,
)
from mssoft.files.scans import LoadedScan, Scan, discover_scans, load_scan, select_scans
from mssoft.workflows.model_input import ModelInput, model_input
from mssoft.workflows.overlap import read_ahead
from mssoft.workflows.progress import Progress, no_progress

__all__ = [
    "Calibration",
    "calibrate_run",
    "edge_warning",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_run`.

    Attributes
    ----------
    binarisation : Binarisation
        The chosen threshold, minimum size and connectivity.
    mean_dice : float
        Mean per-scan Dice at the chosen point.
    rater : int
    scans : tuple of str
    thresholds : ndarray of shape (T,)
    min_sizes : tuple of int
    curves : ndarray of shape (N, M, T)
        Dice of each scan, minimum size and threshold.
    path : Path
        The written ``calibration.json``.
    """

    binarisation: Binarisation
    mean_dice: float
    rater: int
    scans: tuple[str, ...]
    thresholds: np.ndarray
    min_sizes: tuple[int, ...]
    curves: np.ndarray
    path: Path

    def scan_dice(self) -> dict[str, float]:
        """Dice of each scan at the chosen threshold and minimum size."""
        i = self.min_sizes.index(self.binarisation.min_size)
        j = int(np.flatnonzero(self.thresholds == self.binarisation.threshold)[0])
        return {scan: float(self.curves[k, i, j]) for k, scan in enumerate(self.scans)}


def _calibration_scans(
    run_info: RunInfo, data: str | Path, scans: str | Sequence[str] | None, rater: int
) -> tuple[list[Scan], str]:
    found = discover_scans(data)
    if scans is not None:
        return select_scans(found, scans, source=str(data)), "option --scans"
    if run_info.train_scans:
        by_id = {s.scan_id for s in found}
        missing = [s for s in run_info.train_scans if s not in by_id]
        if missing:
            raise DataError(
                f"{data}: {len(missing)} training scan(s) of run {run_info.path} not found: "
                f"{', '.join(missing)} (give DATA the run was trained on, or --scans)"
            )
        return select_scans(found, run_info.train_scans, source=str(data)), "run config"
    with_mask = [s for s in found if rater in s.masks]
    if not with_mask:
        raise DataError(f"{data}: no scan has a mask of rater {rater}")
    logger.warning(
        "run %s lists no training scans: calibrating on all %d scans of %s with a rater-%d mask",
        run_info.path,
        len(with_mask),
        data,
        rater,
    )
    return with_mask, f"all scans with a rater-{rater} mask"


def calibrate_run(
    run: RunsLike,
    data: str | Path,
    *,
    tta: str = "none",
    out: str | Path | None = None,
    scans: str | Sequence[str] | None = None,
    rater: int | None = None,
    thresholds: Sequence[float] | np.ndarray | None = None,
    min_sizes: Sequence[int] = (DEFAULT_MIN_SIZE,),
    connectivity: int = DEFAULT_CONNECTIVITY,
    batch_size: int = 16,
    overwrite: bool = False,
    progress: Progress = no_progress,
    resample: bool = False,
    mixed_precision: bool = False,
    trust_savedmodel: bool = False,
    model: Any = None,
) -> Calibration:
    """Predict the calibration scans once, search the threshold, write ``RUN/calibration.json``.

    Parameters
    ----------
    run : path-like or sequence of path-like
        Run folder of ``mssoft fit``, or several whose probabilities are averaged (an ensemble,
        :mod:`mssoft.files.run_folder`; the first run gives the rater and training scans).
    data : path-like
        ISBI 2015 data folder or CSV manifest holding the calibration scans and their masks.
    tta : {"none", "flip"}, optional
        ``flip`` averages each slice's probabilities with those of its left-right mirror.
    out : path-like, optional
        Folder for ``calibration.json`` (created); default the run folder. Required with several
        runs.
    scans : sequence of str, optional
        Scan ids; default: the run's training scans, else every scan with the rater's mask.
    rater : int, optional
        Reference rater (default: the run's).
    thresholds : sequence of float, optional
        Strictly increasing grid (default :func:`threshold_grid`: 0.01 to 0.99 by 0.01). A chosen
        threshold on either end of it is warned about (log and ``calibration.json``).
    min_sizes : sequence of int, optional
        Candidate minimum lesion sizes (lesions of more voxels are kept).
    connectivity : {6, 18, 26}, optional
    batch_size : int, optional
        Slices per model call.
    overwrite : bool, optional
        Replace an existing ``calibration.json``.
    progress : callable, optional
        ``progress(items, label)`` wraps the iteration over scans (a progress bar).
    resample : bool, optional
        Predict each scan at the run's training voxel size (see ``mssoft predict --resample``);
        without it, scans whose voxel size is more than 20 % off get a warning.
    mixed_precision : bool, optional
        Run the model in bfloat16 on CPU / float16 on GPU (the output layer stays float32).
    trust_savedmodel : bool, optional
        Allow running the TensorFlow SavedModel of an export folder that holds no ``model.keras``
        (a SavedModel is a program; see :func:`mssoft.nn.model_files.load_model_folder`).
    model : object with ``predict_on_batch``, optional
        The model of ``run`` already loaded (:func:`mssoft.nn.model_files.load_ensemble` with
        the same ``tta`` and ``mixed_precision``), so that calibration and prediction of one
        model load it once; default: loaded here.

    Returns
    -------
    Calibration

    Raises
    ------
    DataError, ConfigError
        Bad run folder, missing scans or masks, an existing calibration without ``overwrite``.
    """
    runs = as_runs(run)
    infos = read_ensemble(runs)  # run folders or export folders, read once
    info = infos[0]
    if tta not in TTA_MODES:
        raise ConfigError(
            f"Invalid value for `--tta`. Expected one of {', '.join(TTA_MODES)}. Received: {tta!r}"
        )
    if out is None and len(runs) > 1:
        raise ConfigError(
            "Invalid value for `--out`: calibrating an ensemble of several runs needs --out FOLDER "
            "for its calibration.json (then `mssoft predict RUN... DATA --calibration FOLDER`)"
        )
    rater = info.rater if rater is None else int(rater)
    grid = _checked_grid(thresholds)
    min_sizes = parse_min_sizes(min_sizes)
    for m in min_sizes:
        Binarisation(float(grid[0]), m, connectivity)  # validates min_size and connectivity
    path = Path(out if out is not None else runs[0]) / CALIBRATION_NAME
    if out is not None:  # refused before anything is created (the folder only when writing)
        check_output_location(out, data=data)
        check_not_in_use(out, command="calibrate")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    selected, scan_source = _calibration_scans(info, data, scans, rater)
    setup = model_input(runs, infos, selected, resample=resample, rater=rater)
    for folder in runs:  # a run still training: refused
        check_not_in_use(folder, command="calibrate", option="RUN")
    from mssoft.nn.model_files import load_ensemble  # imports TensorFlow

    if model is None:
        model = load_ensemble(
            runs, tta=tta, mixed_precision=mixed_precision, trust_savedmodel=trust_savedmodel
        )
    curves = []
    # the next scan is read while the model predicts this one (mssoft.workflows.overlap)
    loads = read_ahead(selected, lambda s: load_scan(s, modalities=info.modalities, rater=rater))
    for _, loaded in zip(progress(selected, "calibrate"), loads, strict=True):
        curves.append(
            scan_dice_curves(model, loaded, setup, grid, min_sizes, connectivity, batch_size)
        )
    stack = np.stack(curves)
    chosen, mean_dice = choose_binarisation(stack, grid, min_sizes, connectivity=connectivity)
    result = Calibration(
        chosen, mean_dice, rater, tuple(s.scan_id for s in selected), grid, min_sizes, stack, path
    )
    option = "--out" if out is not None else "RUN"
    with locked_output_folder(
        path.parent, command="calibrate", data=None if out is None else data, option=option
    ):
        _write_calibration(result, runs, data, scan_source, tta, setup.geometry, mixed_precision)
    return result


def _checked_grid(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """The threshold grid (default :func:`threshold_grid`), strictly increasing in (0, 1]."""
    grid = threshold_grid() if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if (
        grid.ndim != 1
        or grid.size == 0
        or np.any(np.diff(grid) <= 0)
        or grid[0] <= 0
        or grid[-1] > 1
    ):
        raise ConfigError(
            "Invalid value for `thresholds`. Expected strictly increasing values in (0, 1]."
        )
    return grid


def scan_dice_curves(
    model: Any,
    loaded: LoadedScan,
    setup: ModelInput,
    grid: np.ndarray,
    min_sizes: Sequence[int],
    connectivity: int,
    batch_size: int,
) -> np.ndarray:
    """The per-scan step of :func:`calibrate_run`: Dice of the scan at every candidate.

    Returns
    -------
    ndarray of float64, shape (len(min_sizes), len(grid))
        As :func:`mssoft.arrays.threshold_search.dice_curves`, against ``loaded.mask``.
    """
    assert loaded.mask is not None  # load_scan(rater=...) always reads the mask
    prob = setup.predict(model, loaded, batch_size=batch_size)
    curves = dice_curves(prob, loaded.mask, grid, min_sizes=min_sizes, connectivity=connectivity)
    logger.info("%s: best Dice %.4f", loaded.scan.scan_id, float(curves.max()))
    return curves


def _write_calibration(
    result: Calibration,
    runs: Sequence[Path],
    data: str | Path,
    scan_source: str,
    tta: str,
    geometry: dict[str, Any],
    mixed_precision: bool,
) -> None:
    """Write ``calibration.json`` and log the choice (and a warning at an end of the grid)."""
    warning = edge_warning(result)
    record = _record(result, runs, data, scan_source, tta)
    record["geometry"] = geometry
    record["mixed_precision"] = bool(mixed_precision)
    record["grid_warning"] = warning
    write_json(record, result.path)
    logger.info(
        "chose %s: mean Dice %.4f over %d scans",
        result.binarisation.describe(),
        result.mean_dice,
        len(result.scans),
    )
    if warning:
        logger.warning("%s", warning)


def edge_warning(result: Calibration) -> str | None:
    """A warning when the chosen threshold lies on an end of the searched grid, else None."""
    grid = result.thresholds
    edge = grid_edge(result.binarisation.threshold, grid)
    if edge is None:
        return None
    option, direction = (
        ("--threshold-min", "lower") if edge == "lower" else ("--threshold-max", "higher")
    )
    return (
        f"the chosen threshold {result.binarisation.threshold:g} is the {edge} end of the "
        f"searched grid ({grid[0]:g} to {grid[-1]:g}): the Dice may still rise beyond it; "
        f"widen the grid ({option}, {direction}) if possible, and check the model's calibration"
    )


def _record(
    result: Calibration, runs: Sequence[Path], data: str | Path, scan_source: str, tta: str
) -> dict[str, Any]:
    mean = result.curves.mean(axis=0)
    return {
        "command": "calibrate",
        "threshold": result.binarisation.threshold,
        "min_size": result.binarisation.min_size,
        "connectivity": result.binarisation.connectivity,
        "rule": THRESHOLD_RULE,
        "lesion_definition": result.binarisation.lesion_definition.describe(),
        "mean_dice": result.mean_dice,
        "objective": f"mean per-scan Dice against rater {result.rater} after post-processing",
        "rater": result.rater,
        "run": str(runs[0].resolve()),
        "runs": [str(r.resolve()) for r in runs],
        "tta": tta,
        "data": str(Path(data).resolve()),
        "scan_source": scan_source,
        "scans": list(result.scans),
        "scan_dice": result.scan_dice(),
        "thresholds": result.thresholds.tolist(),
        "min_sizes": list(result.min_sizes),
        "mean_dice_curve": {str(m): mean[i].tolist() for i, m in enumerate(result.min_sizes)},
        "scan_dice_curves": {
            scan: {str(m): result.curves[k, i].tolist() for i, m in enumerate(result.min_sizes)}
            for k, scan in enumerate(result.scans)
        },
        "versions": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
