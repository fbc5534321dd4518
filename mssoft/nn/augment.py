"""The random angles of the training rotation, drawn inside the ``tf.data`` pipeline.

Drawing the angles (:func:`sample_angles`, stateless and seeded, in TensorFlow) is separate from
applying them (:func:`mssoft.arrays.rotation.rotate_pairs`, bilinear images and nearest-neighbour
targets by default, with OpenCV), so a fixed angle gives an exact, testable result and the same
seed gives the same angles in a new process.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["sample_angles"]


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
