"""The ``tf.data`` pipeline of training slices and their targets.

:func:`mssoft.workflows.training_data.load_slices` loads the lesion slices of the training scans
into memory (z-scored images and binary or soft targets; lesion-free slices dropped) and
:func:`mssoft.arrays.slices.split_slices` splits them. :func:`make_dataset` builds
the ``tf.data`` pipeline over an index: shuffle the indices, batch them, gather the batch's slices
from the in-memory arrays, rotate the whole batch at once (one random angle in [-5, 5] degrees per
slice; bilinear for the image, nearest-neighbour for the target by default so that a binary
target stays binary and a soft one keeps its values {0, gamma, 1}), apply the ``--augment
strong`` transforms when asked, zero-pad to the multiple of ``2 ** depth`` that the U-Net needs
(``multiple``), prefetch. No array is embedded in the TensorFlow graph, and the pipeline is
deterministic given its seed.

Importing this module imports TensorFlow; ``import mssoft`` does not.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mssoft.arrays.slices import SliceSet
from mssoft.errors import ConfigError
from mssoft.nn.augment import TARGET_INTERPOLATIONS, rotate_pair, sample_angles
from mssoft.nn.strong_augment import strong_augment_pair

__all__ = ["make_dataset"]


def make_dataset(
    slices: SliceSet,
    positions: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    max_degrees: float = 5.0,
    multiple: int = 1,
    strong: bool = False,
    target_interpolation: str = "nearest",
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of ``(images, targets)`` batches.

    Parameters
    ----------
    slices : SliceSet
        The in-memory slices (kept alive by the dataset).
    positions : ndarray of int, shape (n,)
        Which slices (positions into :attr:`SliceSet.rows`), e.g. ``Split.train``.
    batch_size : int
        Global batch size (all replicas together). The last batch may be smaller.
    training : bool
        True: reshuffle every epoch and rotate each slice by a random angle in
        ``[-max_degrees, max_degrees]`` (image and target together; see
        ``target_interpolation``). False: fixed order, no augmentation.
    seed : int
        Seed of the shuffle and of the angles; the same seed gives the same sequence of batches
        (epoch after epoch) in a new process.
    max_degrees : float
        Largest rotation angle, >= 0; 0 disables rotation.
    multiple : int
        Zero-pad images and targets at the end of X and Y to multiples of it (after the
        rotation), e.g. :func:`mssoft.nn.unet.input_multiple` ``(depth)``; 1 pads nothing.
    strong : bool
        In training, also apply :func:`mssoft.nn.strong_augment.strong_augment_pair` after the
        rotation (``--augment strong``).
    target_interpolation : {"nearest", "bilinear"}
        Resampling of the rotated targets (:func:`mssoft.nn.augment.rotate_targets`): "nearest"
        keeps their label values (binary stays {0, 1}, soft stays {0, gamma, 1}); "bilinear" is
        the old behaviour, kept for comparison. Images are always bilinear.

    Returns
    -------
    tf.data.Dataset
        Elements ``(images (b, X', Y', C) float32, targets (b, X', Y', 1) float32)``, ``X'`` and
        ``Y'`` the smallest multiples of ``multiple`` >= ``X`` and ``Y``.
    """
    if batch_size < 1:
        raise ConfigError(
            f"Invalid value for `--batch-size`. Expected an integer >= 1. Received: {batch_size}"
        )
    if max_degrees < 0:
        raise ConfigError(
            f"Invalid value for `max_degrees`. Expected a float >= 0. Received: {max_degrees}"
        )
    if target_interpolation not in TARGET_INTERPOLATIONS:
        raise ConfigError(
            "Invalid value for `--target-interpolation`. Expected one of "
            f"{', '.join(TARGET_INTERPOLATIONS)}. Received: {target_interpolation!r}"
        )
    positions = np.asarray(positions, dtype=np.int64)
    height, width = slices.slice_shape
    channels = len(slices.modalities)

    def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return slices.gather(positions[index])

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, targets = tf.numpy_function(
            gather, [index], [tf.float32, tf.float32], stateful=False
        )
        images.set_shape([None, height, width, channels])
        targets.set_shape([None, height, width, 1])
        return images, targets

    def load_and_rotate(index: tf.Tensor, draw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, targets = load(index)
        angles = sample_angles(
            tf.shape(index)[0], tf.stack([draw, tf.constant(seed, tf.int64)]), max_degrees
        )
        return rotate_pair(images, targets, angles, target_interpolation=target_interpolation)

    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(
            f"Invalid value for `multiple`. Expected an integer >= 1. Received: {multiple!r}"
        )
    padding = [[0, 0], [0, (-height) % multiple], [0, (-width) % multiple], [0, 0]]

    def pad(images: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.pad(images, padding), tf.pad(targets, padding)

    def load_and_augment(index: tf.Tensor, draw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images, targets = load_and_rotate(index, draw) if max_degrees > 0 else load(index)
        strong_seed = tf.stack([draw, tf.constant(seed, tf.int64) + 1])  # not the angles' seed
        return strong_augment_pair(images, targets, strong_seed)

    dataset = tf.data.Dataset.range(len(positions))
    if training:
        dataset = dataset.shuffle(max(len(positions), 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if training and (max_degrees > 0 or strong):
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, draws).map(
            load_and_augment if strong else load_and_rotate,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if padding[1][1] or padding[2][1]:
        dataset = dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
