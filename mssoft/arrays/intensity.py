"""Intensity normalisation: each modality of each scan z-scored over its brain (non-zero) voxels."""

from __future__ import annotations

import numpy as np

__all__ = ["zscore_brain", "brain_mask"]


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Voxels that are brain: non-zero and finite in the first channel (FLAIR).

    Parameters
    ----------
    image : ndarray of shape (X, Y, Z, C) or (X, Y, Z)

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
    """
    first = image[..., 0] if image.ndim == 4 else image
    return (first != 0) & np.isfinite(first)


def zscore_brain(image: np.ndarray) -> np.ndarray:
    """Z-score each channel over its own non-zero voxels; voxels outside the brain stay 0.

    Parameters
    ----------
    image : ndarray of shape (X, Y, Z, C)
        Raw intensities, one channel per modality. Not modified.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z, C)
        ``(x - mean) / std`` over each channel's non-zero finite voxels (std 1 where constant);
        0 where the channel is 0 or not finite.
    """
    if image.ndim != 4:
        raise ValueError(f"`image` must have shape (X, Y, Z, C), got {image.shape}")
    out = np.zeros(image.shape, dtype=np.float32)
    for c in range(image.shape[-1]):
        channel = image[..., c]
        inside = (channel != 0) & np.isfinite(channel)
        values = channel[inside].astype(np.float64)
        if values.size == 0:
            continue
        mean = values.mean()
        std = values.std()
        out[..., c][inside] = ((values - mean) / (std if std > 0 else 1.0)).astype(np.float32)
    return out
