"""Is ``--augment strong`` still much faster than training? Seconds per batch, side by side.

Usage: ``nice -n 10 python benchmarks/augment_speed.py [--batches 30] [--shape 96,112]``

Times, on the same in-memory slices (4 modalities, batch 8): the ``tf.data`` pipeline of
:func:`mssoft.nn.dataset.make_dataset` with ``paper`` and with ``strong`` augmentation (pipeline
alone, no model), and one training step (``train_on_batch``) of the U-Net at ``mssoft fit``'s
defaults (32 filters, depth 4) and at the demo's size (16, depth 3). The pipeline runs in parallel
with training in ``fit``; the ratio says how much of a training step it could cost at most. Last,
what a user waits for: one ``model.fit`` epoch over the slices with each pipeline, per network.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--shape", default="96,112")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from mssoft.arrays.slices import SliceSet
    from mssoft.nn.dataset import make_dataset
    from mssoft.nn.losses import SoftDiceLoss
    from mssoft.nn.unet import build_unet

    h, w = (int(v) for v in args.shape.split(","))
    batch, n = 8, 8 * args.batches
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, h, w, 4)).astype(np.float32)
    targets = (rng.random((n, h, w, 1)) > 0.9).astype(np.float32)
    slices = SliceSet([images], [targets], [np.arange(n)], ["s"], ["p"], [n], ("a",) * 4, None)

    def pipeline(strong: bool) -> float:
        data = make_dataset(slices, np.arange(n), batch_size=batch, training=True, strong=strong)
        for _ in data.take(2):  # warm-up (tracing)
            pass
        start = time.perf_counter()
        count = sum(1 for _ in data)
        return (time.perf_counter() - start) / count

    def train_step(filters: int, depth: int) -> float:
        model = build_unet((None, None, 4), base_filters=filters, depth=depth)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=SoftDiceLoss())
        x, y = images[:batch], targets[:batch]
        model.train_on_batch(x, y)
        start = time.perf_counter()
        steps = max(3, args.batches // 5)
        for _ in range(steps):
            model.train_on_batch(x, y)
        return (time.perf_counter() - start) / steps

    def epoch(strong: bool, filters: int, depth: int) -> float:
        keras.utils.set_random_seed(0)
        model = build_unet((None, None, 4), base_filters=filters, depth=depth)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=SoftDiceLoss())
        data = make_dataset(slices, np.arange(n), batch_size=batch, training=True, strong=strong)
        model.fit(data.take(2), epochs=1, verbose=0)  # warm-up (tracing)
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        return time.perf_counter() - start

    paper, strong = pipeline(False), pipeline(True)
    fit_default, demo = train_step(32, 4), train_step(16, 3)
    print(f"slices {h}x{w}x4, batch {batch}; seconds per batch")
    print(f"pipeline paper      {paper:.4f}")
    print(f"pipeline strong     {strong:.4f}")
    print(f"train step 32/d4    {fit_default:.4f}  ({fit_default / strong:.0f}x strong)")
    print(f"train step 16/d3    {demo:.4f}  ({demo / strong:.0f}x strong)")
    for filters, depth in ((32, 4), (16, 3)):
        times = [epoch(s, filters, depth) for s in (False, True)]
        print(
            f"fit epoch {filters}/d{depth}: paper {times[0]:.1f} s, strong {times[1]:.1f} s "
            f"({100 * (times[1] / times[0] - 1):+.0f} %)"
        )


if __name__ == "__main__":
    main()
