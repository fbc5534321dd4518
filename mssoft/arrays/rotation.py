"""In-plane rotation of batches of slices about their centres (the training augmentation).

One transform for image and target: each output pixel ``(x, y)`` (column, row) takes its value
from the input point ``(a0 x + a1 y + a2, b0 x + b1 y + b2)`` (:func:`rotation_matrices`), so image
and target stay aligned exactly; only the resampling differs.

* Images rotate with **bilinear** interpolation.
* Targets rotate with **nearest-neighbour** interpolation by default, so a target keeps its label
  values exactly: a binary mask stays in {0, 1} and a soft mask in {0, gamma, 1}. Bilinear
  targets (the old behaviour, kept for comparison) blur every lesion border into intermediate
  values.

Points that come from outside the slice get 0 (background of a z-scored image; no lesion).

The resampling is OpenCV's ``warpAffine`` (bilinear weights on a 1/32-pixel grid): about 7 times
less CPU than TensorFlow's ``ImageProjectiveTransformV3`` for a batch of 8 slices of 181 x 217 x 4
(3.1 ms against 21.1 ms, ``benchmarks/rotation_speed.py``), which matters because on a CPU the training pipeline shares the cores with
the training step. :func:`rotate_pairs` can write straight into a zero-padded batch, so the padding
that the U-Net needs costs no extra copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mssoft.arrays.slices import zero_padding
from mssoft.choices import TARGET_INTERPOLATIONS

__all__ = [
    "rotation_matrices",
    "rotate_slices",
    "rotate_pairs",
]

#: OpenCV reads up to 4 interleaved channels in one pass; more are resampled 4 at a time.
_CHANNELS_PER_PASS = 4


def rotation_matrices(angles_degrees: np.ndarray, height: int, width: int) -> np.ndarray:
    """Output-to-input affine maps rotating ``(height, width)`` slices about their centre.

    Parameters
    ----------
    angles_degrees : array_like of shape (B,)
        Counter-clockwise angles (as displayed with row 0 at the top) in degrees.
    height, width : int
        Slice size in pixels (rows, columns).

    Returns
    -------
    ndarray of float64, shape (B, 2, 3)
        ``[[a0, a1, a2], [b0, b1, b2]]`` per slice: output pixel ``(x, y)`` (column, row) reads
        the input point ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``. The centre
        ``((width - 1) / 2, (height - 1) / 2)`` maps to itself.
    """
    theta = np.radians(np.asarray(angles_degrees, dtype=np.float64).reshape(-1))
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    matrices = np.empty((theta.size, 2, 3))
    matrices[:, 0, 0], matrices[:, 0, 1] = cos, -sin
    matrices[:, 1, 0], matrices[:, 1, 1] = sin, cos
    matrices[:, 0, 2] = cx - (cos * cx - sin * cy)
    matrices[:, 1, 2] = cy - (sin * cx + cos * cy)
    return matrices


def _check_interpolation(interpolation: str) -> int:
    import cv2

    flags = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
    if interpolation not in flags:
        raise ValueError(
            f"Invalid value for `target_interpolation`. Expected one of {TARGET_INTERPOLATIONS}. "
            f"Received: {interpolation!r}"
        )
    return flags[interpolation] | cv2.WARP_INVERSE_MAP


def _output(shape: tuple[int, ...], out: np.ndarray | None, name: str) -> np.ndarray:
    """``out`` checked against ``shape`` (same batch and channels, at least its size), or new."""
    if out is None:
        return np.empty(shape, np.float32)
    batch, height, width, channels = shape
    if (
        out.dtype != np.float32
        or out.ndim != 4
        or out.shape[0] != batch
        or out.shape[3] != channels
        or out.shape[1] < height
        or out.shape[2] < width
    ):
        raise ValueError(
            f"`{name}` must be float32 of shape ({batch}, >= {height}, >= {width}, {channels}); "
            f"got {out.dtype} {out.shape}"
        )
    zero_padding(out, height, width)
    return out


def rotate_slices(
    slices: np.ndarray | Sequence[np.ndarray],
    angles_degrees: np.ndarray,
    *,
    interpolation: str = "bilinear",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rotate each slice of a batch about its centre (all channels of a slice alike).

    Parameters
    ----------
    slices : ndarray of shape (B, H, W, C), or a sequence of B arrays of shape (H, W, C)
        Slices (read as float32; a sequence saves stacking them first).
    angles_degrees : array_like of shape (B,)
        One angle per slice in degrees (a multiple of 90 gives an exact permutation of pixels).
    interpolation : {"bilinear", "nearest"}
        Resampling; "nearest" keeps the set of values (for label maps).
    out : ndarray of float32, shape (B, H', W', C), optional
        Where to write, ``H' >= H`` and ``W' >= W``: the rotated slices fill ``out[:, :H, :W]``
        and the rest is set to 0 (zero padding at the end of both axes).

    Returns
    -------
    ndarray of float32, shape (B, H, W, C) or that of ``out``
        Rotated slices; pixels mapped from outside the slice are 0.
    """
    import cv2

    flags = _check_interpolation(interpolation)
    batch = len(slices)
    first = np.shape(slices[0]) if batch else ()
    if (isinstance(slices, np.ndarray) and slices.ndim != 4) or (batch and len(first) != 3):
        raise ValueError(f"`slices` must have shape (B, H, W, C), got {np.shape(slices)}")
    angles = np.asarray(angles_degrees).reshape(-1)
    if angles.size != batch:
        raise ValueError(f"{angles.size} angles for {batch} slices")
    height, width, channels = first if batch else (0, 0, 0)
    out = _output((batch, height, width, channels), out, "out")
    warp = {"flags": flags, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    for b, matrix in enumerate(rotation_matrices(angles, height, width)):
        image = np.asarray(slices[b], dtype=np.float32)
        if image.shape != first:
            raise ValueError(f"slice {b} has shape {image.shape}, slice 0 {first}")
        for c0 in range(0, channels, _CHANNELS_PER_PASS):
            c1 = min(c0 + _CHANNELS_PER_PASS, channels)
            source, dest = image[:, :, c0:c1], out[b, :height, :width, c0:c1]
            if c1 - c0 == 1:  # OpenCV reads and writes a single channel as a 2D array
                source, dest = source[..., 0], dest[..., 0]
            # OpenCV writes in place into a view whose pixels are contiguous (all channels)
            in_place = dest if c1 - c0 == channels else None
            result = cv2.warpAffine(
                np.ascontiguousarray(source), matrix, (width, height), dst=in_place, **warp
            )
            if result is not dest:
                dest[...] = result.reshape(dest.shape)
    return out


def rotate_pairs(
    images: np.ndarray | Sequence[np.ndarray],
    targets: np.ndarray | Sequence[np.ndarray],
    angles_degrees: np.ndarray,
    *,
    target_interpolation: str = "nearest",
    images_out: np.ndarray | None = None,
    targets_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate images (bilinear) and their targets by the same angles.

    Parameters
    ----------
    images : ndarray of shape (B, H, W, C), or a sequence of B arrays of shape (H, W, C)
    targets : ndarray of shape (B, H, W, 1), or a sequence of B arrays of shape (H, W, 1)
        Binary or soft masks, values in [0, 1].
    angles_degrees : array_like of shape (B,)
    target_interpolation : {"nearest", "bilinear"}
        "nearest" (default) keeps the targets' values ({0, 1} stays {0, 1}, {0, gamma, 1} stays
        {0, gamma, 1}); "bilinear" blends neighbours (values in [0, 1]).
    images_out, targets_out : ndarray of float32, optional
        Zero-padded destinations (see :func:`rotate_slices`).

    Returns
    -------
    images, targets : ndarray of float32
        Shapes as given (or those of the destinations); bilinear targets clipped to [0, 1].
    """
    rotated_targets = rotate_slices(
        targets, angles_degrees, interpolation=target_interpolation, out=targets_out
    )
    if target_interpolation != "nearest":  # nearest only copies values
        np.clip(rotated_targets, 0.0, 1.0, out=rotated_targets)
    rotated_images = rotate_slices(images, angles_degrees, out=images_out)
    return rotated_images, rotated_targets
