"""Voxel-size checks and trilinear resampling between grids of one field of view.

A model learns lesions at the voxel size it was trained on. :func:`spacing_deviation` says how far
a scan's voxel size is from the training voxel size; :func:`resampled_shape` and
:func:`resample_volume` move a scan to the training voxel size and the probabilities back to the
scan's own grid (``skimage.transform.resize``, order 1: trilinear; no anti-aliasing, edge values
extended). Both grids cover the same field of view: voxel corners are aligned, the array shape
alone fixes the grid, and resampling back gives exactly the original shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.transform import resize

__all__ = [
    "SPACING_TOLERANCE",
    "spacing_deviation",
    "spacing_differs",
    "resampled_shape",
    "resample_volume",
]

#: Largest relative difference of a voxel size (any axis) from the training voxel size that
#: passes without a warning.
SPACING_TOLERANCE = 0.2


def spacing_deviation(spacing_mm: Sequence[float], reference_mm: Sequence[float]) -> np.ndarray:
    """Relative difference ``|s - r| / r`` of each axis' voxel size.

    Parameters
    ----------
    spacing_mm, reference_mm : sequence of 3 float
        Voxel sizes (mm) along the same three axes; ``reference_mm`` positive.

    Returns
    -------
    ndarray of float64, shape (3,)
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    reference = np.asarray(reference_mm, dtype=np.float64)
    if spacing.shape != (3,) or reference.shape != (3,) or np.any(reference <= 0):
        raise ValueError(
            f"Expected two sequences of 3 voxel sizes (reference > 0), got {spacing_mm} and "
            f"{reference_mm}"
        )
    return np.abs(spacing - reference) / reference


def spacing_differs(
    spacing_mm: Sequence[float],
    reference_mm: Sequence[float],
    tolerance: float = SPACING_TOLERANCE,
) -> bool:
    """Whether any axis' voxel size differs from the reference by more than ``tolerance``."""
    return bool(np.any(spacing_deviation(spacing_mm, reference_mm) > tolerance))


def resampled_shape(
    shape: Sequence[int], spacing_mm: Sequence[float], target_mm: Sequence[float]
) -> tuple[int, int, int]:
    """Shape of the grid with voxel size ``target_mm`` over the same field of view.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid shape (X, Y, Z).
    spacing_mm, target_mm : sequence of 3 float
        Current and wanted voxel size (mm), same axes.

    Returns
    -------
    tuple of 3 int
        ``round(shape * spacing / target)``, at least 1 per axis.
    """
    extent = np.asarray(shape[:3], dtype=np.float64) * np.asarray(spacing_mm, dtype=np.float64)
    sizes = np.maximum(np.rint(extent / np.asarray(target_mm, dtype=np.float64)), 1)
    return tuple(int(s) for s in sizes)  # type: ignore[return-value]


def resample_volume(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resampling of a volume (or each channel of one) to a new grid shape.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z) or (X, Y, Z, C)
        Values on the current grid; channels are resampled one by one (never mixed).
    shape : sequence of 3 int
        The new grid (X', Y', Z') over the same field of view.

    Returns
    -------
    ndarray of float32, shape (X', Y', Z') or (X', Y', Z', C)
        Values within the input's range (linear interpolation does not overshoot).
    """
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise ValueError(f"`volume` must have shape (X, Y, Z) or (X, Y, Z, C), got {volume.shape}")
    target = tuple(int(s) for s in shape[:3])
    if volume.shape[:3] == target:
        return volume.astype(np.float32, copy=True)
    if volume.ndim == 4:
        return np.stack(
            [resample_volume(volume[..., c], target) for c in range(volume.shape[3])], axis=-1
        )
    out = resize(
        volume.astype(np.float32, copy=False),
        target,
        order=1,
        mode="edge",
        anti_aliasing=False,
        preserve_range=True,
    )
    return out.astype(np.float32, copy=False)
