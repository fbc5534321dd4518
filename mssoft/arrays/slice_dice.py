"""Dice pooled over chosen axial slices: a segmentation scored as a model's validation Dice is.

A model's validation Dice (:class:`mssoft.nn.losses.BinarisedDice`) sums true positives, false
positives and false negatives over every pixel of its validation slices and divides once:
``2 TP / (2 TP + FP + FN)``, and 1 when no pixel is lesion in either. To score another
segmentation (the FLAIR-threshold baseline) on exactly those slices, count TP, FP and FN per
axial slice once (:func:`axial_overlap_counts`), then pool the counts of any set of slices
(:func:`pooled_dice`). Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["axial_overlap_counts", "pooled_dice"]


def axial_overlap_counts(segmentation: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """True positives, false positives and false negatives of every axial slice.

    Parameters
    ----------
    segmentation, reference : ndarray of shape (X, Y, Z)
        Binary masks (non-zero is lesion), in the orientation the slices are indexed in (RAS:
        the last axis is axial).

    Returns
    -------
    ndarray of int64, shape (Z, 3)
        Columns TP, FP, FN (voxel counts) of slice ``z``.

    Examples
    --------
    >>> seg = np.zeros((2, 2, 2), bool); seg[0, 0, 1] = seg[1, 1, 1] = True
    >>> ref = np.zeros((2, 2, 2), bool); ref[0, 0, 1] = ref[0, 0, 0] = True
    >>> axial_overlap_counts(seg, ref).tolist()
    [[0, 0, 1], [1, 1, 0]]
    """
    seg = np.asarray(segmentation) != 0
    ref = np.asarray(reference) != 0
    if seg.shape != ref.shape or seg.ndim != 3:
        raise ValueError(
            f"segmentation and reference must be 3D of one shape, got {seg.shape} and {ref.shape}"
        )
    tp = (seg & ref).sum(axis=(0, 1))
    fp = (seg & ~ref).sum(axis=(0, 1))
    fn = (~seg & ref).sum(axis=(0, 1))
    return np.stack([tp, fp, fn], axis=1).astype(np.int64)


def pooled_dice(
    counts: Mapping[str, np.ndarray], slices: Mapping[str, Iterable[int]]
) -> float:
    """Dice pooled over the chosen slices of several scans, as a model's validation Dice.

    Parameters
    ----------
    counts : mapping of str to ndarray of shape (Z, 3)
        Per scan: :func:`axial_overlap_counts`.
    slices : mapping of str to iterable of int
        Per scan: the axial indices to pool (scans absent from ``counts`` raise KeyError).

    Returns
    -------
    float
        ``2 TP / (2 TP + FP + FN)`` over the chosen slices; 1.0 when the denominator is 0
        (no lesion pixel in either), as :class:`mssoft.nn.losses.BinarisedDice`; NaN when no
        slice is chosen.

    Examples
    --------
    >>> counts = {"a": np.array([[1, 0, 1], [2, 2, 0]])}
    >>> round(pooled_dice(counts, {"a": [0, 1]}), 4)  # TP 3, FP 2, FN 1: 6 / 9
    0.6667
    """
    total = np.zeros(3, dtype=np.int64)
    chosen = 0
    for scan, indices in slices.items():
        rows = np.asarray(list(indices), dtype=np.int64)
        if rows.size:
            total += np.asarray(counts[scan], dtype=np.int64)[rows].sum(axis=0)
            chosen += int(rows.size)
    if not chosen:
        return float("nan")
    tp2 = 2.0 * total[0]
    denominator = tp2 + total[1] + total[2]
    return float(tp2 / denominator) if denominator > 0 else 1.0
