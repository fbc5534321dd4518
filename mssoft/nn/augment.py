"""Random in-plane rotation of training slices, applied identically to image and soft mask.

Drawing the random angles (:func:`sample_angles`) is separate from applying them (:func:`rotate`,
:func:`rotate_pair`), so a fixed angle gives an exact, testable result. The rotation works on whole
batches (one angle per slice) with TensorFlow's projective-transform op and **bilinear**
interpolation for the image and the soft mask alike: nearest-neighbour (what Keras uses for
``segmentation_masks``) would destroy the soft values (design.md §1.5). Points that come from
outside the slice get 0 (background of a z-scored image; no lesion in the mask).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

__all__ = ["sample_angles", "rotation_transforms", "rotate", "rotate_pair"]


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


def rotate_pair(images: Any, soft_masks: Any, angles_degrees: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Rotate images and soft masks together: one transform of their channel concatenation.

    Parameters
    ----------
    images : tensor of shape (B, H, W, C)
    soft_masks : tensor of shape (B, H, W, 1)
    angles_degrees : tensor of shape (B,)

    Returns
    -------
    images, soft_masks : tf.Tensor
        Same shapes as given, float32, rotated with bilinear interpolation. Soft-mask values stay
        in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    channels = tf.shape(images)[-1]
    both = rotate(tf.concat([images, tf.cast(soft_masks, tf.float32)], axis=-1), angles_degrees)
    rotated_images = both[..., :channels]
    rotated_masks = tf.clip_by_value(both[..., channels:], 0.0, 1.0)
    rotated_images.set_shape(images.shape)
    rotated_masks.set_shape(images.shape[:-1].concatenate([1]))
    return rotated_images, rotated_masks
