"""The TensorFlow SavedModel of ``mssoft export``: writing it and running it.

The SavedModel has one endpoint, ``serve`` (also the ``serving_default`` signature that
TensorFlow Serving calls): input ``slices``, a float32 batch ``(batch, X, Y, C)`` of normalised
axial slices of any size; output ``probabilities``, float32 ``(batch, X, Y, 1)``. The endpoint
zero-pads X and Y at their end to multiples of the U-Net's ``2 ** depth`` and crops the
probabilities back, so a caller need not pad. Loading it needs TensorFlow only
(``tf.saved_model.load``), neither Keras nor mssoft.

Importing this module imports TensorFlow and Keras; ``import mssoft`` does not.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mssoft.errors import DataError

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ENDPOINT_NAME",
    "write_saved_model",
    "ExportedModel",
    "load_saved_model",
]

#: Name of the signature's input, output and endpoint.
INPUT_NAME = "slices"
OUTPUT_NAME = "probabilities"
ENDPOINT_NAME = "serve"


def write_saved_model(model: keras.Model, path: str | Path, *, multiple: int) -> Path:
    """Write ``model`` as a TensorFlow SavedModel whose endpoint pads and crops (see the module).

    The folder appears complete or not at all: it is written beside ``path`` and renamed onto it
    (an earlier folder at ``path`` is replaced).

    Parameters
    ----------
    model : keras.Model
        Input ``(batch, X, Y, C)`` with X, Y multiples of ``multiple``; output
        ``(batch, X, Y, 1)``.
    path : path-like
        The SavedModel folder to write.
    multiple : int
        What the model's slice sides must be multiples of (``2 ** depth``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    channels = int(model.input_shape[-1])
    multiple = int(multiple)

    def serve(slices: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.shape(slices)
        padding = [[0, 0], [0, (-shape[1]) % multiple], [0, (-shape[2]) % multiple], [0, 0]]
        probabilities = model(tf.pad(slices, padding), training=False)
        return {OUTPUT_NAME: tf.cast(probabilities[:, : shape[1], : shape[2], :], tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=ENDPOINT_NAME,
        fn=serve,
        input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32, name=INPUT_NAME)],
    )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        _write_archive(archive, tmp, path)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def _write_archive(archive: Any, tmp: Path, path: Path) -> None:
    """Write ``archive`` to ``tmp``; TensorFlow's file errors become an ``OSError`` naming ``path``.

    A full disk raises ``OSError(ENOSPC)``, a refused write ``OSError(EACCES)`` (the command line
    prints them as one line), instead of TensorFlow's ``ResourceExhaustedError`` and the like.
    """
    try:
        archive.write_out(str(tmp), verbose=False)
    except tf.errors.OpError as exc:
        message = str(getattr(exc, "message", exc))
        if "No space left on device" in message:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        if isinstance(exc, tf.errors.PermissionDeniedError):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path)) from None
        raise


class ExportedModel:
    """A loaded SavedModel of ``mssoft export``, with the ``predict_on_batch`` of a Keras model.

    So :func:`mssoft.nn.inference.predict_volume` runs it like a run's Keras model.

    Parameters
    ----------
    loaded : object
        The result of ``tf.saved_model.load``.
    input_multiple : int
        The padding multiple recorded in ``mssoft.json`` (the endpoint pads too).
    """

    def __init__(self, loaded: Any, input_multiple: int) -> None:
        self._loaded = loaded
        self._signature = loaded.signatures["serving_default"]
        self.input_multiple = int(input_multiple)

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(batch, X, Y, 1)`` float32 of normalised slices ``(batch, X, Y, C)``."""
        output = self._signature(**{INPUT_NAME: tf.constant(batch, dtype=tf.float32)})
        return output[OUTPUT_NAME].numpy()


def load_saved_model(path: str | Path, *, input_multiple: int) -> ExportedModel:
    """Load the SavedModel folder ``path`` (written by :func:`write_saved_model`).

    Raises
    ------
    DataError
        The folder does not hold a loadable SavedModel with the ``serving_default`` signature.
    """
    try:
        loaded = tf.saved_model.load(str(path))
        return ExportedModel(loaded, input_multiple)
    except (OSError, ValueError, KeyError, tf.errors.OpError) as exc:
        raise DataError(f"{path}: cannot load SavedModel ({type(exc).__name__}: {exc})") from None
