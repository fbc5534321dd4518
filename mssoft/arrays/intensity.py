"""Intensity normalisation of a scan, the one function training and prediction share.

Three methods (:data:`mssoft.choices.NORMALISATIONS`), each per channel over the brain (non-zero,
finite voxels of that channel; voxels outside stay 0):

``zscore``
    ``(x - mean) / std`` (the paper; :func:`zscore_brain`).
``percentile``
    Clip to the brain's 0.5th and 99.5th percentiles (:data:`CLIP_PERCENTILES`), then z-score: a
    few very bright or dark voxels (vessels, artefacts) no longer set the scale.
``histogram``
    Nyúl–Udupa histogram standardisation (Nyúl, Udupa & Zhang, IEEE TMI 2000): the scan's
    landmarks (brain percentiles :data:`LANDMARK_PERCENTILES`) are mapped piecewise linearly onto
    standard landmarks learned on the training scans (:func:`learn_landmarks`), on a standard scale
    whose first and last landmarks are :data:`STANDARD_SCALE` (beyond them the end segments are
    extended linearly). Every scan then has the same histogram shape at the landmarks, whatever
    its scanner's contrast and intensity scale.

:class:`Normaliser` holds a method and (for ``histogram``) the learned landmarks; its
:meth:`~Normaliser.apply` is what the training data loader and prediction call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mssoft.choices import NORMALISATIONS

__all__ = [
    "CLIP_PERCENTILES",
    "LANDMARK_PERCENTILES",
    "STANDARD_SCALE",
    "Normaliser",
    "zscore_brain",
    "brain_mask",
    "scan_landmarks",
    "learn_landmarks",
    "histogram_standardise",
]

#: Brain percentiles that ``percentile`` clips to before z-scoring.
CLIP_PERCENTILES = (0.5, 99.5)
#: Brain percentiles used as Nyúl–Udupa landmarks: the ends p1 and p99, and the deciles.
LANDMARK_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
#: Standard-scale values of the first and last landmark (p1 and p99) in ``histogram``; about the
#: range z-scores span, so the network sees inputs of the same size with every method.
STANDARD_SCALE = (-2.5, 2.5)


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


def _channels(image: np.ndarray) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
    """(index, inside mask, inside values as float64) of each channel."""
    if image.ndim != 4:
        raise ValueError(f"`image` must have shape (X, Y, Z, C), got {image.shape}")
    for c in range(image.shape[-1]):
        channel = image[..., c]
        inside = (channel != 0) & np.isfinite(channel)
        yield c, inside, channel[inside].astype(np.float64)


def _zscore(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / (std if std > 0 else 1.0)


def zscore_brain(image: np.ndarray, *, clip: Sequence[float] | None = None) -> np.ndarray:
    """Z-score each channel over its own non-zero voxels; voxels outside the brain stay 0.

    Parameters
    ----------
    image : ndarray of shape (X, Y, Z, C)
        Raw intensities, one channel per modality. Not modified.
    clip : (low, high) percentiles, optional
        Clip each channel's brain values to these percentiles first (``percentile`` method).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z, C)
        ``(x - mean) / std`` over each channel's non-zero finite voxels (std 1 where constant);
        0 where the channel is 0 or not finite.
    """
    out = np.zeros(image.shape, dtype=np.float32)
    for c, inside, values in _channels(image):
        if values.size == 0:
            continue
        if clip is not None:
            values = np.clip(values, *np.percentile(values, clip))
        out[..., c][inside] = _zscore(values).astype(np.float32)
    return out


def scan_landmarks(image: np.ndarray) -> np.ndarray:
    """The brain percentiles :data:`LANDMARK_PERCENTILES` of each channel.

    Parameters
    ----------
    image : ndarray of shape (X, Y, Z, C)

    Returns
    -------
    ndarray of float64, shape (C, L)
        NaN for a channel without brain voxels.
    """
    rows = []
    for _, _, values in _channels(image):
        if values.size == 0:
            rows.append(np.full(len(LANDMARK_PERCENTILES), np.nan))
        else:
            rows.append(np.percentile(values, LANDMARK_PERCENTILES))
    return np.asarray(rows, dtype=np.float64)


def learn_landmarks(scan_landmark_rows: Sequence[np.ndarray]) -> np.ndarray:
    """Standard landmarks from the landmarks of the training scans (Nyúl–Udupa training).

    Each scan's landmarks are mapped linearly so that its first and last landmark land on
    :data:`STANDARD_SCALE`; the standard landmarks are the mean of the mapped ones.

    Parameters
    ----------
    scan_landmark_rows : sequence of ndarray of shape (C, L)
        :func:`scan_landmarks` of each training scan (same channels).

    Returns
    -------
    ndarray of float64, shape (C, L)
        Increasing along L, from ``STANDARD_SCALE[0]`` to ``STANDARD_SCALE[1]``.

    Raises
    ------
    ValueError
        No scan, scans with different channels, or a channel with no usable scan.
    """
    if not len(scan_landmark_rows):
        raise ValueError("no training scan to learn the histogram landmarks from")
    stack = np.stack([np.asarray(r, dtype=np.float64) for r in scan_landmark_rows])  # (N, C, L)
    low, high = STANDARD_SCALE
    span = stack[..., -1:] - stack[..., :1]
    usable = np.isfinite(stack).all(axis=-1, keepdims=True) & (span > 0)
    mapped = np.where(
        usable, low + (stack - stack[..., :1]) / np.where(usable, span, 1) * (high - low), np.nan
    )
    if not np.all(usable.any(axis=0)):
        raise ValueError("a channel has no training scan with a brain intensity range")
    standard = np.nanmean(mapped, axis=0)
    return np.maximum.accumulate(standard, axis=-1)  # increasing despite rounding


def histogram_standardise(image: np.ndarray, standard: np.ndarray) -> np.ndarray:
    """Map each channel's brain landmarks onto the standard landmarks, piecewise linearly.

    Parameters
    ----------
    image : ndarray of shape (X, Y, Z, C)
        Raw intensities. Not modified.
    standard : ndarray of shape (C, L)
        Standard landmarks (:func:`learn_landmarks`).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z, C)
        Standardised intensities; 0 outside each channel's brain voxels. Values beyond the first
        or last landmark follow the end segments' slopes.
    """
    standard = np.asarray(standard, dtype=np.float64)
    if standard.shape != (image.shape[-1], len(LANDMARK_PERCENTILES)):
        raise ValueError(
            f"histogram landmarks have shape {standard.shape}, expected "
            f"{(image.shape[-1], len(LANDMARK_PERCENTILES))} for an image of {image.shape[-1]} "
            "channel(s)"
        )
    out = np.zeros(image.shape, dtype=np.float32)
    for c, inside, values in _channels(image):
        if values.size == 0:
            continue
        own = np.percentile(values, LANDMARK_PERCENTILES)
        # landmarks that coincide (few distinct values) would give an infinite slope: merge them
        own, keep = np.unique(own, return_index=True)
        target = standard[c][keep]
        if own.size < 2:
            out[..., c][inside] = np.float32(np.mean(standard[c]))
            continue
        mapped = np.interp(values, own, target)
        below, above = values < own[0], values > own[-1]
        slope_low = (target[1] - target[0]) / (own[1] - own[0])
        slope_high = (target[-1] - target[-2]) / (own[-1] - own[-2])
        mapped[below] = target[0] + (values[below] - own[0]) * slope_low
        mapped[above] = target[-1] + (values[above] - own[-1]) * slope_high
        out[..., c][inside] = mapped.astype(np.float32)
    return out


@dataclass(frozen=True)
class Normaliser:
    """How a scan's raw intensities become network input.

    Attributes
    ----------
    method : {"zscore", "percentile", "histogram"}
    landmarks : ndarray of shape (C, L) or None
        Standard landmarks of each channel (``histogram`` only, required there).
    """

    method: str = "zscore"
    landmarks: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.method not in NORMALISATIONS:
            raise ValueError(
                f"Invalid value for `--normalise`. Expected one of {', '.join(NORMALISATIONS)}. "
                f"Received: {self.method!r}"
            )
        if (self.method == "histogram") != (self.landmarks is not None):
            raise ValueError("histogram normalisation needs landmarks, and only it")
        if self.landmarks is not None:
            landmarks = np.asarray(self.landmarks, dtype=np.float64)
            if landmarks.ndim != 2 or landmarks.shape[1] != len(LANDMARK_PERCENTILES):
                raise ValueError(
                    f"histogram landmarks must have shape (C, {len(LANDMARK_PERCENTILES)}), "
                    f"got {landmarks.shape}"
                )
            if not np.all(np.isfinite(landmarks)) or np.any(np.diff(landmarks, axis=1) < 0):
                raise ValueError("histogram landmarks must be finite and increasing")
            object.__setattr__(self, "landmarks", landmarks)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Normalise a scan (X, Y, Z, C) → float32 (X, Y, Z, C), 0 outside the brain."""
        if self.method == "percentile":
            return zscore_brain(image, clip=CLIP_PERCENTILES)
        if self.method == "histogram":
            assert self.landmarks is not None
            return histogram_standardise(image, self.landmarks)
        return zscore_brain(image)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the method and its parameters (not the landmarks)."""
        record: dict[str, Any] = {"method": self.method}
        if self.method == "percentile":
            record["clip_percentiles"] = list(CLIP_PERCENTILES)
        if self.method == "histogram":
            record["landmark_percentiles"] = list(LANDMARK_PERCENTILES)
            record["standard_scale"] = list(STANDARD_SCALE)
        return record
