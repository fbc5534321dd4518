"""Searching the binarisation threshold: the one maximising the mean per-scan Dice (pure NumPy).

Each calibration scan is predicted once; its Dice against the rater is then computed after
post-processing (:func:`mssoft.arrays.postprocess.postprocess`) at every threshold of a grid
(default
0.01, 0.02, ..., 0.99) and every candidate minimum lesion size. The probabilities are not kept:
only the Dice curves are.

The search is exact and fast because post-processing is monotone in the threshold. A lesion kept at
threshold ``t2 > t1`` is a connected part of ``{prob >= t2}``, hence of one component of
``{prob >= t1}`` that is at least as large, which was kept at ``t1``. So the post-processed mask at
``t2`` is the post-processed ``{prob >= t2} ∩ kept(t1)``: each lesion kept at the lowest threshold
is followed in its own small bounding box, relabelled (with the same
:func:`mssoft.arrays.lesions.remove_small_lesions` that ``predict`` uses) only at the thresholds
where it
loses voxels. On a 181 x 217 x 181 volume the 91-threshold curve costs about the time of 7
whole-volume post-processings. Ties in the mean Dice go to the first candidate: the first minimum
size listed, then the lowest threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mssoft.arrays.lesions import (
    DEFAULT_CONNECTIVITY,
    DEFAULT_MIN_SIZE,
    label_lesions,
    remove_small_lesions,
)
from mssoft.arrays.postprocess import Binarisation, binarise, bounding_box, keep_large_lesions
from mssoft.errors import ConfigError

__all__ = [
    "threshold_grid",
    "grid_edge",
    "parse_min_sizes",
    "dice_curve",
    "dice_curves",
    "choose_binarisation",
]


def grid_edge(threshold: float, grid: Sequence[float] | np.ndarray) -> str | None:
    """``"lower"`` or ``"upper"`` when ``threshold`` is the first or last value of ``grid``.

    A chosen threshold on an end of its grid may be cut off by the grid: the Dice could still be
    rising beyond it. A one-value grid is on both ends; it reports ``"lower"``.

    Parameters
    ----------
    threshold : float
        The chosen threshold (a value of ``grid``).
    grid : sequence of float, shape (T,)
        The increasing thresholds searched.

    Returns
    -------
    str or None
    """
    values = np.asarray(grid, dtype=np.float64)
    if values.size == 0:
        return None
    if math.isclose(threshold, float(values[0]), abs_tol=1e-9):
        return "lower"
    if math.isclose(threshold, float(values[-1]), abs_tol=1e-9):
        return "upper"
    return None


def threshold_grid(start: float = 0.01, stop: float = 0.99, step: float = 0.01) -> np.ndarray:
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
        Post-processing (:func:`mssoft.arrays.postprocess.postprocess`).

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
