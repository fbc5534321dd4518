"""Calibration of a predict folder's probability maps, for ``mssoft evaluate``.

For every scan, the probabilities ``<scan>_prob.nii.gz`` are compared, over the brain (non-zero
FLAIR voxels), with each rater's mask, with the mean of the raters' masks (when the scan has
several) and, for generated data, with the true lesion fraction (``truth/<scan>_truth.nii.gz``,
:func:`mssoft.files.layout.truth_path`) when it exists. The statistics are those of
:mod:`mssoft.arrays.calibration_metrics` (expected calibration error with 15 equal-width bins,
Brier score), per scan and pooled over scans (every brain voxel of every scan counted once); the
reliability diagram shows the pooled bins with their voxel counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.calibration_metrics import (
    DEFAULT_BINS,
    BinStats,
    bin_stats,
    brier_score,
    expected_calibration_error,
)
from mssoft.files.figures import pyplot, save_figure
from mssoft.files.layout import truth_path
from mssoft.files.nifti import check_same_grid, read_header, read_volume
from mssoft.files.scans import Scan

__all__ = [
    "RATERS_MEAN",
    "TRUTH",
    "reference_label",
    "CalibrationSummary",
    "scan_calibration",
    "summarise_calibration",
    "plot_reliability",
]

#: Reference labels besides ``rater<K>``.
RATERS_MEAN = "raters_mean"
TRUTH = "truth"


def reference_label(rater: int) -> str:
    """``rater<K>``: the label of rater K's mask as a calibration reference."""
    return f"rater{rater}"


@dataclass(frozen=True)
class CalibrationSummary:
    """Calibration of the probability maps against one reference.

    Attributes
    ----------
    reference : str
        ``rater<K>``, ``raters_mean`` or ``truth``.
    pooled : BinStats
        Bins over every brain voxel of every scan.
    per_scan : dict of str to BinStats
        Bins of each scan.
    """

    reference: str
    pooled: BinStats
    per_scan: dict[str, BinStats] = field(default_factory=dict)

    @property
    def ece(self) -> float:
        """Pooled expected calibration error."""
        return expected_calibration_error(self.pooled)

    @property
    def brier(self) -> float:
        """Pooled Brier score."""
        return brier_score(self.pooled)

    def scan_means(self) -> dict[str, float]:
        """Mean over scans of the per-scan ECE and Brier score."""
        eces = [expected_calibration_error(s) for s in self.per_scan.values()]
        briers = [brier_score(s) for s in self.per_scan.values()]
        return {
            "ece": float(np.nanmean(eces)) if eces else math.nan,
            "brier": float(np.nanmean(briers)) if briers else math.nan,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: pooled statistics and bins, mean over scans, and each scan's values."""
        return {
            "pooled": self.pooled.to_dict(),
            "mean_over_scans": self.scan_means(),
            "per_scan": {
                scan: {
                    "ece": expected_calibration_error(s),
                    "brier": brier_score(s),
                    "n_voxels": s.n_voxels,
                }
                for scan, s in self.per_scan.items()
            },
        }


def scan_calibration(
    scan: Scan,
    prob_file: Path,
    rater_masks: Mapping[int, np.ndarray],
    *,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, BinStats]:
    """Bins of one scan's probability map against each reference it has.

    Parameters
    ----------
    scan : Scan
        Its FLAIR file gives the brain (non-zero voxels); its ``truth`` file, if any, the true
        lesion fraction.
    prob_file : Path
        The scan's ``<scan>_prob.nii.gz`` (on the FLAIR grid).
    rater_masks : mapping of int to ndarray of bool, shape (X, Y, Z)
        The raters' masks (RAS), already read.
    n_bins : int

    Returns
    -------
    dict of str to BinStats
        Keyed ``rater<K>``, ``raters_mean`` (two raters or more), ``truth`` (when present).

    Raises
    ------
    DataError
        The probability map, FLAIR or truth are on different grids (files named).
    """
    flair_file = scan.images["flair"]
    truth_file = truth_path(flair_file, scan.scan_id)
    has_truth = truth_file.is_file()
    headers = [read_header(flair_file), read_header(prob_file)]
    if has_truth:
        headers.append(read_header(truth_file))
    check_same_grid(headers)
    prob, _ = read_volume(prob_file, dtype=np.float32)
    flair, _ = read_volume(flair_file, dtype=np.float32)
    brain = np.isfinite(flair) & (flair != 0)
    prob = np.nan_to_num(prob, nan=0.0)
    stats = {
        reference_label(r): bin_stats(prob, mask, brain, n_bins=n_bins)
        for r, mask in sorted(rater_masks.items())
    }
    if len(rater_masks) > 1:
        mean = np.mean([m.astype(np.float32) for m in rater_masks.values()], axis=0)
        stats[RATERS_MEAN] = bin_stats(prob, mean, brain, n_bins=n_bins)
    if has_truth:
        truth, _ = read_volume(truth_file, dtype=np.float32)
        fraction = np.clip(np.nan_to_num(truth, nan=0.0), 0.0, 1.0)
        stats[TRUTH] = bin_stats(prob, fraction, brain, n_bins=n_bins)
    return stats


def summarise_calibration(
    per_scan: Mapping[str, Mapping[str, BinStats]],
) -> list[CalibrationSummary]:
    """Pool the per-scan bins by reference: raters first, then the raters' mean, then the truth.

    Parameters
    ----------
    per_scan : mapping of scan id to (reference label to BinStats)
    """
    labels: list[str] = []
    for stats in per_scan.values():
        labels.extend(k for k in stats if k not in labels)
    order = sorted(
        labels, key=lambda k: (k == TRUTH, k == RATERS_MEAN, int(k[5:]) if k[5:].isdigit() else 0)
    )
    out = []
    for label in order:
        scans = {scan: s[label] for scan, s in per_scan.items() if label in s}
        pooled = sum(scans.values(), BinStats.empty(next(iter(scans.values())).n_bins))
        out.append(CalibrationSummary(label, pooled, scans))
    return out


def plot_reliability(summaries: Sequence[CalibrationSummary], path: str | Path) -> Path:
    """PNG: mean reference against mean probability per pooled bin (left), voxels per bin (right).

    Each reference is one line; the diagonal is perfect calibration; the legend gives the
    pooled ECE.
    """
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    left.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect")
    for k, summary in enumerate(summaries):
        stats = summary.pooled
        filled = stats.counts > 0
        left.plot(
            stats.mean_prob()[filled],
            stats.mean_ref()[filled],
            marker="os^Dv"[k % 5],
            color=f"C{k}",
            label=f"{summary.reference} (ECE {100 * summary.ece:.2f} %)",
        )
        centres = (stats.edges[:-1] + stats.edges[1:]) / 2
        if k == 0:  # the counts depend on the probabilities only: the same for every reference
            right.bar(centres, stats.counts, width=stats.edges[1] - stats.edges[0], color="C7")
            for x, n in zip(centres, stats.counts, strict=True):
                right.annotate(
                    str(int(n)), (x, max(int(n), 1)), fontsize=6, ha="center", va="bottom"
                )
    left.set(
        xlabel="mean predicted probability in bin",
        ylabel="mean reference in bin",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Reliability (brain voxels, {summaries[0].pooled.n_bins if summaries else 0} bins)",
    )
    right.set(xlabel="predicted probability", ylabel="voxels", yscale="log", title="Voxels per bin")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
