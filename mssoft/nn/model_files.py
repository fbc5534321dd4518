"""Loading a trained model from a run folder (imports TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import keras

import mssoft.nn.losses  # noqa: F401  (registers the loss and metric for load_model)
import mssoft.nn.unet  # noqa: F401  (registers the custom layers for load_model)
from mssoft.errors import DataError
from mssoft.files.layout import MODEL_NAME

__all__ = ["load_run_model", "with_dtype_policy", "mixed_precision_policy"]


def mixed_precision_policy() -> str:
    """``mixed_float16`` with a GPU, else ``mixed_bfloat16`` (the policy ``fit`` trains with)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def with_dtype_policy(model: keras.Model, policy: str) -> keras.Model:
    """A copy of a functional ``model`` computing under ``policy``, with the same weights.

    Every layer but the input and the output layers gets ``policy``; the output (the U-Net's
    ``head``) stays float32 probabilities.
    """
    config = model.get_config()
    layers = config["layers"]

    def name(layer: dict) -> str:
        return layer.get("name") or layer["config"]["name"]

    entries = config.get("output_layers") or []
    if entries and isinstance(entries[0], str):  # one output: [name, node, tensor]
        entries = [entries]
    outputs = {entry[0] for entry in entries} or {name(layers[-1])}
    for layer in layers:
        if layer["class_name"] != "InputLayer" and name(layer) not in outputs:
            layer["config"]["dtype"] = policy
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def load_run_model(
    run_dir: str | Path, *, compile: bool = False, mixed_precision: bool = False
) -> keras.Model:
    """Load ``run_dir/model.keras`` (any process; the custom objects are registered on import).

    Parameters
    ----------
    run_dir : path-like
        Output folder of ``mssoft fit``.
    compile : bool
        Also restore the optimizer, loss and metric (not needed to predict).
    mixed_precision : bool
        Compute in bfloat16 on CPU / float16 on GPU (:func:`with_dtype_policy`; the output layer
        stays float32), whatever precision the model was trained in. Not with ``compile``.

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
        model = keras.saving.load_model(path, compile=compile)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from None
    return with_dtype_policy(model, mixed_precision_policy()) if mixed_precision else model
