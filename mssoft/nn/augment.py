"""Random in-plane rotation of training slices: one transform for image and target.

Drawing the random angles (:func:`sample_angles`) is separate from applying them (:func:`rotate`,
:func:`rotate_targets`, :func:`rotate_pair`), so a fixed angle gives an exact, testable result. The
rotation works on whole batches (one angle per slice) with TensorFlow's projective-transform op.

* Images rotate with **bilinear** interpolation.
* Targets rotate with **nearest-neighbour** interpolation by default (:func:`rotate_targets`), so a
  target keeps its label values exactly: a binary mask stays in {0, 1} and a soft mask in
  {0, gamma, 1}. Bilinear targets (``interpolation="bilinear"``, the old behaviour, kept for
  comparison) blur every lesion border into intermediate values, which gives the binary baseline a
  little soft labelling of its own (docs/design.md §4.5).

Image and target use the same transform (the same output-to-input mapping of pixel centres), so
they stay aligned exactly; only the resampling differs. Points that come from outside the slice
get 0 (background of a z-scored image; no lesion in the mask).

:func:`rotate_pair` is the one entry point for "rotate a batch of (image, target) pairs"; other
augmentations that move pixels should call :func:`rotate_targets` (or :func:`rotate_pair`) for the
targets rather than resample them themselves.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

__all__ = [
    "TARGET_INTERPOLATIONS",
    "sample_angles",
    "rotation_transforms",
    "rotate",
    "rotate_targets",
    "rotate_pair",
]

#: Accepted ``target_interpolation`` values; "nearest" keeps the target's label values.
TARGET_INTERPOLATIONS = ("nearest", "bilinear")


def sample_angles(batch_size: Any, seed: Any, max_degrees: float = 5.0) -> tf.Tensor:
    """One angle per slice, uniform in ``[-max_degrees, max_degrees]``, from a stateless seed.

    Parameters
    ----------
    batch_size : int or scalar int tensor
        Number of angles.
    seed : tensor of shape (2,), int32 or int64
        Stateless random seed; the same seed gives the same angles.
    max_degrees : float
        Largest absolute angle in degrees, >= 0.

    Returns
    -------
    tf.Tensor of float32, shape (batch_size,)
        Angles in degrees.
    """
    return tf.random.stateless_uniform(
        tf.reshape(batch_size, [1]),
        seed=seed,
        minval=-max_degrees,
        maxval=max_degrees,
        dtype=tf.float32,
    )


def rotation_transforms(angles_degrees: Any, height: Any, width: Any) -> tf.Tensor:
    """Projective transforms rotating ``(height, width)`` slices about their centre.

    Parameters
    ----------
    angles_degrees : tensor of shape (B,)
        Counter-clockwise angles (as displayed with row 0 at the top) in degrees.
    height, width : int or scalar tensor
        Slice size in pixels.

    Returns
    -------
    tf.Tensor of float32, shape (B, 8)
        Rows ``[a0, a1, a2, b0, b1, b2, 0, 0]`` mapping each output pixel ``(x, y)`` (column, row)
        to the input point ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``, as TensorFlow's
        ``ImageProjectiveTransformV3`` expects.
    """
    theta = tf.cast(angles_degrees, tf.float32) * (math.pi / 180.0)
    h = tf.cast(height, tf.float32) - 1.0
    w = tf.cast(width, tf.float32) - 1.0
    cos, sin = tf.cos(theta), tf.sin(theta)
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    zeros = tf.zeros_like(theta)
    return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], axis=1)


def rotate(images: Any, angles_degrees: Any, *, interpolation: str = "BILINEAR") -> tf.Tensor:
    """Rotate each slice of a batch about its centre.

    Parameters
    ----------
    images : tensor of shape (B, H, W, C)
        Slices; all channels of a slice get the same rotation.
    angles_degrees : tensor of shape (B,)
        One angle per slice, in degrees (a multiple of 90 gives an exact permutation of pixels).
    interpolation : {"BILINEAR", "NEAREST"}
        Resampling; bilinear keeps graded (soft) values graded.

    Returns
    -------
    tf.Tensor of shape (B, H, W, C), float32
        Rotated slices; pixels mapped from outside the slice are 0.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    transforms = rotation_transforms(angles_degrees, shape[1], shape[2])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )


def rotate_targets(
    targets: Any, angles_degrees: Any, *, interpolation: str = "nearest"
) -> tf.Tensor:
    """Rotate a batch of targets (binary or soft masks) about their centres.

    Parameters
    ----------
    targets : tensor of shape (B, H, W, 1)
        Binary or soft masks, values in [0, 1].
    angles_degrees : tensor of shape (B,)
        One angle per slice, in degrees (the same angles as the images').
    interpolation : {"nearest", "bilinear"}
        "nearest" (default) takes each output pixel's value from the input pixel nearest to its
        source point, so the set of values is kept: {0, 1} stays {0, 1} and {0, gamma, 1} stays
        {0, gamma, 1}. "bilinear" blends neighbours (values anywhere in [0, 1]).

    Returns
    -------
    tf.Tensor of shape (B, H, W, 1), float32
        Rotated targets, clipped to [0, 1]; pixels mapped from outside the slice are 0.

    Raises
    ------
    ValueError
        Unknown ``interpolation``.
    """
    if interpolation not in TARGET_INTERPOLATIONS:
        raise ValueError(
            f"Invalid value for `target_interpolation`. Expected one of {TARGET_INTERPOLATIONS}. "
            f"Received: {interpolation!r}"
        )
    rotated = rotate(targets, angles_degrees, interpolation=interpolation.upper())
    return tf.clip_by_value(rotated, 0.0, 1.0)


def rotate_pair(
    images: Any,
    targets: Any,
    angles_degrees: Any,
    *,
    target_interpolation: str = "nearest",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Rotate images (bilinear) and their targets (:func:`rotate_targets`) by the same angles.

    Parameters
    ----------
    images : tensor of shape (B, H, W, C)
    targets : tensor of shape (B, H, W, 1)
        Binary or soft masks.
    angles_degrees : tensor of shape (B,)
    target_interpolation : {"nearest", "bilinear"}
        Resampling of the targets (see :func:`rotate_targets`); images are always bilinear.

    Returns
    -------
    images, targets : tf.Tensor
        Same shapes as given, float32. With "nearest" the targets hold only values they held
        before; with "bilinear" values in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    rotated_images = rotate(images, angles_degrees)
    rotated_targets = rotate_targets(
        tf.cast(targets, tf.float32), angles_degrees, interpolation=target_interpolation
    )
    rotated_images.set_shape(images.shape)
    rotated_targets.set_shape(images.shape[:-1].concatenate([1]))
    return rotated_images, rotated_targets
