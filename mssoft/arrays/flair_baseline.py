"""The trivial baseline every model is compared with: one threshold on the brain-z-scored FLAIR.

A lesion is where the FLAIR, z-scored over the scan's brain (its non-zero voxels), is at least
``t`` (the rule of :data:`mssoft.arrays.postprocess.THRESHOLD_RULE`, applied to z-scores instead of
probabilities), followed by the post-processing of every model's output: connected components of
more than ``min_size`` voxels are kept (:func:`mssoft.arrays.postprocess.keep_large_lesions`).
One ``t`` serves a whole set of scans; it is chosen on training scans by the mean per-scan Dice
over a grid (:data:`FLAIR_THRESHOLD_GRID`, 1.0 to 6.0 in steps of 0.1), exactly as a model's
probability threshold is calibrated (:func:`mssoft.arrays.threshold_search.dice_curve`).

On data where this baseline is as good as a trained U-Net, the U-Net has learned nothing a single
intensity threshold would not give, and a soft-label effect measured there says nothing about
real scans (where the baseline scores far below a trained network).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mssoft.arrays.intensity import brain_mask
from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY, DEFAULT_MIN_SIZE
from mssoft.arrays.postprocess import keep_large_lesions
from mssoft.arrays.threshold_search import dice_curve

__all__ = [
    "FLAIR_THRESHOLD_GRID",
    "FlairThreshold",
    "flair_zscore",
    "flair_dice_curve",
    "calibrate_flair_threshold",
    "segment_flair_threshold",
]

#: z-score thresholds searched for the baseline: 1.0, 1.1, ..., 6.0.
FLAIR_THRESHOLD_GRID: np.ndarray = np.round(np.arange(10, 61) / 10.0, 10)


@dataclass(frozen=True)
class FlairThreshold:
    """A calibrated FLAIR-threshold baseline.

    Attributes
    ----------
    threshold : float
        z-score threshold: lesion where the brain-z-scored FLAIR is ``>= threshold``.
    mean_dice : float
        Mean per-scan Dice over the calibration scans at ``threshold``.
    min_size, connectivity : int
        Post-processing: keep connected components (``connectivity``) of more than ``min_size``
        voxels.
    """

    threshold: float
    mean_dice: float
    min_size: int = DEFAULT_MIN_SIZE
    connectivity: int = DEFAULT_CONNECTIVITY

    def segment(self, flair: np.ndarray) -> np.ndarray:
        """Segment one raw FLAIR volume (see :func:`segment_flair_threshold`)."""
        return segment_flair_threshold(
            flair, self.threshold, min_size=self.min_size, connectivity=self.connectivity
        )

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"FLAIR z >= {self.threshold:g} (z over the brain), then {self.connectivity}-connected "
            f"components of > {self.min_size} voxels"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "threshold": self.threshold,
            "mean_dice": self.mean_dice,
            "min_size": self.min_size,
            "connectivity": self.connectivity,
            "rule": self.describe(),
        }


def flair_zscore(flair: np.ndarray) -> np.ndarray:
    """Z-score a FLAIR volume over its brain (non-zero, finite voxels); 0 outside.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities in any unit (skull-stripped: zero outside the brain).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)

    Examples
    --------
    >>> flair = np.zeros((2, 2, 2)); flair[0] = [[1.0, 2.0], [3.0, 4.0]]
    >>> z = flair_zscore(flair)
    >>> round(float(z[0].mean()), 6), float(z[1].max())
    (0.0, 0.0)
    """
    flair = np.asarray(flair)
    if flair.ndim != 3:
        raise ValueError(f"`flair` must be 3D, got shape {flair.shape}")
    inside = brain_mask(flair)
    out = np.zeros(flair.shape, dtype=np.float32)
    values = flair[inside].astype(np.float64)
    if values.size:
        std = values.std()
        out[inside] = ((values - values.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
    return out


def segment_flair_threshold(
    flair: np.ndarray,
    threshold: float,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """The baseline's segmentation of one scan.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        Raw FLAIR (z-scored here over its brain).
    threshold : float
        z-score threshold.
    min_size, connectivity : int, optional
        Post-processing, as every model's.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
    """
    z = flair_zscore(flair)
    return keep_large_lesions(
        (z >= np.float32(threshold)) & (z != 0), min_size=min_size, connectivity=connectivity
    )


def flair_dice_curve(
    flair: np.ndarray,
    reference: np.ndarray,
    thresholds: Sequence[float] | np.ndarray = FLAIR_THRESHOLD_GRID,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """Dice of the baseline against a reference at every threshold.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        Raw FLAIR.
    reference : ndarray of shape (X, Y, Z)
        Binary reference mask.
    thresholds : sequence of float, shape (T,), optional
        Strictly increasing, all > 0 (so voxels outside the brain, z = 0, never count).

    Returns
    -------
    ndarray of float64, shape (T,)
        ``curve[j]`` is the Dice of ``segment_flair_threshold(flair, thresholds[j])``.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.size and thresholds.min() <= 0:
        raise ValueError("FLAIR-threshold baseline thresholds must be > 0")
    return dice_curve(
        flair_zscore(flair), reference, thresholds, min_size=min_size, connectivity=connectivity
    )


def calibrate_flair_threshold(
    flairs: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    thresholds: Sequence[float] | np.ndarray = FLAIR_THRESHOLD_GRID,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> FlairThreshold:
    """Choose the one threshold with the highest mean per-scan Dice over training scans.

    Parameters
    ----------
    flairs : sequence of ndarray, each of shape (X, Y, Z)
        Raw FLAIR volumes (shapes may differ between scans).
    references : sequence of ndarray, each of shape (X, Y, Z)
        Binary reference masks, one per FLAIR.
    thresholds : sequence of float, shape (T,), optional
    min_size, connectivity : int, optional

    Returns
    -------
    FlairThreshold
        Ties go to the lowest threshold.
    """
    if len(flairs) == 0 or len(flairs) != len(references):
        raise ValueError(
            f"need one reference per FLAIR and at least one scan, got {len(flairs)} FLAIR "
            f"volumes and {len(references)} references"
        )
    thresholds = np.asarray(thresholds, dtype=np.float64)
    curves = np.stack(
        [
            flair_dice_curve(f, r, thresholds, min_size=min_size, connectivity=connectivity)
            for f, r in zip(flairs, references, strict=True)
        ]
    )
    mean = curves.mean(axis=0)
    best = int(np.argmax(mean))
    return FlairThreshold(float(thresholds[best]), float(mean[best]), min_size, connectivity)
