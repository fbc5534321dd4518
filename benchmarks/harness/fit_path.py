"""Training stage: the ``mssoft fit`` path beside a plain ``tf.function`` step of the same model.

What users run is one ``model.fit`` call over the ``tf.data`` pipeline of
:func:`mssoft.nn.dataset.make_dataset` (shuffle, gather, rotate with OpenCV, pad, prefetch),
repeated, with ``steps_per_epoch`` one pass (as :func:`mssoft.workflows.fit.fit` runs it), the
model compiled by :func:`mssoft.workflows.fit.build_model` (Adam, SoftDiceLoss, the
BinarisedDice metric, input ``(None, None, C)``). The reference is the least a training step can
cost: the same U-Net, optimizer and loss in a hand-written ``tf.function`` (forward, loss,
gradients, Adam update; no metric, no pipeline: one fixed batch of real slices).

For every dtype policy and U-Net width the two are timed in alternating rounds within one
process (so that a busy machine slows both alike): one ``fit`` call of ``1 + fit_path_rounds``
epochs of ``timed_steps`` steps; epoch 0 (tracing, warm-up) is not timed; every later epoch is
timed from its start to its end (so the per-epoch overhead counts, spread over few steps:
pessimistic for real epochs of ~150 steps), and after it, outside that window, a callback trains
``timed_steps`` plain steps. The ratio is the median over rounds of plain seconds per step over
fit seconds per step; the process CPU seconds per step of both are recorded too (they stay
comparable on a busy machine).

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.network import POLICIES, _dtype_policy, _fractions, model_flops
from harness.settings import BenchSettings

__all__ = ["bench_fit_path"]

logger = logging.getLogger(__name__)


def _plain_step(model: Any, learning_rate: float, eps: float) -> Any:
    """A ``tf.function`` training step of ``model``: forward, SoftDiceLoss, gradients, Adam."""
    import keras
    import tensorflow as tf

    from mssoft.nn.losses import SoftDiceLoss

    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    loss_fn = SoftDiceLoss(eps=eps)

    @tf.function
    def step(images: Any, targets: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(images, training=True))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def _epoch_clock(after_epoch: Any) -> Any:
    """A Keras callback recording the wall and process CPU seconds of each epoch.

    ``after_epoch()`` runs after each epoch's clock has stopped (outside the timed window).
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.wall.append(time.perf_counter() - self._t0)
            self.cpu.append(time.process_time() - self._c0)
            if epoch:  # after the warm-up epoch the plain step is warm already
                after_epoch()

    return EpochClock()


def _one_setting(
    slices: Any, settings: BenchSettings, base_filters: int, policy: str
) -> tuple[dict[str, Any], Any]:
    import keras
    import tensorflow as tf

    from mssoft.arrays.slices import pad_slices
    from mssoft.nn.dataset import make_dataset
    from mssoft.nn.unet import build_unet, input_multiple
    from mssoft.workflows.fit import build_model
    from mssoft.workflows.settings import TrainConfig

    channels = len(slices.modalities)
    config = TrainConfig(
        data=Path("."),
        out=Path("."),
        batch_size=settings.batch_size,
        base_filters=base_filters,
        depth=settings.depth,
        seed=settings.seed,
    )
    steps = settings.timed_steps
    multiple = input_multiple(settings.depth)  # both paths see slices padded as mssoft fit pads
    images, targets = slices.gather(np.arange(settings.batch_size) % len(slices))
    images = tf.constant(pad_slices(images, multiple))
    targets = tf.constant(pad_slices(targets, multiple))
    with _dtype_policy(policy):
        keras.utils.set_random_seed(settings.seed)
        fit_model = build_model(config, channels)  # as mssoft fit compiles it
        keras.utils.set_random_seed(settings.seed)
        plain_model = build_unet(
            (None, None, channels), base_filters=base_filters, depth=settings.depth
        )
        step = _plain_step(plain_model, config.learning_rate, config.eps)

        # as mssoft fit runs it: the pipeline repeated, one model.fit call, `steps` per epoch
        train = make_dataset(
            slices,
            np.arange(steps * settings.batch_size, dtype=np.int64) % len(slices),
            batch_size=settings.batch_size,
            training=True,
            seed=settings.seed,
            max_degrees=config.rotation_degrees,
            multiple=multiple,
        ).repeat()
        plain_wall: list[float] = []
        plain_cpu: list[float] = []

        def plain_round() -> None:
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                loss = step(images, targets)
            float(loss)
            plain_wall.append((time.perf_counter() - w0) / steps)
            plain_cpu.append((time.process_time() - c0) / steps)

        t0 = time.perf_counter()
        for _ in range(1 + settings.warmup_steps):  # tracing, then warm-up
            float(step(images, targets))
        plain_warmup = time.perf_counter() - t0
        clock = _epoch_clock(after_epoch=plain_round)
        fit_model.fit(
            train,
            epochs=1 + settings.fit_path_rounds,  # epoch 0: tracing and warm-up, not timed
            steps_per_epoch=steps,
            verbose=0,
            shuffle=False,
            callbacks=[clock],
        )
        first = plain_warmup + clock.wall.pop(0)  # tracing and warm-up of both
        clock.cpu.pop(0)
    fit_wall = [w / steps for w in clock.wall]
    fit_cpu = [c / steps for c in clock.cpu]
    ratios = [p / f for p, f in zip(plain_wall, fit_wall, strict=True)]
    batch = settings.batch_size
    record = {
        "base_filters": base_filters,
        "policy": policy,
        "plain_step_seconds": float(np.median(plain_wall)),
        "fit_step_seconds": float(np.median(fit_wall)),
        "plain_slices_per_second": batch / float(np.median(plain_wall)),
        "fit_slices_per_second": batch / float(np.median(fit_wall)),
        "fit_over_plain": float(np.median(ratios)),
        "fit_over_plain_rounds": ratios,
        "plain_cpu_seconds_per_step": float(np.median(plain_cpu)),
        "fit_cpu_seconds_per_step": float(np.median(fit_cpu)),
        "setup_seconds": first,
    }
    logger.info(
        "fit path base %d %s: fit %.2f, plain %.2f slices/s (ratio %.2f)",
        base_filters,
        policy,
        record["fit_slices_per_second"],
        record["plain_slices_per_second"],
        record["fit_over_plain"],
    )
    return record, fit_model


def bench_fit_path(
    slices: Any, settings: BenchSettings, *, peak_gflops: float, cores: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Training slices per second of the ``mssoft fit`` path and of a plain step (module doc).

    Parameters
    ----------
    slices : mssoft.arrays.slices.SliceSet
    settings : BenchSettings
        ``fit_path_bases`` (U-Net widths), ``fit_path_rounds``, ``timed_steps``,
        ``warmup_steps``, ``batch_size``, ``depth``.
    peak_gflops : float
        The machine's fp32 peak (for the fraction of peak).
    cores : int
        Usable cores.

    Returns
    -------
    record : dict
        ``paths``: one row per (width, policy) (:func:`_one_setting`); ``model``
        (:func:`~harness.network.model_flops` at ``base_filters``); per policy at
        ``base_filters`` the fit path's ``slices_per_second``, ``gflops``, ``fraction_of_peak``;
        ``bfloat16_speedup_fit`` per width.
    models : dict of str to keras.Model
        The fit-path models at ``base_filters``, per policy (for the prediction stage).
    """
    channels = len(slices.modalities)
    record: dict[str, Any] = {
        "what": "model.fit over mssoft.nn.dataset.make_dataset, compiled by "
        "mssoft.workflows.fit.build_model (Adam, SoftDiceLoss, BinarisedDice, input "
        "(None, None, C)), beside a plain tf.function step (same model, Adam, SoftDiceLoss; "
        "one fixed batch); alternating rounds in one process",
        "batch_size": settings.batch_size,
        "steps_per_round": settings.timed_steps,
        "rounds": settings.fit_path_rounds,
        "cores": cores,
        "paths": [],
    }
    models: dict[str, Any] = {}
    bases = sorted(set(settings.fit_path_bases) | {settings.base_filters})
    for base in bases:
        for policy in POLICIES:
            row, model = _one_setting(slices, settings, base, policy)
            record["paths"].append(row)
            if base == settings.base_filters:
                models[policy] = model
    flops = model_flops(slices.slice_shape, channels, settings.base_filters, settings.depth)
    record["model"] = flops
    for row in record["paths"]:
        if row["base_filters"] != settings.base_filters:
            continue
        rate = row["fit_slices_per_second"]
        gflops = rate * flops["training_gflop_per_slice"]
        record[row["policy"]] = {
            "slices_per_second": rate,
            "plain_slices_per_second": row["plain_slices_per_second"],
            "gflops": gflops,
            **_fractions(gflops, peak_gflops, row["policy"]),
        }
    record["bfloat16_speedup_fit"] = {
        str(base): _rate(record, base, "mixed_bfloat16") / _rate(record, base, "float32")
        for base in bases
    }
    return record, models


def _rate(record: dict[str, Any], base: int, policy: str) -> float:
    return next(
        r["fit_slices_per_second"]
        for r in record["paths"]
        if r["base_filters"] == base and r["policy"] == policy
    )
