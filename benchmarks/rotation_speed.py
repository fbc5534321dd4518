"""CPU cost of rotating a training batch: OpenCV (what the pipeline uses) against TensorFlow's op.

Usage (from the repository root)::

    .venv/bin/python benchmarks/rotation_speed.py [--repeats 100]

One batch of 8 random slices of 181 x 217 x 4 (images) and 181 x 217 x 1 (binary targets), angles
in [-5, 5] degrees, both results zero-padded to 192 x 224 (the U-Net's multiple of 16):

- ``opencv``: :func:`mssoft.arrays.rotation.rotate_pairs` writing into the padded batch (images
  bilinear, targets nearest neighbour), as :func:`mssoft.nn.dataset.make_dataset` calls it;
- ``tensorflow``: ``ImageProjectiveTransformV3`` (images bilinear, targets nearest) with the same
  output-to-input map, then ``tf.pad``: what the pipeline did before, in one ``tf.function``;
- ``pipeline``: the whole training pipeline of ``make_dataset`` (shuffle, gather, rotate, pad,
  prefetch) drained without a model.

Prints process CPU milliseconds per batch (all threads), the median of 5 blocks of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np


def _cpu_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    blocks = []
    for _ in range(5):
        c0 = time.process_time()
        for _ in range(repeats):
            run()
        blocks.append((time.process_time() - c0) / repeats * 1000)
    return float(np.median(blocks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=100, help="batches per block (100)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from mssoft.arrays.rotation import rotate_pairs, rotation_matrices
    from mssoft.arrays.slices import SliceSet
    from mssoft.nn.dataset import make_dataset

    rng = np.random.default_rng(0)
    n, batch, (height, width), padded = 64, 8, (181, 217), (192, 224)
    images = rng.standard_normal((n, height, width, 4)).astype(np.float32)
    targets = (rng.random((n, height, width, 1)) < 0.02).astype(np.float32)
    angles = rng.uniform(-5, 5, batch)
    image_batch, target_batch = images[:batch], targets[:batch]

    def opencv() -> object:
        return rotate_pairs(
            image_batch,
            target_batch,
            angles,
            images_out=np.empty((batch, *padded, 4), np.float32),
            targets_out=np.empty((batch, *padded, 1), np.float32),
        )

    maps = rotation_matrices(angles, height, width).reshape(batch, 6)
    transforms = tf.constant(np.concatenate([maps, np.zeros((batch, 2))], axis=1), tf.float32)
    padding = [[0, 0], [0, padded[0] - height], [0, padded[1] - width], [0, 0]]

    @tf.function
    def tensorflow_op(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def warp(values: tf.Tensor, interpolation: str) -> tf.Tensor:
            return tf.raw_ops.ImageProjectiveTransformV3(
                images=values,
                transforms=transforms,
                output_shape=[height, width],
                fill_value=tf.constant(0.0),
                interpolation=interpolation,
                fill_mode="CONSTANT",
            )

        return tf.pad(warp(x, "BILINEAR"), padding), tf.pad(warp(y, "NEAREST"), padding)

    x, y = tf.constant(image_batch), tf.constant(target_batch)
    slices = SliceSet(
        [images], [targets], [np.arange(n)], ["a"], ["a"], [n], ("a", "b", "c", "d"), None
    )
    pipeline = iter(
        make_dataset(slices, np.arange(n), batch_size=batch, training=True, multiple=16).repeat()
    )
    rows = {
        "opencv (rotate_pairs into the padded batch)": _cpu_ms(opencv, args.repeats),
        "tensorflow (ImageProjectiveTransformV3 + tf.pad)": _cpu_ms(
            lambda: [t.numpy() for t in tensorflow_op(x, y)], args.repeats
        ),
        "pipeline (make_dataset, drained)": _cpu_ms(lambda: next(pipeline), args.repeats),
    }
    for name, ms in rows.items():
        print(f"{name:50s} {ms:6.2f} ms CPU per batch of {batch}")


if __name__ == "__main__":
    main()
