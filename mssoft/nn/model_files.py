"""Loading a trained model from a run folder (imports TensorFlow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

import mssoft.nn.losses  # noqa: F401  (registers the loss and metric for load_model)
import mssoft.nn.unet  # noqa: F401  (registers the custom layers for load_model)
from mssoft.errors import DataError
from mssoft.files.layout import MODEL_NAME
from mssoft.nn.inference import averaged_model

__all__ = ["load_run_model", "load_ensemble"]


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


def load_ensemble(runs: Sequence[str | Path], *, tta: str = "none") -> Any:
    """The models of several runs as one predictor (:func:`mssoft.nn.inference.averaged_model`).

    One run without test-time augmentation gives its own model; otherwise an
    :class:`mssoft.nn.inference.AveragedModel` (mean over the runs, ``tta="flip"``: each also
    averaged with the left-right mirror of the slices).

    Raises
    ------
    DataError
        A run has no loadable model.
    ConfigError
        ``tta`` is not ``none`` or ``flip``.
    """
    from mssoft.errors import ConfigError

    models = [load_run_model(r) for r in runs]
    try:
        return averaged_model(models, tta=tta)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
