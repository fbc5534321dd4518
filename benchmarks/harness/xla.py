"""XLA stage: the training step and prediction compiled with XLA (``jit_compile=True``) beside
today's path (``jit_compile=False``, what Keras's ``auto`` chooses on a CPU-only machine).

For float32 and mixed bfloat16 at each U-Net width of ``fit_path_bases``, both models are
compiled as :func:`mssoft.workflows.fit.build_model` compiles them (only ``jit_compile``
differs) and fed one fixed padded batch (``batch_size`` slices padded to ``2 ** depth``; XLA
compiles once per input shape, so every batch of a run must have that one shape: see
:func:`mssoft.nn.inference.full_batch`). Recorded per row: the seconds of the first two calls
(tracing and, under XLA, compilation), then the median seconds of ``xla_steps`` training steps
and of ``xla_steps`` prediction calls of ``predict_batch_size`` slices; the ratio is today's
seconds over XLA's (> 1: XLA faster). The two are timed in alternating order per step, so a
busy machine slows both alike.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.network import POLICIES, _dtype_policy
from harness.settings import BenchSettings

__all__ = ["bench_xla"]

logger = logging.getLogger(__name__)


def _first_calls(call: Any, count: int = 2) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        call()
    return time.perf_counter() - t0


def _one_setting(slices: Any, settings: BenchSettings, base: int, policy: str) -> dict[str, Any]:
    import keras

    from mssoft.arrays.slices import pad_slices
    from mssoft.nn.unet import input_multiple
    from mssoft.workflows.fit import build_model
    from mssoft.workflows.settings import TrainConfig

    multiple = input_multiple(settings.depth)
    images, targets = slices.gather(np.arange(settings.batch_size) % len(slices))
    images, targets = pad_slices(images, multiple), pad_slices(targets, multiple)
    predict_batch = pad_slices(
        slices.gather(np.arange(settings.predict_batch_size) % len(slices))[0], multiple
    )
    models = {}
    with _dtype_policy(policy):
        for mode in ("off", "on"):
            keras.utils.set_random_seed(settings.seed)
            config = TrainConfig(
                data=Path("."),
                out=Path("."),
                batch_size=settings.batch_size,
                base_filters=base,
                depth=settings.depth,
                seed=settings.seed,
                jit_compile=mode,
            )
            models[mode] = build_model(config, len(slices.modalities))
        row: dict[str, Any] = {"base_filters": base, "policy": policy}
        train: dict[str, list[float]] = {"off": [], "on": []}
        predict: dict[str, list[float]] = {"off": [], "on": []}
        for mode, model in models.items():
            row[f"first_train_seconds_{mode}"] = _first_calls(
                lambda m=model: m.train_on_batch(images, targets)
            )
            row[f"first_predict_seconds_{mode}"] = _first_calls(
                lambda m=model: m.predict_on_batch(predict_batch)
            )
        for step in range(settings.xla_steps):
            order = ("off", "on") if step % 2 == 0 else ("on", "off")
            for mode in order:
                t0 = time.perf_counter()
                models[mode].train_on_batch(images, targets)
                train[mode].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                models[mode].predict_on_batch(predict_batch)
                predict[mode].append(time.perf_counter() - t0)
    for mode in ("off", "on"):
        row[f"train_step_seconds_{mode}"] = float(np.median(train[mode]))
        row[f"predict_seconds_{mode}"] = float(np.median(predict[mode]))
    row["train_xla_speedup"] = row["train_step_seconds_off"] / row["train_step_seconds_on"]
    row["predict_xla_speedup"] = row["predict_seconds_off"] / row["predict_seconds_on"]
    logger.info(
        "XLA base %d %s: training %.2fx, prediction %.2fx (today's seconds / XLA's)",
        base,
        policy,
        row["train_xla_speedup"],
        row["predict_xla_speedup"],
    )
    return row


def bench_xla(slices: Any, settings: BenchSettings) -> dict[str, Any]:
    """One row per U-Net width and dtype policy (module docstring).

    Parameters
    ----------
    slices : mssoft.arrays.slices.SliceSet
    settings : BenchSettings
        ``fit_path_bases``, ``depth``, ``batch_size``, ``predict_batch_size``, ``xla_steps``.
    """
    import tensorflow as tf

    return {
        "what": "train_on_batch and predict_on_batch of the model build_model compiles, "
        "jit_compile False (today on CPU) and True (XLA), one fixed padded batch",
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "batch_size": settings.batch_size,
        "predict_batch_size": settings.predict_batch_size,
        "steps": settings.xla_steps,
        "rows": [
            _one_setting(slices, settings, base, policy)
            for base in sorted(set(settings.fit_path_bases))
            for policy in POLICIES
        ],
    }
