"""The FLAIR-threshold baseline on scans on disk: calibrate, segment, score, and validation Dice.

Every model mssoft trains is reported beside this trivial baseline
(:mod:`mssoft.arrays.flair_baseline`: one threshold on the brain-z-scored FLAIR, then the
models' post-processing). Its threshold is calibrated on the training scans against the training
rater (mean per-scan Dice, as a model's probability threshold), it segments the held-out scans
and is scored there against every rater with :func:`mssoft.arrays.metrics.scan_metrics`.

A model counts as *learned* when its validation Dice beats the baseline's Dice on exactly the
same validation slices (:func:`validation_dice`): the baseline segments each training volume, and
its TP, FP and FN on the run's validation slices (``split.json``) are pooled as
:class:`mssoft.nn.losses.BinarisedDice` pools the model's.

Volumes are read in RAS orientation, as training reads them, so axial slice ``z`` here is slice
``z`` of ``split.json``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.flair_baseline import (
    FLAIR_THRESHOLD_GRID,
    FlairThreshold,
    calibrate_flair_threshold,
)
from mssoft.arrays.metrics import MEAN_FIELDS, ScanMetrics, scan_metrics
from mssoft.arrays.slice_dice import axial_overlap_counts, pooled_dice
from mssoft.arrays.soft_masks import rater_share
from mssoft.files.layout import SPLIT_NAME
from mssoft.files.scans import Scan, load_scan, read_mask

__all__ = [
    "BASELINE_NAME",
    "has_flair",
    "read_flair",
    "calibrate_on_scans",
    "segment_scans",
    "score_against_raters",
    "metric_row",
    "target_name",
    "rater_targets",
    "overlap_counts",
    "validation_slices",
    "validation_dice",
    "run_validation_dice",
]

logger = logging.getLogger(__name__)

#: How reports name the baseline.
BASELINE_NAME = "FLAIR threshold"


def has_flair(scans: Sequence[Scan]) -> bool:
    """True when every scan has a FLAIR image (the baseline needs it)."""
    return bool(scans) and all("flair" in s.images for s in scans)


def read_flair(scan: Scan) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The scan's raw FLAIR in RAS orientation and its voxel size in mm.

    Returns
    -------
    flair : ndarray of float, shape (X, Y, Z)
    spacing_mm : tuple of 3 float
    """
    loaded = load_scan(scan, modalities=("flair",))
    return loaded.image[..., 0], tuple(float(v) for v in loaded.meta.spacing_mm)


def calibrate_on_scans(
    scans: Sequence[Scan],
    rater: int,
    thresholds: Sequence[float] | np.ndarray = FLAIR_THRESHOLD_GRID,
) -> FlairThreshold:
    """Choose the baseline's threshold on ``scans`` by mean per-scan Dice against ``rater``.

    Parameters
    ----------
    scans : sequence of Scan
        Training scans, each with a FLAIR image and a mask of ``rater``.
    rater : int
        The rater the models are trained on.
    thresholds : sequence of float, optional
        z-score grid (default 1.0 to 6.0 by 0.1).
    """
    flairs = [read_flair(s)[0] for s in scans]
    references = [read_mask(s.mask_path(rater), s.label_map) for s in scans]
    baseline = calibrate_flair_threshold(flairs, references, thresholds)
    logger.info(
        "FLAIR-threshold baseline: z >= %g on %d training scans (mean Dice %.3f against rater %d)",
        baseline.threshold,
        len(scans),
        baseline.mean_dice,
        rater,
    )
    return baseline


def segment_scans(
    baseline: FlairThreshold, scans: Sequence[Scan]
) -> dict[str, tuple[np.ndarray, tuple[float, float, float]]]:
    """The baseline's segmentation of every scan, with its voxel size.

    Returns
    -------
    dict of str to (ndarray of bool, shape (X, Y, Z), spacing in mm)
        Keyed by scan id, RAS orientation.
    """
    out = {}
    for scan in scans:
        flair, spacing = read_flair(scan)
        out[scan.scan_id] = (baseline.segment(flair), spacing)
    return out


def metric_row(metrics: ScanMetrics) -> dict[str, float]:
    """The per-scan metric fields every report uses (:data:`mssoft.arrays.metrics.MEAN_FIELDS`)."""
    return {k: v for k, v in metrics.to_dict().items() if k in MEAN_FIELDS}


def score_against_raters(
    segmentations: Mapping[str, tuple[np.ndarray, tuple[float, float, float]]],
    scans: Sequence[Scan],
) -> list[tuple[str, int, ScanMetrics]]:
    """Every segmented scan against every rater mask it has.

    Returns
    -------
    list of (scan id, rater, ScanMetrics)
        In scan order, then rater order.
    """
    rows = []
    for scan in scans:
        segmentation, spacing = segmentations[scan.scan_id]
        for rater in sorted(scan.masks):
            reference = read_mask(scan.mask_path(rater), scan.label_map)
            metrics = scan_metrics(segmentation, reference, spacing_mm=spacing)
            rows.append((scan.scan_id, rater, metrics))
    return rows


def target_name(raters: Sequence[int]) -> str:
    """``rater1`` for one rater, ``raters1-2`` for the share of several (a validation target)."""
    raters = tuple(raters)
    return f"rater{raters[0]}" if len(raters) == 1 else "raters" + "-".join(map(str, raters))


def rater_targets(scans: Sequence[Scan], raters: Sequence[int]) -> dict[str, np.ndarray]:
    """The validation target of a model trained on ``raters``, binarised at 0.5, per scan.

    One rater: that rater's mask (a soft mask ``M + gamma * ring`` with ``gamma < 0.5`` binarises
    to it too). Several raters: the voxels at least half of them marked (their share >= 0.5).
    """
    out = {}
    for scan in scans:
        masks = [read_mask(scan.mask_path(r), scan.label_map) for r in raters]
        out[scan.scan_id] = masks[0] if len(masks) == 1 else rater_share(masks) >= 0.5
    return out


def overlap_counts(
    segmentations: Mapping[str, tuple[np.ndarray, Any]], targets: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per scan of ``targets``: TP, FP, FN of each axial slice, shape (Z, 3)."""
    return {
        scan: axial_overlap_counts(segmentations[scan][0], target)
        for scan, target in targets.items()
    }


def validation_slices(run_dir: str | Path) -> dict[str, list[int]] | None:
    """Axial slices a run's validation Dice is computed on (its training slices without a
    validation part), per scan, from its ``split.json``; None without that file."""
    path = Path(run_dir) / SPLIT_NAME
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    parts = record.get("slices", record)  # {scan_id: {"train": [z, ...], "val": [z, ...]}}
    part = "val" if any(p.get("val") for p in parts.values()) else "train"
    return {scan: list(p.get(part, [])) for scan, p in parts.items() if p.get(part)}


def validation_dice(counts: Mapping[str, np.ndarray], run_dir: str | Path) -> float:
    """The baseline's Dice pooled over the validation slices of the run in ``run_dir``.

    Parameters
    ----------
    counts : mapping of str to ndarray of shape (Z, 3)
        :func:`overlap_counts` of the baseline against the run's (binarised) training target, for
        at least every scan of its validation slices.
    run_dir : path
        A ``mssoft fit`` run folder.

    Returns
    -------
    float
        NaN when the run has no ``split.json`` or a validation scan has no counts.
    """
    slices = validation_slices(run_dir)
    if slices is None or any(scan not in counts for scan in slices):
        return math.nan
    return pooled_dice(counts, slices)


def run_validation_dice(
    segmentations: Mapping[str, tuple[np.ndarray, Any]],
    scans: Sequence[Scan],
    run_dir: str | Path,
    raters: Sequence[int] = (1,),
) -> float:
    """The baseline's Dice on a run's validation slices against the target of ``raters``.

    Parameters
    ----------
    segmentations : mapping
        :func:`segment_scans` of (at least) the run's training scans.
    scans : sequence of Scan
        The run's training scans (those with a mask of every rater in ``raters``).
    run_dir : path
        The ``mssoft fit`` run folder (its ``split.json``).
    raters : sequence of int
        The raters the run was trained on (:func:`rater_targets`).
    """
    usable = [s for s in scans if s.scan_id in segmentations and all(r in s.masks for r in raters)]
    return validation_dice(overlap_counts(segmentations, rater_targets(usable, raters)), run_dir)
