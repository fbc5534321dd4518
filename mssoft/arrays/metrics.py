"""Segmentation metrics against one rater, in pure NumPy (docs/design.md §7).

Per scan, with ``P`` the predicted and ``R`` the reference (rater) binary mask:

======================  =======================================================================
``dice``                ``2 |P ∩ R| / (|P| + |R|)``; 1 when both are empty, 0 when one is
``ppv``                 precision ``|P ∩ R| / |P|``; NaN when ``P`` is empty
``tpr``                 recall ``|P ∩ R| / |R|``; NaN when ``R`` is empty
``ltpr``                fraction of reference lesions overlapped by at least one predicted voxel;
                        NaN when ``R`` has no lesion
``lfpr``                fraction of predicted lesions that overlap no reference voxel (the ISBI
                        2015 "LFPR", a lesion-wise false discovery rate); NaN when ``P`` has none
``abs_volume_diff_ml``  ``|V_P - V_R|`` in millilitres
``rel_volume_diff``     ``|V_P - V_R| / V_R`` (the ISBI 2015 "VD"); NaN when ``R`` is empty
======================  =======================================================================

A lesion is a connected component (:func:`mssoft.arrays.lesions.label_lesions`, 18-connectivity by
default); metrics count every component, whatever its size. Volumes use the voxel size from the
header (``prod(spacing_mm) / 1000`` mL per voxel).

Over a set of scans, means skip NaN (the number of NaN values is reported with each mean) and the
ISBI 2015 combination is ``Dice/8 + PPV/8 + (1 - LFPR)/4 + LTPR/4 + Corr/4``, where ``Corr`` is
the Pearson correlation of predicted and reference lesion volumes across the scans. This is the
raw score, not the leaderboard's normalised one (which maps human agreement to 90).

Undefined values are NaN, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY, label_lesions
from mssoft.arrays.postprocess import bounding_box

__all__ = [
    "ScanMetrics",
    "SetSummary",
    "MEAN_FIELDS",
    "scan_metrics",
    "summarise",
    "volume_correlation",
    "isbi_score",
    "nanmean",
]


@dataclass(frozen=True)
class ScanMetrics:
    """Every metric of one scan against one rater, with the counts they are computed from.

    Attributes
    ----------
    dice, ppv, tpr, ltpr, lfpr : float
        Fractions in [0, 1] (NaN where undefined; see the module docstring).
    abs_volume_diff_ml : float
        ``|V_P - V_R|`` in mL.
    rel_volume_diff : float
        ``|V_P - V_R| / V_R`` (fraction; NaN for an empty reference).
    ref_volume_ml, pred_volume_ml : float
        Lesion volumes in mL.
    ref_voxels, pred_voxels, overlap_voxels : int
        ``|R|``, ``|P|``, ``|P ∩ R|``.
    ref_lesions, pred_lesions : int
        Number of connected components of ``R`` and ``P``.
    detected_ref_lesions : int
        Reference lesions with at least one predicted voxel (LTPR numerator).
    false_pred_lesions : int
        Predicted lesions with no reference voxel (LFPR numerator).
    voxel_volume_ml : float
        Volume of one voxel in mL.
    """

    dice: float
    ppv: float
    tpr: float
    ltpr: float
    lfpr: float
    abs_volume_diff_ml: float
    rel_volume_diff: float
    ref_volume_ml: float
    pred_volume_ml: float
    ref_voxels: int
    pred_voxels: int
    overlap_voxels: int
    ref_lesions: int
    pred_lesions: int
    detected_ref_lesions: int
    false_pred_lesions: int
    voxel_volume_ml: float

    def to_dict(self) -> dict[str, float | int]:
        """Field name to value, in declaration order."""
        return asdict(self)


#: Per-scan fields averaged over a set of scans.
MEAN_FIELDS = (
    "dice",
    "ppv",
    "tpr",
    "ltpr",
    "lfpr",
    "abs_volume_diff_ml",
    "rel_volume_diff",
    "ref_volume_ml",
    "pred_volume_ml",
    "ref_lesions",
    "pred_lesions",
)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def scan_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    *,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> ScanMetrics:
    """All metrics of a predicted mask against a reference mask.

    Parameters
    ----------
    pred : ndarray of shape (X, Y, Z)
        Predicted segmentation; non-zero voxels are lesion.
    ref : ndarray of shape (X, Y, Z)
        Reference (one rater's) segmentation; non-zero voxels are lesion.
    spacing_mm : sequence of 3 floats, optional
        Voxel size in millimetres.
    connectivity : {6, 18, 26}, optional
        Lesion definition for LTPR, LFPR and the lesion counts.

    Returns
    -------
    ScanMetrics

    Raises
    ------
    ValueError
        The masks differ in shape or are not 3D, or the spacing is not 3 positive numbers.

    Examples
    --------
    >>> ref = np.zeros((4, 4, 4), bool); ref[0, 0, :2] = True
    >>> pred = np.zeros((4, 4, 4), bool); pred[0, 0, 1:3] = True
    >>> m = scan_metrics(pred, ref)
    >>> m.dice, m.ppv, m.tpr, m.ltpr, m.lfpr
    (0.5, 0.5, 0.5, 1.0, 0.0)
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(
            f"`pred` and `ref` must be 3D of one shape, got {pred.shape} and {ref.shape}"
        )
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(
            f"Invalid value for `spacing_mm`. Expected 3 positive numbers. Received: {spacing_mm}"
        )
    voxel_ml = float(np.prod(spacing)) / 1000.0
    pred = pred if pred.dtype == bool else pred != 0
    ref = ref if ref.dtype == bool else ref != 0

    # Everything is counted inside the box holding both masks: identical to the whole volume.
    box = bounding_box(pred | ref)
    if box is None:
        n_pred = n_ref = overlap = 0
        pred_lesions = ref_lesions = detected = false = 0
    else:
        p, r = pred[box], ref[box]
        n_pred, n_ref = int(np.count_nonzero(p)), int(np.count_nonzero(r))
        overlap = int(np.count_nonzero(p & r))
        pred_labels, pred_lesions = label_lesions(p, connectivity=connectivity)
        ref_labels, ref_lesions = label_lesions(r, connectivity=connectivity)
        # reference lesions touched by the prediction; predicted lesions touched by the reference
        detected = int(np.count_nonzero(np.bincount(ref_labels[p], minlength=ref_lesions + 1)[1:]))
        touched = int(np.count_nonzero(np.bincount(pred_labels[r], minlength=pred_lesions + 1)[1:]))
        false = pred_lesions - touched

    pred_ml, ref_ml = n_pred * voxel_ml, n_ref * voxel_ml
    return ScanMetrics(
        dice=1.0 if n_pred + n_ref == 0 else 2.0 * overlap / (n_pred + n_ref),
        ppv=_ratio(overlap, n_pred),
        tpr=_ratio(overlap, n_ref),
        ltpr=_ratio(detected, ref_lesions),
        lfpr=_ratio(false, pred_lesions),
        abs_volume_diff_ml=abs(pred_ml - ref_ml),
        rel_volume_diff=_ratio(abs(n_pred - n_ref), n_ref),
        ref_volume_ml=ref_ml,
        pred_volume_ml=pred_ml,
        ref_voxels=n_ref,
        pred_voxels=n_pred,
        overlap_voxels=overlap,
        ref_lesions=ref_lesions,
        pred_lesions=pred_lesions,
        detected_ref_lesions=detected,
        false_pred_lesions=false,
        voxel_volume_ml=voxel_ml,
    )


def nanmean(values: Sequence[float] | np.ndarray) -> tuple[float, int]:
    """Mean of the non-NaN values and the number of NaN values (no warning when all are NaN).

    Returns
    -------
    mean : float
        NaN when no value is finite.
    n_nan : int
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    nan = np.isnan(array)
    n_nan = int(nan.sum())
    if n_nan == array.size:
        return math.nan, n_nan
    return float(array[~nan].mean()), n_nan


def volume_correlation(pred_ml: Sequence[float], ref_ml: Sequence[float]) -> float:
    """Pearson correlation of predicted and reference lesion volumes across scans.

    Parameters
    ----------
    pred_ml, ref_ml : sequence of float, length N
        Lesion volume of each scan.

    Returns
    -------
    float
        In [-1, 1]; NaN for fewer than 2 scans or when either volume is the same in every scan.
    """
    x = np.asarray(pred_ml, dtype=np.float64)
    y = np.asarray(ref_ml, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"`pred_ml` and `ref_ml` must be 1D of one length, got {x.shape} and {y.shape}"
        )
    if x.size < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        return math.nan
    return float(np.clip(float(dx @ dy) / denominator, -1.0, 1.0))


def isbi_score(dice: float, ppv: float, lfpr: float, ltpr: float, corr: float) -> float:
    """The ISBI 2015 raw combination ``Dice/8 + PPV/8 + (1 - LFPR)/4 + LTPR/4 + Corr/4``.

    All arguments are fractions (means over scans; ``corr`` across scans). NaN if any is NaN.
    """
    return dice / 8 + ppv / 8 + (1.0 - lfpr) / 4 + ltpr / 4 + corr / 4


@dataclass(frozen=True)
class SetSummary:
    """Metrics of a set of scans against one rater.

    Attributes
    ----------
    n_scans : int
    means : dict of str to float
        NaN-skipping mean over scans of each field of :data:`MEAN_FIELDS`.
    nan_counts : dict of str to int
        Scans where the field was undefined (left out of its mean).
    volume_correlation : float
        Pearson correlation of predicted and reference lesion volumes across scans.
    isbi_terms : dict of str to float
        ``dice/8``, ``ppv/8``, ``(1-lfpr)/4``, ``ltpr/4``, ``corr/4`` from the means.
    isbi_score : float
        Sum of the terms (NaN if one is NaN).
    """

    n_scans: int
    means: dict[str, float]
    nan_counts: dict[str, int]
    volume_correlation: float
    isbi_terms: dict[str, float]
    isbi_score: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dictionary."""
        return asdict(self)


def summarise(metrics: Sequence[ScanMetrics]) -> SetSummary:
    """Means over scans, the volume correlation and the ISBI 2015 raw score.

    Parameters
    ----------
    metrics : sequence of ScanMetrics
        One per scan, all against the same rater.

    Returns
    -------
    SetSummary
        The ISBI terms use the NaN-skipping means; with no NaN this equals the mean over scans of
        the per-scan combination.
    """
    means: dict[str, float] = {}
    nan_counts: dict[str, int] = {}
    for name in MEAN_FIELDS:
        means[name], nan_counts[name] = nanmean([getattr(m, name) for m in metrics])
    corr = volume_correlation(
        [m.pred_volume_ml for m in metrics], [m.ref_volume_ml for m in metrics]
    )
    terms = {
        "dice/8": means["dice"] / 8,
        "ppv/8": means["ppv"] / 8,
        "(1-lfpr)/4": (1.0 - means["lfpr"]) / 4,
        "ltpr/4": means["ltpr"] / 4,
        "corr/4": corr / 4,
    }
    score = isbi_score(means["dice"], means["ppv"], means["lfpr"], means["ltpr"], corr)
    return SetSummary(len(metrics), means, nan_counts, corr, terms, score)
