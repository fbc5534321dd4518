"""The ``tf.data`` pipeline of training slices and their targets.

:func:`mssoft.workflows.training_data.load_slices` loads the lesion slices of the training scans
into memory (z-scored images and binary or soft targets; lesion-free slices dropped) and
:func:`mssoft.arrays.slices.split_slices` splits them. :func:`make_dataset` builds
the ``tf.data`` pipeline over an index: shuffle the indices, batch them, draw one random angle in
[-5, 5] degrees per slice (:func:`mssoft.nn.augment.sample_angles`), then in one NumPy step gather
the batch's slices from the in-memory (or memory-mapped) arrays, rotate them
(:func:`mssoft.arrays.rotation.rotate_pairs`: bilinear for the image, nearest-neighbour for the
target by default so that a binary target stays binary and a soft one keeps its values
{0, gamma, 1}) and write them zero-padded to the multiple of ``2 ** depth`` that the U-Net needs
(``multiple``); apply the ``--augment strong`` transforms when asked (before the padding);
prefetch. No array is embedded in the TensorFlow graph, and the pipeline is deterministic given
its seed.

The pipeline runs with fixed settings (:data:`PARALLEL_BATCHES` batches prepared at once,
:data:`PREFETCH_BATCHES` kept ready) and TensorFlow's autotuning switched off. With autotuning
on, dropping the iterator (which ``model.fit`` does when it returns) waits for TensorFlow's
autotuning thread, which sleeps on a timer that grows to 60 s; on a busy CPU the wake-up can be
missed and ``model.fit`` then returned 26-48 s late (3 of 5 loaded 3-epoch fits of the cv-cell
benchmark's data, and 3 of 24 deletions of 8-s iterators under load). Without autotuning the
iterator has no such thread and is dropped at once (``make bench`` stage ``teardown``).

On a CPU the pipeline shares the cores with the training step, so it is kept cheap: about 6 ms
of CPU per batch of 8 slices of 181 x 217 x 4 (``benchmarks/rotation_speed.py``). With
``model.fit``, repeat the training dataset and pass ``steps_per_epoch`` (as
:func:`mssoft.workflows.fit.fit` does): over a finite dataset Keras builds new iterators every
epoch, which costs time at every epoch start.

Importing this module imports TensorFlow; ``import mssoft`` does not.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mssoft.arrays.rotation import rotate_pairs
from mssoft.arrays.slices import SliceSet, zero_padding
from mssoft.choices import TARGET_INTERPOLATIONS
from mssoft.errors import ConfigError
from mssoft.nn.augment import sample_angles
from mssoft.nn.strong_augment import strong_augment_pair

__all__ = ["PARALLEL_BATCHES", "PREFETCH_BATCHES", "make_dataset"]

#: Batches gathered and rotated at once. One batch takes a few ms of CPU against hundreds of ms
#: for a training step on a CPU (tens on a GPU), so two workers keep any step fed.
PARALLEL_BATCHES = 2
#: Finished batches kept ready ahead of the training step.
PREFETCH_BATCHES = 2

#: TensorFlow takes a NumPy array over without a copy when its data start on such a boundary.
_TENSOR_ALIGNMENT = 64


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array whose data start on a 64-byte boundary."""
    size = int(np.prod(shape)) * 4
    buffer = np.empty(size + _TENSOR_ALIGNMENT, np.uint8)
    start = (-buffer.ctypes.data) % _TENSOR_ALIGNMENT
    return buffer[start : start + size].view(np.float32).reshape(shape)


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
    autotune: bool = False,
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
        Resampling of the rotated targets (:func:`mssoft.arrays.rotation.rotate_pairs`): "nearest"
        keeps their label values (binary stays {0, 1}, soft stays {0, gamma, 1}); "bilinear" is
        the old behaviour, kept for comparison. Images are always bilinear.
    autotune : bool
        Let TensorFlow tune the parallelism and the prefetch buffer (the earlier behaviour;
        its iterator can take up to a minute to drop, see the module docstring). False: fixed
        :data:`PARALLEL_BATCHES` and :data:`PREFETCH_BATCHES`, autotuning off. The batches are
        the same either way.

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
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(
            f"Invalid value for `multiple`. Expected an integer >= 1. Received: {multiple!r}"
        )
    positions = np.asarray(positions, dtype=np.int64)
    height, width = slices.slice_shape
    channels = len(slices.modalities)
    padded = (height + (-height) % multiple, width + (-width) % multiple)
    rotating = training and max_degrees > 0
    pad_in_gather = not (training and strong)  # strong transforms see the unpadded slices
    batch_shape = padded if pad_in_gather else (height, width)  # what `gather` returns

    def gather(index: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch's slices, rotated by ``angles`` when rotating, zero-padded unless strong."""
        images, targets = slices.views(positions[index])
        images_out = _aligned_empty((len(index), *batch_shape, channels))
        targets_out = _aligned_empty((len(index), *batch_shape, 1))
        if rotating:
            return rotate_pairs(
                images,
                targets,
                angles,
                target_interpolation=target_interpolation,
                images_out=images_out,
                targets_out=targets_out,
            )
        for out, parts in ((images_out, images), (targets_out, targets)):
            zero_padding(out, height, width)
            for k, part in enumerate(parts):
                out[k, :height, :width] = part
        return images_out, targets_out

    def load(index: tf.Tensor, draw: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        angles = (
            sample_angles(
                tf.shape(index)[0], tf.stack([draw, tf.constant(seed, tf.int64)]), max_degrees
            )
            if rotating
            else tf.zeros([0], tf.float32)
        )
        images, targets = tf.numpy_function(
            gather, [index, angles], [tf.float32, tf.float32], stateful=False
        )
        images.set_shape([None, *batch_shape, channels])
        targets.set_shape([None, *batch_shape, 1])
        if training and strong:
            strong_seed = tf.stack([draw, tf.constant(seed, tf.int64) + 1])  # not the angles'
            images, targets = strong_augment_pair(images, targets, strong_seed)
            images = tf.pad(images, padding)
            targets = tf.pad(targets, padding)
        return images, targets

    padding = [[0, 0], [0, padded[0] - height], [0, padded[1] - width], [0, 0]]
    dataset = tf.data.Dataset.range(len(positions))
    if training:
        dataset = dataset.shuffle(max(len(positions), 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if rotating or (training and strong):
        # one random draw per batch: the seeds of its angles and of its strong transforms
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, draws)
    parallel, ready = (
        (tf.data.AUTOTUNE, tf.data.AUTOTUNE) if autotune else (PARALLEL_BATCHES, PREFETCH_BATCHES)
    )
    dataset = dataset.map(load, num_parallel_calls=parallel, deterministic=True).prefetch(ready)
    options = tf.data.Options()
    options.autotune.enabled = autotune  # off: no autotuning thread to wait for (module docstring)
    return dataset.with_options(options)
