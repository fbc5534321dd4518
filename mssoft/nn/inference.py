"""Lesion probabilities of a whole scan from a trained model, slice by slice.

Array in, array out: the model is any object with Keras's ``predict_on_batch`` (a Keras model, or
:class:`mssoft.nn.model_files.ExportedModel`). The slices are zero-padded to the multiple the
U-Net needs and the probabilities cropped back. This module does not import TensorFlow itself
(the model's owner has). :class:`AveragedModel` is such an object too: the mean probability of
several models (an ensemble), each optionally averaged with its prediction of the left-right
mirrored slice (test-time augmentation, ``tta="flip"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mssoft.arrays.intensity import Normaliser
from mssoft.arrays.resample import resample_volume, resampled_shape
from mssoft.arrays.slices import from_axial_slices, pad_slices, to_axial_slices
from mssoft.choices import TTA_MODES

__all__ = [
    "AveragedModel",
    "averaged_model",
    "predict_volume",
    "predict_volume_resampled",
    "model_input_multiple",
    "full_batch",
]


class AveragedModel:
    """The mean lesion probability of several models, with optional test-time augmentation.

    For a batch of axial slices ``(batch, X, Y, C)`` (X is the RAS left-right axis), each model's
    output is, with ``tta="flip"``, the mean of its probabilities for the slices and (mirrored
    back) for the slices mirrored left-right; the result is the mean over the models.

    Parameters
    ----------
    models : sequence of objects with ``predict_on_batch``
        Keras models mapping ``(batch, X, Y, C)`` to ``(batch, X, Y, 1)`` probabilities.
    tta : {"none", "flip"}
    """

    def __init__(self, models: Sequence[Any], *, tta: str = "none") -> None:
        if not models:
            raise ValueError("`models` must hold at least one model")
        if tta not in TTA_MODES:
            raise ValueError(
                f"Invalid value for `tta` (--tta). Expected one of {', '.join(TTA_MODES)}. "
                f"Received: {tta!r}"
            )
        self.models = list(models)
        self.tta = tta

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        """Mean probabilities ``(batch, X, Y, 1)`` float32 of ``batch`` ``(batch, X, Y, C)``."""
        batch = np.asarray(batch)
        total = None
        for model in self.models:
            out = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
            if self.tta == "flip":
                mirrored = np.ascontiguousarray(batch[:, ::-1])
                back = np.asarray(model.predict_on_batch(mirrored), dtype=np.float32)[:, ::-1]
                out = (out + back) / np.float32(2)
            total = out if total is None else total + out
        assert total is not None
        return total / np.float32(len(self.models))


def averaged_model(models: Sequence[Any], *, tta: str = "none") -> Any:
    """One model as it is (no TTA), else an :class:`AveragedModel` of ``models``."""
    if len(models) == 1 and tta == "none":
        AveragedModel(models, tta=tta)  # validates
        return models[0]
    return AveragedModel(models, tta=tta)


def model_input_multiple(model: Any) -> int:
    """What a model's slice sides must be multiples of: the product of its pooling sizes.

    ``model.input_multiple`` when the model has it (:class:`~mssoft.nn.model_files.ExportedModel`),
    else the product of the first pool size of every pooling layer (``2 ** depth`` for
    :func:`mssoft.nn.unet.build_unet`); 1 for a model without pooling.
    """
    given = getattr(model, "input_multiple", None)
    if given is not None:
        return int(given)
    multiple = 1
    for layer in getattr(model, "layers", ()):
        pool_size = getattr(layer, "pool_size", None)
        if pool_size is not None:
            multiple *= int(np.ravel(pool_size)[0])
    return multiple


def predict_volume(
    model: Any,
    image: np.ndarray,
    *,
    batch_size: int = 16,
    multiple: int | None = None,
    normaliser: Normaliser | None = None,
) -> np.ndarray:
    """Lesion probabilities of one scan, slice by slice.

    Parameters
    ----------
    model : keras.Model or ExportedModel
        Maps z-scored axial slices ``(batch, X', Y', C)`` to probabilities ``(batch, X', Y', 1)``,
        ``X'`` and ``Y'`` multiples of ``multiple``.
    image : ndarray of shape (X, Y, Z, C)
        Raw intensities in RAS orientation, channels in the model's modality order. Each channel
        is normalised by ``normaliser`` first, as in training.
    batch_size : int, optional
        Slices per model call (memory, not results, depends on it).
    multiple : int, optional
        Slices are zero-padded at the end of X and Y to multiples of it and the probabilities
        cropped back (the run records it as ``input_multiple``); default
        :func:`model_input_multiple`.
    normaliser : Normaliser, optional
        The run's intensity normalisation
        (:func:`mssoft.files.normalisation.run_normaliser`); default z-score over the brain.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Probabilities in [0, 1].

    Raises
    ------
    ValueError
        ``image`` is not 4D, or the model's output does not have shape ``(batch, X', Y', 1)``.
    """
    image = np.asarray(image)
    if image.ndim != 4:
        raise ValueError(f"`image` must have shape (X, Y, Z, C), got {image.shape}")
    if int(batch_size) < 1:
        raise ValueError(
            f"Invalid value for `batch_size`. Expected an integer >= 1. Received: {batch_size}"
        )
    multiple = model_input_multiple(model) if multiple is None else int(multiple)
    slices = to_axial_slices((normaliser or Normaliser()).apply(image))  # (Z, X, Y, C)
    n_slices, nx, ny = slices.shape[:3]
    prob = np.empty((n_slices, nx, ny), dtype=np.float32)
    # A slice without brain is all zeros after normalisation, and every such slice gets the same
    # probabilities: the model runs on one of them, not on each (11-18 % of the axial slices of
    # a skull-stripped 1 mm scan).
    with_brain = np.flatnonzero(slices.any(axis=(1, 2, 3)))
    empty = np.setdiff1d(np.arange(n_slices), with_brain)
    order = np.concatenate([with_brain, empty[:1]])
    for start in range(0, len(order), int(batch_size)):
        rows = order[start : start + int(batch_size)]
        prob[rows] = _predict_batch(model, slices[rows], multiple, int(batch_size))
    if len(empty) > 1:
        prob[empty[1:]] = prob[empty[0]]
    return from_axial_slices(prob)


def _predict_batch(model: Any, slices: np.ndarray, multiple: int, batch_size: int) -> np.ndarray:
    """Probabilities ``(b, X, Y)`` of ``slices`` ``(b, X, Y, C)``, ``b <= batch_size``.

    The slices are padded to the model's multiple and, with zero slices, to a full batch: Keras
    traces its predict step once per input shape (an XLA-compiled model compiles once per
    shape), so every batch of a run has one shape.
    """
    n, nx, ny = slices.shape[:3]
    batch = full_batch(pad_slices(np.ascontiguousarray(slices), multiple), batch_size)
    # predict_on_batch runs Keras's compiled predict step: ~1.3x faster than model(batch).
    output = np.asarray(model.predict_on_batch(batch))
    if output.shape != (*batch.shape[:3], 1):
        raise ValueError(
            f"model output has shape {output.shape}, expected {(*batch.shape[:3], 1)} "
            f"for input slices of shape {batch.shape}"
        )
    return output[:n, :nx, :ny, 0]  # the slices asked for, cropped back


def full_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` ``(B, X, Y, C)`` with zero slices appended up to ``size`` (B <= size).

    Keras traces a predict step once per input shape, and an XLA-compiled model compiles once
    per shape; padding the last batch of each scan keeps one shape per run (scans on one grid)
    at the cost of up to ``size - 1`` wasted slices per scan.
    """
    missing = size - batch.shape[0]
    if missing <= 0:
        return batch
    return np.concatenate([batch, np.zeros((missing, *batch.shape[1:]), batch.dtype)])


def predict_volume_resampled(
    model: Any,
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    target_mm: tuple[float, float, float] | None,
    *,
    batch_size: int = 16,
    multiple: int | None = None,
    normaliser: Normaliser | None = None,
) -> np.ndarray:
    """Lesion probabilities of a scan predicted at another voxel size, on the scan's own grid.

    The image is resampled (trilinear) to ``target_mm`` over the same field of view, predicted
    with :func:`predict_volume`, and the probabilities are resampled (trilinear) back.

    Parameters
    ----------
    model : keras.Model
        As for :func:`predict_volume`.
    image : ndarray of shape (X, Y, Z, C)
        Raw intensities in RAS orientation.
    spacing_mm : tuple of 3 float
        The image's voxel size (mm, RAS axes).
    target_mm : tuple of 3 float or None
        Voxel size the model was trained on (mm, RAS axes); None predicts on the scan's own grid
        (:func:`predict_volume`, no resampling).
    batch_size : int, optional
        Slices per model call.
    multiple, normaliser : optional
        As for :func:`predict_volume`.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Probabilities in [0, 1] on the input grid.
    """
    image = np.asarray(image)
    if target_mm is None:
        return predict_volume(
            model, image, batch_size=batch_size, multiple=multiple, normaliser=normaliser
        )
    shape = resampled_shape(image.shape[:3], spacing_mm, target_mm)
    prob = predict_volume(
        model,
        resample_volume(image, shape),
        batch_size=batch_size,
        multiple=multiple,
        normaliser=normaliser,
    )
    return np.clip(resample_volume(prob, image.shape[:3]), 0.0, 1.0)
