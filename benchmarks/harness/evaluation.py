"""Evaluation stage: post-processing plus every metric against every rater, per scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from harness.settings import BenchSettings
from harness.timing import timed
from mssoft.arrays.lesions import label_lesions
from mssoft.arrays.metrics import scan_metrics
from mssoft.arrays.postprocess import postprocess

__all__ = ["synthetic_probabilities", "bench_evaluation"]


def synthetic_probabilities(scan: Any, seed: int = 0) -> np.ndarray:
    """A plausible probability map for a generated scan: a blurred rater-2 mask plus false blobs.

    Rater 2's mask smoothed by a 1-voxel Gaussian (so the "prediction" disagrees with rater 1 as
    a model does), plus smooth noise that crosses 0.5 in small blobs all over the brain (false
    positives, some under the 18-voxel minimum).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Probabilities in [0, 1].
    """
    rng = np.random.default_rng(seed)
    blur = ndimage.gaussian_filter(scan.masks[2].astype(np.float32), 1.0)
    noise = ndimage.gaussian_filter(rng.standard_normal(scan.shape, dtype=np.float32), 1.5)
    noise /= noise.std() or 1.0
    false = 1.0 / (1.0 + np.exp(-6.0 * (noise - 3.2)))
    brain = scan.images["flair"] != 0
    return np.maximum(blur, false * brain).astype(np.float32)


def bench_evaluation(scans: Sequence[Any], settings: BenchSettings) -> dict[str, Any]:
    """Seconds per scan of what ``mssoft evaluate`` computes, without reading files.

    :func:`mssoft.arrays.postprocess.postprocess` (threshold 0.5, 18-connected lesions of more than 18
    voxels) of a :func:`synthetic_probabilities` map, then :func:`mssoft.arrays.metrics.scan_metrics`
    against each rater; ``settings.repeats`` times each, medians.

    Returns
    -------
    dict
        ``seconds_per_scan`` (post-processing + all raters' metrics; median over scans),
        ``postprocess_seconds``, ``raters`` and ``per_scan`` details.
    """
    per_scan = []
    for index, scan in enumerate(scans):
        prob = synthetic_probabilities(scan, settings.seed + index)
        post, seg = timed(lambda p=prob: postprocess(p, 0.5), settings.repeats)
        metric_seconds, dice = [], []
        for rater in sorted(scan.masks):
            timing, metrics = timed(
                lambda s=seg, r=scan.masks[rater], sp=scan.spacing: scan_metrics(
                    s, r, spacing_mm=sp
                ),
                settings.repeats,
            )
            metric_seconds.append(timing.median)
            dice.append(round(metrics.dice, 4))
        per_scan.append(
            {
                "scan": index,
                "seconds": post.median + sum(metric_seconds),
                "postprocess_seconds": post.median,
                "metrics_seconds_per_rater": metric_seconds,
                "predicted_lesions": label_lesions(seg)[1],
                "dice_per_rater": dice,
            }
        )
    return {
        "what": "postprocess(prob, 0.5) + scan_metrics against each rater, in memory; synthetic "
        "probability maps (blurred rater-2 mask + false-positive blobs)",
        "seconds_per_scan": float(np.median([s["seconds"] for s in per_scan])),
        "postprocess_seconds": float(np.median([s["postprocess_seconds"] for s in per_scan])),
        "raters": len(scans[0].masks),
        "repeats": settings.repeats,
        "per_scan": per_scan,
    }
