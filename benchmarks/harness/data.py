"""The generated scans every stage works on, and the training slices cut from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.settings import BenchSettings
from mssoft.arrays.lesions import label_lesions

__all__ = ["MODALITIES", "make_bench_scans", "describe_scan", "scan_image", "slice_set_from_scans"]

#: Channel order of the model (FLAIR first, as ``mssoft fit`` orders them).
MODALITIES = ("flair", "t1", "t2", "pd")


def make_bench_scans(settings: BenchSettings) -> list[Any]:
    """Scans (:class:`mssoft.synthetic.SyntheticScan`) of patients ``seed``, ``seed+1``."""
    from mssoft.synthetic import make_scan

    return [
        make_scan(
            settings.shape,
            seed=settings.seed + i,
            n_lesions=settings.n_lesions,
            lesion_size=settings.lesion_size,
        )
        for i in range(settings.scans)
    ]


def describe_scan(scan: Any, index: int) -> dict[str, Any]:
    """Grid, rater-1 lesion volume (mL), 18-connected lesions and share of periventricular ones."""
    mask = scan.masks[1]
    kinds = [lesion.kind for lesion, _ in scan.lesions]
    voxel_ml = float(np.prod(scan.spacing)) / 1000.0
    return {
        "scan": index,
        "shape": list(scan.shape),
        "lesion_ml": round(float(np.count_nonzero(mask)) * voxel_ml, 3),
        "lesions": label_lesions(mask)[1],
        "periventricular_fraction": round(kinds.count("periventricular") / max(len(kinds), 1), 3),
    }


def scan_image(scan: Any) -> np.ndarray:
    """``(X, Y, Z, C)`` float32 raw image of a generated scan, channels as :data:`MODALITIES`."""
    return np.stack([scan.images[m] for m in MODALITIES if m in scan.images], axis=-1)


def slice_set_from_scans(scans: Sequence[Any], targets: Sequence[np.ndarray]) -> Any:
    """The in-memory training slices of generated scans, as ``mssoft fit`` keeps them.

    The steps of :func:`mssoft.workflows.training_data.load_scan_slices` without the files: z-score each
    modality over the brain, cut axial slices, keep those where rater 1 marks a lesion.

    Parameters
    ----------
    scans : sequence of SyntheticScan
    targets : sequence of ndarray of float32, shape (X, Y, Z)
        Soft (or binary) masks, one per scan.

    Returns
    -------
    mssoft.workflows.training_data.SliceSet
    """
    from mssoft.arrays.intensity import zscore_brain
    from mssoft.arrays.slices import SliceSet, lesion_slice_indices, to_axial_slices
    from mssoft.workflows.settings import MaskConfig
    from mssoft.workflows.training_data import MaskSource

    images, kept_targets, kept_all, n_slices = [], [], [], []
    for scan, target in zip(scans, targets, strict=True):
        kept = lesion_slice_indices(scan.masks[1])
        if kept.size == 0:  # a tiny quick-setting scan without lesion: keep its middle slice
            kept = np.array([scan.shape[2] // 2])
        image = zscore_brain(scan_image(scan))
        images.append(np.ascontiguousarray(to_axial_slices(image)[kept]))
        kept_targets.append(np.ascontiguousarray(to_axial_slices(target)[kept]))
        kept_all.append(kept.astype(np.int64))
        n_slices.append(int(scan.shape[2]))
    names = [f"bench{i:02d}" for i in range(len(scans))]
    return SliceSet(
        images,
        kept_targets,
        kept_all,
        names,
        names,
        n_slices,
        tuple(m for m in MODALITIES if m in scans[0].images),
        MaskSource("computed", 1, None, MaskConfig()),
    )
