"""TensorFlow stages: the ``tf.data`` pipeline, U-Net training and prediction, FLOPs per slice.

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.data import scan_image
from harness.settings import BenchSettings
from harness.timing import timed

__all__ = [
    "POLICIES",
    "training_pipeline",
    "bench_pipeline",
    "unet_macs",
    "model_flops",
    "bench_prediction",
]

logger = logging.getLogger(__name__)

#: Keras dtype policies measured: float32 and mixed precision (bfloat16 on CPU).
POLICIES = ("float32", "mixed_bfloat16")


def training_pipeline(slices: Any, settings: BenchSettings, **options: Any) -> Any:
    """The training pipeline of ``mssoft fit`` over every slice of ``slices``, repeated.

    Parameters
    ----------
    slices : mssoft.arrays.slices.SliceSet
    settings : BenchSettings
        ``batch_size`` and ``seed``.
    **options
        Further keywords of :func:`mssoft.nn.dataset.make_dataset` (``max_degrees``,
        ``autotune``, ...).

    Returns
    -------
    tf.data.Dataset
        Endless ``(images, targets)`` batches, reshuffled and re-rotated at every pass.
    """
    from mssoft.nn.dataset import make_dataset

    return make_dataset(
        slices,
        np.arange(len(slices), dtype=np.int64),
        batch_size=settings.batch_size,
        training=True,
        seed=settings.seed,
        **options,
    ).repeat()


def bench_pipeline(slices: Any, settings: BenchSettings) -> dict[str, Any]:
    """Slices per second of the training pipeline of ``mssoft fit``.

    :func:`mssoft.nn.dataset.make_dataset` (shuffle, batch, gather from memory, rotate each slice by a
    random angle in [-5, 5] degrees with its soft mask, prefetch), repeated over epochs and drained
    as fast as possible: 3 warm-up batches, then ``pipeline_batches`` timed; with rotation (the
    training set-up) and without.

    Parameters
    ----------
    slices : mssoft.workflows.training_data.SliceSet
    settings : BenchSettings

    Returns
    -------
    dict
        ``slices_per_second`` (rotation on), ``slices_per_second_no_rotation``, sizes.
    """
    record: dict[str, Any] = {
        "what": "mssoft.nn.dataset.make_dataset(training=True): shuffle, batch, gather, rotate, "
        "prefetch; drained without a model",
        "slices_in_memory": len(slices),
        "slice_shape": list(slices.slice_shape),
        "channels": len(slices.modalities),
        "batch_size": settings.batch_size,
        "batches": settings.pipeline_batches,
    }
    for degrees, key in ((5.0, "slices_per_second"), (0.0, "slices_per_second_no_rotation")):
        dataset = training_pipeline(slices, settings, max_degrees=degrees)
        record[key] = _drain_rate(dataset, settings.pipeline_batches)
    record["slices_per_second_disk"] = _disk_pipeline_rate(slices, settings)
    return record


def _disk_pipeline_rate(slices: Any, settings: BenchSettings) -> float:
    """Slices per second of the same pipeline (rotation on) reading the on-disk slice cache."""
    import tempfile

    from mssoft.arrays.slices import SliceSet
    from mssoft.files.slice_cache import read_cached_slices, write_cached_slices

    with tempfile.TemporaryDirectory(prefix="mssoft-bench-cache-") as folder:
        parts = []
        for s, scan_id in enumerate(slices.scan_ids):
            kept, n = slices.slice_indices[s], slices.n_slices[s]
            key = {"bench": scan_id}
            write_cached_slices(folder, scan_id, slices.images[s], slices.targets[s], kept, n, key)
            parts.append(read_cached_slices(folder, scan_id, key))
        disk = SliceSet(
            [p[0] for p in parts],
            [p[1] for p in parts],
            list(slices.slice_indices),
            list(slices.scan_ids),
            list(slices.patient_ids),
            list(slices.n_slices),
            slices.modalities,
            slices.source,
        )
        return _drain_rate(training_pipeline(disk, settings), settings.pipeline_batches)


def _drain_rate(dataset: Any, batches: int) -> float:
    """Slices per second of a repeated pipeline drained as fast as possible.

    3 warm-up batches, then ``batches`` timed.
    """
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    count = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
        count += int(images.shape[0])
    return count / (time.perf_counter() - t0)


def unet_macs(model: Any) -> dict[str, Any]:
    """Multiply-accumulates of one forward pass of a model, counted from its layer shapes.

    Only convolutions count (bias, ReLU, pooling, concatenation and sigmoid are a fraction of a
    percent). A ``Conv2D`` making ``(h, w, f)`` from ``c`` channels with a ``k x k`` kernel costs
    ``h * w * f * k * k * c``; a ``Conv2DTranspose`` from ``(h, w, c)`` costs ``h * w * c * k * k
    * f`` (each input pixel scatters a ``k x k x f`` patch).

    Parameters
    ----------
    model : keras.Model
        Built with a fixed input shape (e.g. ``build_unet((192, 224, 4))``), so that every layer
        has concrete shapes.

    Returns
    -------
    dict
        ``conv_macs``, ``transposed_conv_macs``, ``forward_macs`` (per slice), ``layers``
        (per-layer MACs) and ``params``.
    """
    import keras

    conv = transposed = 0
    layers = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, c = layer.input.shape
            kh, kw = layer.kernel_size
            macs = h * w * c * kh * kw * layer.filters
            transposed += macs
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, f = layer.output.shape
            kh, kw = layer.kernel_size
            macs = h * w * f * kh * kw * layer.input.shape[-1]
            conv += macs
        else:
            continue
        layers[layer.name] = int(macs)
    return {
        "conv_macs": int(conv),
        "transposed_conv_macs": int(transposed),
        "forward_macs": int(conv + transposed),
        "layers": layers,
        "params": int(model.count_params()),
    }


def model_flops(
    slice_shape: tuple[int, int], channels: int, base_filters: int, depth: int
) -> dict[str, Any]:
    """FLOPs per slice of the U-Net of ``mssoft fit`` (:func:`mssoft.nn.unet.build_unet`).

    Returns
    -------
    dict
        :func:`unet_macs` totals, the input and padded input shapes, ``forward_gflop_per_slice``
        (2 FLOP per MAC), ``training_gflop_per_slice`` (3 x forward) and the ``rule``.
    """
    from mssoft.nn.unet import build_unet, input_multiple

    height, width = slice_shape
    multiple = input_multiple(depth)  # the slices are zero-padded to it before the model
    padded = [-(-height // multiple) * multiple, -(-width // multiple) * multiple]
    model = build_unet((*padded, channels), base_filters=base_filters, depth=depth)
    macs = unet_macs(model)
    forward = 2.0 * macs["forward_macs"]
    return {
        **{k: v for k, v in macs.items() if k != "layers"},
        "input": [height, width, channels],
        "padded_input": padded,
        "base_filters": base_filters,
        "depth": depth,
        "forward_gflop_per_slice": forward / 1e9,
        "training_gflop_per_slice": 3.0 * forward / 1e9,
        "rule": "conv and transposed-conv MACs from the layer shapes at the padded input size; "
        "1 MAC = 2 FLOP; training = 3 x forward (the forward pass, the gradients with "
        "respect to the activations and to the weights each cost about one forward)",
    }


def _fractions(gflops: float, peak_gflops: float, policy: str) -> dict[str, float]:
    """GFLOP/s over the fp32 peak; under bfloat16 also over the bf16 peak (assumed 2x fp32)."""
    if not peak_gflops > 0:
        return {"fraction_of_peak": math.nan}
    out = {"fraction_of_peak": gflops / peak_gflops}
    if policy == "mixed_bfloat16":
        out["fraction_of_bf16_peak"] = gflops / (2.0 * peak_gflops)
    return out


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def bench_prediction(
    models: dict[str, Any],
    scan: Any,
    settings: BenchSettings,
    *,
    flops: dict[str, Any],
    peak_gflops: float,
) -> dict[str, Any]:
    """Seconds to predict every axial slice of one scan (:func:`mssoft.workflows.predict.predict_volume`).

    Includes z-scoring and reassembling the volume, not reading or writing files; one warm-up
    batch first.

    Returns
    -------
    dict
        Per dtype policy: ``seconds_per_scan``, ``slices_per_second``, ``gflops`` (forward FLOPs)
        and ``fraction_of_peak`` (and ``fraction_of_bf16_peak``, as the training stage).
    """
    from mssoft.nn.inference import predict_volume

    image = scan_image(scan)
    batch = settings.predict_batch_size
    record: dict[str, Any] = {
        "what": "mssoft.workflows.predict.predict_volume(model, image) in memory: z-score, every axial "
        "slice in batches, volume reassembled",
        "slices": int(image.shape[2]),
        "batch_size": batch,
    }
    for policy, model in models.items():
        predict_volume(model, image[:, :, :batch], batch_size=batch)  # warm-up
        timing, prob = timed(lambda m=model: predict_volume(m, image, batch_size=batch), 1)
        rate = image.shape[2] / timing.median
        gflops = rate * flops["forward_gflop_per_slice"]
        record[policy] = {
            "seconds_per_scan": timing.median,
            "slices_per_second": rate,
            "gflops": gflops,
            **_fractions(gflops, peak_gflops, policy),
            "output_ok": bool(prob.shape == scan.shape and np.isfinite(prob).all()),
        }
    return record
