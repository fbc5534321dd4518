"""Loading a trained model from a run folder or an export folder (imports TensorFlow).

A run's ``model.keras`` holds built-in Keras layers only; importing :mod:`mssoft.nn.losses` here
registers the compiled loss and metric, and :mod:`mssoft.nn.legacy_layers` the padding layers of
models saved by earlier versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras

import mssoft.nn.legacy_layers  # noqa: F401  (layers of models saved by earlier versions)
import mssoft.nn.losses  # noqa: F401  (registers the loss and metric for load_model)
from mssoft.errors import DataError
from mssoft.files.layout import EXPORT_INFO_NAME, MODEL_NAME, SAVED_MODEL_DIR
from mssoft.nn.saved_model import ExportedModel, load_saved_model

__all__ = ["load_run_model", "load_model_folder", "ExportedModel"]


def load_run_model(run_dir: str | Path, *, compile: bool = False) -> keras.Model:
    """Load ``run_dir/model.keras`` (any process; the custom objects are registered on import).

    Parameters
    ----------
    run_dir : path-like
        Output folder of ``mssoft fit``.
    compile : bool
        Also restore the optimizer, loss and metric (not needed to predict).

    Returns
    -------
    keras.Model
        Input z-scored slices ``(batch, X, Y, C)`` in the channel order of the run's
        ``config["config"]["modalities"]``; output ``(batch, X, Y, 1)`` float32 probabilities.

    Raises
    ------
    DataError
        No model in ``run_dir`` or an unreadable one.
    """
    path = Path(run_dir) / MODEL_NAME
    if not path.is_file():
        raise DataError(f"{path}: not found (is {run_dir} a finished `mssoft fit` run?)")
    try:
        return keras.saving.load_model(path, compile=compile)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from None


def load_model_folder(folder: str | Path) -> Any:
    """The model of a run folder (a Keras model) or of an export folder (:class:`ExportedModel`).

    Either has ``predict_on_batch``, so :func:`mssoft.nn.inference.predict_volume` takes both.

    Raises
    ------
    DataError
        No model in ``folder``, or one that cannot be loaded.
    """
    folder = Path(folder)
    if not (folder / EXPORT_INFO_NAME).is_file():  # a run folder, not an export folder
        return load_run_model(folder)
    info = json.loads((folder / EXPORT_INFO_NAME).read_text())
    return load_saved_model(
        folder / str(info.get("saved_model", SAVED_MODEL_DIR)),
        input_multiple=int(info.get("input_multiple", 1)),
    )
