"""Where the time of the `mssoft fit` path goes: plain tf.function step vs model.fit variants.

Usage (from the repository root)::

    ROUNDS=2 .venv/bin/python benchmarks/fit_overhead.py 16 float32 plain,fit_metric,fit_nometric
    STEPS=16 .venv/bin/python benchmarks/fit_overhead.py 2 float32 plain,fit_metric,fit_metric_spe4

Arguments: U-Net base width, Keras dtype policy, comma-separated variants (in the order they
alternate within each round):

- ``plain``: a hand-written ``tf.function`` step (forward, SoftDiceLoss, gradients, Adam).
- ``fit_metric``: ``model.fit`` compiled as ``mssoft fit`` compiles it (with BinarisedDice).
- ``fit_nometric``: the same without a metric.
- ``fit_metric_spe4``: with BinarisedDice and ``steps_per_execution=4``.

All read random 224 x 192 x 4 slices (batch 8) through ``mssoft.nn.dataset.make_dataset``; depth 4.
Prints slices per second (wall) and process CPU seconds per step, which stays comparable when
other processes share the machine. Env: ``ROUNDS`` (default 2), ``STEPS`` (timed steps, default 6).
"""

from __future__ import annotations

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from mssoft.arrays.slices import SliceSet
from mssoft.nn.dataset import make_dataset
from mssoft.nn.losses import BinarisedDice, SoftDiceLoss
from mssoft.nn.unet import build_unet

BATCH = 8
SLICES = 64


def _slices() -> SliceSet:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((SLICES, 224, 192, 4)).astype("float32")
    targets = (rng.random((SLICES, 224, 192, 1)) < 0.02).astype("float32")
    return SliceSet(
        [images], [targets], [np.arange(SLICES)], ["a"], ["a"], [SLICES], tuple("abcd"), None
    )


def _model(base: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 4), base_filters=base, depth=4)


def _dataset(slices: SliceSet) -> tf.data.Dataset:
    return make_dataset(slices, np.arange(SLICES), batch_size=BATCH, training=True).repeat()


def plain(slices: SliceSet, base: int, steps: int) -> tuple[float, float]:
    model = _model(base)
    optimizer, loss_fn = keras.optimizers.Adam(1e-4), SoftDiceLoss()
    batches = iter(_dataset(slices))

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(2):
        step(*next(batches))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step(*next(batches))
    float(loss)
    return BATCH * steps / (time.perf_counter() - t0), (time.process_time() - c0) / steps


def fit(slices: SliceSet, base: int, steps: int, metric: bool, spe: int = 1) -> tuple[float, float]:
    model = _model(base)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=SoftDiceLoss(),
        metrics=[BinarisedDice()] if metric else None,
        steps_per_execution=spe,
    )
    data = _dataset(slices)
    model.fit(data, steps_per_epoch=2 * spe, epochs=1, verbose=0)
    steps = spe * max(1, steps // spe)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return BATCH * steps / (time.perf_counter() - t0), (time.process_time() - c0) / steps


def main() -> None:
    base, policy, variants = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    keras.config.set_dtype_policy(policy)
    steps = int(os.environ.get("STEPS", 6))
    slices = _slices()
    runs = {
        "plain": lambda: plain(slices, base, steps),
        "fit_metric": lambda: fit(slices, base, steps, True),
        "fit_nometric": lambda: fit(slices, base, steps, False),
        "fit_metric_spe4": lambda: fit(slices, base, steps, True, 4),
    }
    for round_ in range(int(os.environ.get("ROUNDS", 2))):
        for variant in variants:
            rate, cpu = runs[variant]()
            print(
                f"round {round_} {variant}: {rate:.2f} slices/s, {cpu:.3f} CPU s/step", flush=True
            )


if __name__ == "__main__":
    main()
