"""Between volumes and the axial slices the 2D U-Net sees. Axis 2 of a RAS array is axial."""

from __future__ import annotations

import numpy as np

__all__ = ["to_axial_slices", "from_axial_slices", "lesion_slice_indices"]


def to_axial_slices(volume: np.ndarray) -> np.ndarray:
    """Axial slices of a RAS volume.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z) or (X, Y, Z, C)

    Returns
    -------
    ndarray of shape (Z, X, Y, C)
        Slice ``k`` is ``volume[:, :, k]``; a 3D input gets one channel. A view where possible.
    """
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise ValueError(f"`volume` must be 3D or 4D, got shape {volume.shape}")
    return np.moveaxis(volume, 2, 0)


def from_axial_slices(slices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_axial_slices` for one channel.

    Parameters
    ----------
    slices : ndarray of shape (Z, X, Y) or (Z, X, Y, 1)

    Returns
    -------
    ndarray of shape (X, Y, Z)
    """
    if slices.ndim == 4:
        if slices.shape[-1] != 1:
            raise ValueError(f"expected one channel, got shape {slices.shape}")
        slices = slices[..., 0]
    return np.ascontiguousarray(np.moveaxis(slices, 0, 2))


def lesion_slice_indices(mask: np.ndarray) -> np.ndarray:
    """Indices of the axial slices holding at least one lesion voxel.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary (or soft) mask; a slice counts when any voxel is non-zero.

    Returns
    -------
    ndarray of int64, shape (K,)
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"`mask` must be 3D, got shape {mask.shape}")
    return np.flatnonzero(np.any(mask != 0, axis=(0, 1)))
