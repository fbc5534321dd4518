"""Choosing the binarisation threshold: the one maximising the mean per-scan Dice (design.md §1.6).

Each calibration scan is predicted once; its Dice against the rater is then computed after
post-processing (:func:`mssoft.postprocess.postprocess`) at every threshold of a grid (default
0.05, 0.06, ..., 0.95) and every candidate minimum lesion size. The probabilities are not kept:
only the Dice curves are.

The search is exact and fast because post-processing is monotone in the threshold. A lesion kept at
threshold ``t2 > t1`` is a connected part of ``{prob >= t2}``, hence of one component of
``{prob >= t1}`` that is at least as large, which was kept at ``t1``. So the post-processed mask at
``t2`` is the post-processed ``{prob >= t2} ∩ kept(t1)``: each lesion kept at the lowest threshold
is followed in its own small bounding box, relabelled (with the same
:func:`mssoft.lesions.remove_small_lesions` that ``predict`` uses) only at the thresholds where it
loses voxels. On a 181 x 217 x 181 volume the 91-threshold curve costs about the time of 7
whole-volume post-processings. Ties in the mean Dice go to the first candidate: the first minimum
size listed, then the lowest threshold.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from mssoft.cases import Scan, check_scan, discover_scans, load_scan
from mssoft.errors import ConfigError, DataError
from mssoft.io import write_json
from mssoft.lesions import (
    DEFAULT_CONNECTIVITY,
    DEFAULT_MIN_SIZE,
    label_lesions,
    remove_small_lesions,
)
from mssoft.postprocess import (
    THRESHOLD_RULE,
    Binarisation,
    binarise,
    bounding_box,
    keep_large_lesions,
)
from mssoft.predict import Progress, check_modalities, predict_volume, select_scans
from mssoft.provenance import package_versions
from mssoft.run_folder import CALIBRATION_NAME, RunInfo, load_run_model, read_run

__all__ = [
    "threshold_grid",
    "parse_min_sizes",
    "dice_curve",
    "dice_curves",
    "choose_binarisation",
    "Calibration",
    "calibrate_run",
]

logger = logging.getLogger(__name__)


def threshold_grid(start: float = 0.05, stop: float = 0.95, step: float = 0.01) -> np.ndarray:
    """Thresholds ``start, start + step, ..., stop`` (both ends included when on the grid).

    Returns
    -------
    ndarray of float64, shape (T,)
        Rounded to 10 decimals, so ``0.05 + 3 * 0.01`` is stored as ``0.08``.

    Raises
    ------
    ConfigError
        Not ``0 < start <= stop <= 1`` or not ``step > 0``.
    """
    for name, value in (
        ("--threshold-min", start),
        ("--threshold-max", stop),
        ("--threshold-step", step),
    ):
        if not math.isfinite(float(value)):
            raise ConfigError(
                f"Invalid value for `{name}`. Expected a finite number. Received: {value}"
            )
    if not 0.0 < start <= 1.0:
        raise ConfigError(
            f"Invalid value for `--threshold-min`. Expected a float in (0, 1]. Received: {start}"
        )
    if not start <= stop <= 1.0:
        raise ConfigError(
            f"Invalid value for `--threshold-max`. Expected a float in [{start}, 1]. "
            f"Received: {stop}"
        )
    if not step > 0:
        raise ConfigError(
            f"Invalid value for `--threshold-step`. Expected a float > 0. Received: {step}"
        )
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return np.unique(np.round(start + step * np.arange(count), 10))


def parse_min_sizes(value: str | Sequence[int]) -> tuple[int, ...]:
    """Minimum lesion sizes from ``"18"`` or ``"10,18,30"`` (order kept, duplicates dropped).

    Raises
    ------
    ConfigError
        An entry is not an integer >= 0, or the list is empty.
    """
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    sizes = []
    for item in items:
        try:
            size = int(item)
        except (TypeError, ValueError):
            size = -1
        if size < 0 or str(size) != str(item).strip():
            raise ConfigError(
                f"Invalid value for `--min-sizes`. Expected integers >= 0. Received: {value}"
            )
        sizes.append(size)
    if not sizes:
        raise ConfigError(
            f"Invalid value for `--min-sizes`. Expected at least one integer. Received: {value!r}"
        )
    return tuple(dict.fromkeys(sizes))


def dice_curve(
    prob: np.ndarray,
    reference: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """Dice of the post-processed prediction against a reference at every threshold.

    Parameters
    ----------
    prob : ndarray of shape (X, Y, Z)
        Lesion probabilities.
    reference : ndarray of shape (X, Y, Z)
        Binary reference mask.
    thresholds : sequence of float, shape (T,)
        Strictly increasing.
    min_size, connectivity : int, optional
        Post-processing (:func:`mssoft.postprocess.postprocess`).

    Returns
    -------
    ndarray of float64, shape (T,)
        ``dice[j]`` equals the Dice of ``postprocess(prob, thresholds[j], min_size=...)`` against
        ``reference`` (1 when both are empty).
    """
    prob = np.asarray(prob)
    prob = prob if prob.dtype.kind == "f" else prob.astype(np.float64)  # as binarise() compares
    ref = np.asarray(reference)
    ref = ref if ref.dtype == bool else ref != 0
    if prob.shape != ref.shape or prob.ndim != 3:
        raise ValueError(
            f"`prob` and `reference` must be 3D of one shape, got {prob.shape} and {ref.shape}"
        )
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0 or np.any(np.diff(thresholds) <= 0):
        raise ValueError("`thresholds` must be a non-empty, strictly increasing 1D sequence")
    n_ref = int(np.count_nonzero(ref))
    pred_voxels = np.zeros(thresholds.size, dtype=np.int64)
    overlap_voxels = np.zeros(thresholds.size, dtype=np.int64)
    first = keep_large_lesions(
        binarise(prob, thresholds[0]), min_size=min_size, connectivity=connectivity
    )
    box = bounding_box(first)
    if box is not None:
        # Lesions only split (never merge) as the threshold rises: follow each one in its own box.
        labels, _ = label_lesions(first[box], connectivity=connectivity)
        for index, sub in enumerate(ndimage.find_objects(labels), start=1):
            where = tuple(
                slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, sub, strict=True)
            )
            _follow_lesion(
                prob[where],
                ref[where],
                labels[sub] == index,
                thresholds,
                pred_voxels,
                overlap_voxels,
                min_size,
                connectivity,
            )
    denominator = pred_voxels + n_ref
    return np.where(denominator == 0, 1.0, 2.0 * overlap_voxels / np.maximum(denominator, 1))


def _follow_lesion(
    prob: np.ndarray,
    ref: np.ndarray,
    kept: np.ndarray,
    thresholds: np.ndarray,
    pred_voxels: np.ndarray,
    overlap_voxels: np.ndarray,
    min_size: int,
    connectivity: int,
) -> None:
    """Add one lesion's post-processed voxel counts at every threshold (it is kept at the first).

    While the threshold stays at or below the lowest probability of the kept voxels nothing
    changes (the kept components are all larger than ``min_size``), so those thresholds are
    counted at once; the lesion is relabelled only where it loses voxels.
    """
    as_prob_type = thresholds.astype(prob.dtype)  # the comparison binarise() makes
    j = 0
    while True:
        unchanged_until = max(
            int(np.searchsorted(as_prob_type, prob[kept].min(), side="right")), j + 1
        )
        pred_voxels[j:unchanged_until] += np.count_nonzero(kept)
        overlap_voxels[j:unchanged_until] += np.count_nonzero(kept & ref)
        j = unchanged_until
        if j == thresholds.size:
            return
        kept = remove_small_lesions(
            binarise(prob, thresholds[j]) & kept, min_size=min_size, connectivity=connectivity
        )
        box = bounding_box(kept)
        if box is None:  # nothing of this lesion survives here, so nothing at higher thresholds
            return
        kept, prob, ref = kept[box], prob[box], ref[box]


def dice_curves(
    prob: np.ndarray,
    reference: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    *,
    min_sizes: Sequence[int] = (DEFAULT_MIN_SIZE,),
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """:func:`dice_curve` for several minimum lesion sizes.

    Returns
    -------
    ndarray of float64, shape (M, T)
        One row per entry of ``min_sizes``.
    """
    return np.stack(
        [
            dice_curve(prob, reference, thresholds, min_size=m, connectivity=connectivity)
            for m in min_sizes
        ]
    )


def choose_binarisation(
    curves: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    min_sizes: Sequence[int],
    *,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> tuple[Binarisation, float]:
    """The threshold and minimum size with the highest mean Dice over scans.

    Parameters
    ----------
    curves : ndarray of shape (N, M, T)
        Dice of N scans, M minimum sizes, T thresholds.
    thresholds : sequence of float, shape (T,)
    min_sizes : sequence of int, shape (M,)

    Returns
    -------
    binarisation : Binarisation
    mean_dice : float
        Mean over the N scans at the chosen point. Ties go to the first minimum size, then the
        lowest threshold.
    """
    curves = np.asarray(curves, dtype=np.float64)
    if (
        curves.ndim != 3
        or curves.shape[1:] != (len(min_sizes), len(thresholds))
        or curves.shape[0] == 0
    ):
        raise ValueError(
            f"`curves` must have shape (N >= 1, {len(min_sizes)}, {len(thresholds)}), "
            f"got {curves.shape}"
        )
    mean = curves.mean(axis=0)
    i, j = (int(k) for k in np.unravel_index(int(np.argmax(mean)), mean.shape))
    chosen = Binarisation(float(thresholds[j]), int(min_sizes[i]), connectivity)
    return chosen, float(mean[i, j])


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
    run: str | Path,
    data: str | Path,
    *,
    scans: str | Sequence[str] | None = None,
    rater: int | None = None,
    thresholds: Sequence[float] | np.ndarray | None = None,
    min_sizes: Sequence[int] = (DEFAULT_MIN_SIZE,),
    connectivity: int = DEFAULT_CONNECTIVITY,
    batch_size: int = 16,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Calibration:
    """Predict the calibration scans once, search the threshold, write ``RUN/calibration.json``.

    Parameters
    ----------
    run : path-like
        Run folder of ``mssoft fit``.
    data : path-like
        ISBI 2015 data folder or CSV manifest holding the calibration scans and their masks.
    scans : sequence of str, optional
        Scan ids; default: the run's training scans, else every scan with the rater's mask.
    rater : int, optional
        Reference rater (default: the run's).
    thresholds : sequence of float, optional
        Strictly increasing grid (default :func:`threshold_grid`: 0.05 to 0.95 by 0.01).
    min_sizes : sequence of int, optional
        Candidate minimum lesion sizes (lesions of more voxels are kept).
    connectivity : {6, 18, 26}, optional
    batch_size : int, optional
        Slices per model call.
    overwrite : bool, optional
        Replace an existing ``calibration.json``.
    progress : callable, optional
        Wraps the iteration over scans (a progress bar).

    Returns
    -------
    Calibration

    Raises
    ------
    DataError, ConfigError
        Bad run folder, missing scans or masks, an existing calibration without ``overwrite``.
    """
    info = read_run(run)
    rater = info.rater if rater is None else int(rater)
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
    min_sizes = parse_min_sizes(min_sizes)
    for m in min_sizes:
        Binarisation(float(grid[0]), m, connectivity)  # validates min_size and connectivity
    path = Path(run) / CALIBRATION_NAME
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    selected, scan_source = _calibration_scans(info, data, scans, rater)
    check_modalities(selected, info)
    for scan in selected:
        check_scan(scan, modalities=info.modalities, rater=rater)
    model = load_run_model(run)
    curves = []
    for scan in (progress or iter)(selected):
        loaded = load_scan(scan, modalities=info.modalities, rater=rater)
        assert loaded.mask is not None  # load_scan(rater=...) always reads the mask
        prob = predict_volume(model, loaded.image, batch_size=batch_size)
        curves.append(
            dice_curves(prob, loaded.mask, grid, min_sizes=min_sizes, connectivity=connectivity)
        )
        logger.info("%s: best Dice %.4f", scan.scan_id, float(curves[-1].max()))
    stack = np.stack(curves)
    chosen, mean_dice = choose_binarisation(stack, grid, min_sizes, connectivity=connectivity)
    result = Calibration(
        chosen, mean_dice, rater, tuple(s.scan_id for s in selected), grid, min_sizes, stack, path
    )
    write_json(_record(result, run, data, scan_source), path)
    logger.info(
        "chose %s: mean Dice %.4f over %d scans", chosen.describe(), mean_dice, len(selected)
    )
    return result


def _record(
    result: Calibration, run: str | Path, data: str | Path, scan_source: str
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
        "run": str(Path(run).resolve()),
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
