"""Calibration of lesion probabilities: expected calibration error, Brier score, reliability bins.

Pure NumPy. A probability map ``p`` is compared with a reference ``y`` in [0, 1] (a rater's binary
mask, the mean of several raters' masks, or a true lesion fraction) over a set of voxels (the
brain: non-zero FLAIR). The probabilities are put in ``n_bins`` equal-width bins on [0, 1]
(bin ``k`` holds ``k/n <= p < (k+1)/n``, the last bin also ``p == 1``):

* expected calibration error ``ECE = sum_k (N_k / N) * |mean_k(p) - mean_k(y)|``;
* Brier score ``mean((p - y)**2)``.

:class:`BinStats` holds the sums that both need, so per-scan statistics add up to pooled ones
(pooled over scans = every brain voxel of every scan counted once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_BINS", "BinStats", "bin_stats", "expected_calibration_error", "brier_score"]

#: Number of equal-width bins on [0, 1].
DEFAULT_BINS = 15


@dataclass(frozen=True)
class BinStats:
    """Per-bin sums of a probability map against a reference.

    Attributes
    ----------
    counts : ndarray of int64, shape (B,)
        Voxels per bin.
    sum_prob, sum_ref : ndarray of float64, shape (B,)
        Sums of the probabilities and of the reference values in each bin.
    sum_sq_error : float
        ``sum((p - y)**2)`` over all voxels.
    """

    counts: np.ndarray
    sum_prob: np.ndarray
    sum_ref: np.ndarray
    sum_sq_error: float

    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    @property
    def n_voxels(self) -> int:
        return int(self.counts.sum())

    @property
    def edges(self) -> np.ndarray:
        """Bin edges, shape (B + 1,)."""
        return np.linspace(0.0, 1.0, self.n_bins + 1)

    def mean_prob(self) -> np.ndarray:
        """Mean probability per bin (NaN for an empty bin), shape (B,)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sum_prob / self.counts, np.nan)

    def mean_ref(self) -> np.ndarray:
        """Mean reference value per bin (NaN for an empty bin), shape (B,)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sum_ref / self.counts, np.nan)

    def __add__(self, other: BinStats) -> BinStats:
        if self.n_bins != other.n_bins:
            raise ValueError(f"cannot pool {self.n_bins} bins with {other.n_bins} bins")
        return BinStats(
            self.counts + other.counts,
            self.sum_prob + other.sum_prob,
            self.sum_ref + other.sum_ref,
            self.sum_sq_error + other.sum_sq_error,
        )

    @classmethod
    def empty(cls, n_bins: int = DEFAULT_BINS) -> BinStats:
        return cls(np.zeros(n_bins, np.int64), np.zeros(n_bins), np.zeros(n_bins), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ECE, Brier, voxel count and the bins (edges, counts, means)."""
        return {
            "ece": expected_calibration_error(self),
            "brier": brier_score(self),
            "n_voxels": self.n_voxels,
            "bin_edges": self.edges.tolist(),
            "bin_counts": self.counts.tolist(),
            "bin_mean_prob": [_finite_or_none(v) for v in self.mean_prob()],
            "bin_mean_ref": [_finite_or_none(v) for v in self.mean_ref()],
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def bin_stats(
    prob: np.ndarray,
    reference: np.ndarray,
    where: np.ndarray | None = None,
    *,
    n_bins: int = DEFAULT_BINS,
) -> BinStats:
    """Bin a probability map against a reference.

    Parameters
    ----------
    prob : ndarray of shape (X, Y, Z)
        Probabilities in [0, 1] (clipped into it).
    reference : ndarray of shape (X, Y, Z)
        Reference in [0, 1]: a binary mask (bool or 0/1), a mean of masks or a lesion fraction.
    where : ndarray of bool, shape (X, Y, Z), optional
        Voxels to count (e.g. the brain); default every voxel.
    n_bins : int
        Equal-width bins on [0, 1].

    Returns
    -------
    BinStats

    Raises
    ------
    ValueError
        Shapes differ, or ``n_bins < 1``.
    """
    prob = np.asarray(prob)
    reference = np.asarray(reference)
    if prob.shape != reference.shape or (where is not None and np.shape(where) != prob.shape):
        raise ValueError(
            f"shapes differ: prob {prob.shape}, reference {reference.shape}"
            + ("" if where is None else f", where {np.shape(where)}")
        )
    if int(n_bins) < 1:
        raise ValueError(f"Invalid value for `n_bins`. Expected >= 1. Received: {n_bins}")
    p = np.clip(prob[where] if where is not None else prob.ravel(), 0.0, 1.0).astype(np.float64)
    y = (reference[where] if where is not None else reference.ravel()).astype(np.float64)
    index = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return BinStats(
        np.bincount(index, minlength=n_bins).astype(np.int64),
        np.bincount(index, weights=p, minlength=n_bins),
        np.bincount(index, weights=y, minlength=n_bins),
        float(np.sum((p - y) ** 2)),
    )


def expected_calibration_error(stats: BinStats) -> float:
    """``sum_k (N_k / N) |mean_k(p) - mean_k(y)|``; NaN without voxels.

    Examples
    --------
    A constant map 0.2 against a reference with 10 % lesion: one bin, ECE ``|0.2 - 0.1|``.

    >>> y = np.zeros(100); y[:10] = 1
    >>> round(expected_calibration_error(bin_stats(np.full(100, 0.2), y)), 6)
    0.1
    """
    n = stats.n_voxels
    if n == 0:
        return float("nan")
    return float(np.sum(np.abs(stats.sum_prob - stats.sum_ref)) / n)


def brier_score(stats: BinStats) -> float:
    """``mean((p - y)**2)`` over the binned voxels; NaN without voxels."""
    n = stats.n_voxels
    return float(stats.sum_sq_error / n) if n else float("nan")
