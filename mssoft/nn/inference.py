"""Lesion probabilities of a whole scan from a trained model, slice by slice.

Array in, array out: the model is any object with Keras's ``predict_on_batch``. This module does
not import TensorFlow itself (the model's owner has). :class:`AveragedModel` is such an object
too: the mean probability of several models (an ensemble), each optionally averaged with its
prediction of the left-right mirrored slice (test-time augmentation, ``tta="flip"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mssoft.arrays.intensity import zscore_brain
from mssoft.arrays.slices import from_axial_slices, to_axial_slices

__all__ = ["TTA_MODES", "AveragedModel", "averaged_model", "predict_volume"]

#: Test-time augmentations: ``none``, or ``flip`` (left-right mirror, RAS axis 0).
TTA_MODES = ("none", "flip")


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


def predict_volume(model: Any, image: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
    """Lesion probabilities of one scan, slice by slice.

    Parameters
    ----------
    model : keras.Model
        Maps z-scored axial slices ``(batch, X, Y, C)`` to probabilities ``(batch, X, Y, 1)``.
    image : ndarray of shape (X, Y, Z, C)
        Raw intensities in RAS orientation, channels in the model's modality order. Each channel
        is z-scored over its non-zero voxels first, as in training.
    batch_size : int, optional
        Slices per model call (memory, not results, depends on it).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Probabilities in [0, 1].

    Raises
    ------
    ValueError
        ``image`` is not 4D, or the model's output does not have shape ``(batch, X, Y, 1)``.
    """
    image = np.asarray(image)
    if image.ndim != 4:
        raise ValueError(f"`image` must have shape (X, Y, Z, C), got {image.shape}")
    if int(batch_size) < 1:
        raise ValueError(
            f"Invalid value for `batch_size`. Expected an integer >= 1. Received: {batch_size}"
        )
    slices = to_axial_slices(zscore_brain(image))  # (Z, X, Y, C)
    n_slices, nx, ny = slices.shape[:3]
    prob = np.empty((n_slices, nx, ny), dtype=np.float32)
    for start in range(0, n_slices, int(batch_size)):
        batch = np.ascontiguousarray(slices[start : start + int(batch_size)])
        # predict_on_batch runs Keras's compiled predict step: ~1.3x faster than model(batch).
        output = np.asarray(model.predict_on_batch(batch))
        if output.shape != (batch.shape[0], nx, ny, 1):
            raise ValueError(
                f"model output has shape {output.shape}, expected {(batch.shape[0], nx, ny, 1)} "
                f"for input slices of shape {batch.shape}"
            )
        prob[start : start + batch.shape[0]] = output[..., 0]
    return from_axial_slices(prob)
