"""Epoch times of ``model.fit`` over a finite training pipeline and over the same one repeated.

Usage (from the repository root)::

    .venv/bin/python benchmarks/epoch_iterators.py [--runs 2] [--epochs 6]

Over a finite ``tf.data`` dataset Keras 3 builds a new iterator at every epoch start (and one more
at each epoch's end, which the next epoch discards). ``mssoft fit`` repeats the training pipeline
and passes ``steps_per_epoch`` (one pass), so one iterator serves the whole run. This script trains
the same U-Net (base 16, depth 4, mixed bfloat16, batch 8, 96 training and 48 validation slices of
181 x 217 x 4 random data, validation every epoch) both ways, in alternating runs of a new process
each, and prints the wall seconds of every epoch after the first (which traces), their median, and
how many epochs took over 1.2 times the fastest epoch of either mode.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = "--child"


def _child(mode: str, epochs: int) -> None:
    import keras
    import numpy as np

    from mssoft.arrays.slices import SliceSet
    from mssoft.nn.dataset import make_dataset
    from mssoft.nn.losses import BinarisedDice, SoftDiceLoss
    from mssoft.nn.unet import build_unet

    rng = np.random.default_rng(0)
    n, batch = 144, 8
    images = rng.standard_normal((n, 181, 217, 4)).astype("float32")
    targets = (rng.random((n, 181, 217, 1)) < 0.02).astype("float32")
    slices = SliceSet([images], [targets], [np.arange(n)], ["a"], ["a"], [n], tuple("abcd"), None)
    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, 4), base_filters=16, depth=4)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss=SoftDiceLoss(), metrics=[BinarisedDice()]
    )
    train = make_dataset(slices, np.arange(96), batch_size=batch, training=True, multiple=16)
    val = make_dataset(slices, np.arange(96, n), batch_size=batch, training=False, multiple=16)
    extra = {}
    if mode == "repeated":
        train, extra = train.repeat(), {"steps_per_epoch": 96 // batch}

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            print(f"{time.perf_counter() - self.start:.3f}", flush=True)

    model.fit(
        train, validation_data=val, epochs=epochs, verbose=0, shuffle=False, callbacks=[Clock()],
        **extra,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode (default 2)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    times: dict[str, list[float]] = {"finite": [], "repeated": []}
    for run in range(args.runs):
        for mode in times:
            out = subprocess.run(
                [sys.executable, __file__, CHILD, mode, str(args.epochs)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            epochs = [float(x) for x in out][1:]  # epoch 0 traces
            times[mode] += epochs
            print(f"run {run} {mode:8s}: " + " ".join(f"{t:.2f}" for t in epochs), flush=True)
    fastest = min(min(values) for values in times.values())
    for mode, values in times.items():
        values = sorted(values)
        slow = sum(v > 1.2 * fastest for v in values)
        print(
            f"{mode:8s}: median {values[len(values) // 2]:.2f} s per epoch, max {values[-1]:.2f} s,"
            f" {slow} of {len(values)} epochs over 1.2x the fastest epoch ({fastest:.2f} s)"
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD:
        _child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
