"""Soft-mask stage: :func:`mssoft.arrays.soft_masks.soft_mask` against a plain iterative-dilation baseline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from harness.data import describe_scan
from harness.settings import BenchSettings
from harness.timing import timed
from mssoft.arrays.soft_masks import (
    FlairThreshold,
    parse_flair_threshold,
    resolve_flair_threshold,
    soft_mask,
)

__all__ = ["baseline_soft_mask", "bench_soft_masks"]


def baseline_soft_mask(
    mask: np.ndarray,
    flair: np.ndarray | None = None,
    *,
    ratio: float = 1.2,
    gamma: float = 0.3,
    flair_threshold: FlairThreshold = "p50",
) -> np.ndarray:
    """The plain way to build a soft mask: iterative binary dilation until the target volume.

    The mask is dilated with the 6-connected structuring element of ``scipy.ndimage``, one step
    at a time over the whole volume, until it holds ``round(ratio * |M|)`` voxels; the last shell
    is cut in array-index order to hit the target exactly. Distances are in voxels (the spacing
    is ignored) and the cut favours the lesions with the lowest indices: this is the reference for
    speed, not the method (:func:`mssoft.arrays.soft_masks.soft_mask`). The FLAIR exclusion is the method's.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary expert mask.
    flair : ndarray of shape (X, Y, Z) or None
        FLAIR intensities (needed unless ``flair_threshold`` is None).
    ratio, gamma, flair_threshold
        As :func:`mssoft.arrays.soft_masks.soft_mask`.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        1 in the mask, ``gamma`` on the kept ring, 0 elsewhere.
    """
    binary = np.asarray(mask) != 0
    size = int(np.count_nonzero(binary))
    target = round(ratio * size)
    grown = binary
    structure = ndimage.generate_binary_structure(3, 1)
    while size < target:
        bigger = ndimage.binary_dilation(grown, structure)
        new_size = int(np.count_nonzero(bigger))
        if new_size == size:
            break
        if new_size > target:
            shell = np.flatnonzero(bigger & ~grown)[: target - size]
            grown = grown.copy()
            grown.ravel()[shell] = True
            break
        grown, size = bigger, new_size
    ring = grown & ~binary
    threshold = parse_flair_threshold(flair_threshold)
    if threshold is not None:
        if flair is None:
            raise ValueError("`flair` is required unless flair_threshold is None")
        flair = np.asarray(flair)
        ring &= flair >= resolve_flair_threshold(flair, threshold)
    out = binary.astype(np.float32)
    out[ring] = np.float32(gamma)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def bench_soft_masks(
    scans: Sequence[Any], settings: BenchSettings
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Seconds per scan of the soft mask (120 %, gamma 0.3, FLAIR >= p50) and of the baseline.

    Both run in memory on rater 1's mask of every scan, ``settings.repeats`` times each.

    Returns
    -------
    record : dict
        ``seconds_per_scan`` and ``baseline_seconds_per_scan`` (median over scans of the median
        over repetitions), ``speedup_vs_baseline`` (baseline / ours) and ``per_scan`` details:
        lesion load, ring sizes and the Dice of the two rings (they are not the same voxels).
    soft_masks : list of ndarray of float32, shape (X, Y, Z)
        The soft masks, the training targets of the pipeline and training stages.
    """
    per_scan, softs = [], []
    for index, scan in enumerate(scans):
        mask, flair, spacing = scan.masks[1], scan.images["flair"], scan.spacing
        ours, soft = timed(
            lambda m=mask, f=flair, s=spacing: soft_mask(m, f, spacing=s), settings.repeats
        )
        base, plain = timed(lambda m=mask, f=flair: baseline_soft_mask(m, f), settings.repeats)
        ring, plain_ring = soft == np.float32(0.3), plain == np.float32(0.3)
        per_scan.append(
            {
                **describe_scan(scan, index),
                "seconds": ours.median,
                "baseline_seconds": base.median,
                "ring_voxels": int(np.count_nonzero(ring)),
                "baseline_ring_voxels": int(np.count_nonzero(plain_ring)),
                "ring_dice_vs_baseline": round(_dice(ring, plain_ring), 4),
            }
        )
        softs.append(soft)
    seconds = float(np.median([s["seconds"] for s in per_scan]))
    baseline = float(np.median([s["baseline_seconds"] for s in per_scan]))
    record = {
        "what": "mssoft.arrays.soft_masks.soft_mask(mask, flair, spacing) in memory: ratio 1.2, gamma 0.3, "
        "FLAIR >= p50, Euclidean distance in mm, exact target count",
        "baseline": "iterative 6-connected scipy.ndimage.binary_dilation over the whole volume "
        "until ratio * |M| voxels, last shell cut in index order; same FLAIR exclusion",
        "seconds_per_scan": seconds,
        "baseline_seconds_per_scan": baseline,
        "speedup_vs_baseline": baseline / seconds if seconds > 0 else math.nan,
        "repeats": settings.repeats,
        "per_scan": per_scan,
    }
    return record, softs
