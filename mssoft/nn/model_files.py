"""Loading a trained model from a run folder or an export folder (imports TensorFlow).

A run's ``model.keras`` holds built-in Keras layers only; importing :mod:`mssoft.nn.losses` here
registers the compiled loss and metric, and :mod:`mssoft.nn.legacy_layers` the padding layers of
models saved by earlier versions. Every ``.keras`` file is loaded with Keras ``safe_mode``: a
file whose configuration would run code (a ``Lambda`` layer) is refused.

An export folder's TensorFlow SavedModel is a program: loading and calling it runs whatever
graph its author put in it (which may read and write any file). So an export folder's model is
loaded from the ``model.keras`` it carries, checked against the SHA-256 its ``mssoft.json``
records, and its SavedModel is never run; an export folder without ``model.keras`` (written by an
earlier mssoft, or by hand) is refused unless the caller trusts it (``trust_savedmodel``,
``--trust-savedmodel``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

import mssoft.nn.legacy_layers  # noqa: F401  (layers of models saved by earlier versions)
import mssoft.nn.losses  # noqa: F401  (registers the loss and metric for load_model)
from mssoft.errors import DataError
from mssoft.files.folders import read_config
from mssoft.files.layout import CONFIG_NAME, EXPORT_INFO_NAME, MODEL_NAME, SAVED_MODEL_DIR
from mssoft.files.run_record import RunRecord, parse_run_record
from mssoft.nn.inference import averaged_model
from mssoft.nn.saved_model import ExportedModel, load_saved_model

__all__ = [
    "load_run_model",
    "check_model_matches_record",
    "load_model_folder",
    "file_sha256",
    "load_ensemble",
    "ExportedModel",
    "with_dtype_policy",
    "mixed_precision_policy",
]

logger = logging.getLogger(__name__)


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
    run_dir: str | Path,
    *,
    compile: bool = False,
    mixed_precision: bool = False,
    record: RunRecord | None = None,
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
    record : RunRecord, optional
        The run record the model must match (an export folder's, from its ``mssoft.json``);
        default: read from ``run_dir/config.json`` when there is one.

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
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from None
    if record is None and (Path(run_dir) / CONFIG_NAME).is_file():
        record = parse_run_record(read_config(run_dir).get("config"), Path(run_dir) / CONFIG_NAME)
    if record is not None:
        check_model_matches_record(model, record, path)
    return with_dtype_policy(model, mixed_precision_policy()) if mixed_precision else model


def check_model_matches_record(model: keras.Model, record: RunRecord, path: str | Path) -> None:
    """Refuse a model whose inputs or outputs disagree with its run record.

    Parameters
    ----------
    model : keras.Model
        Input ``(batch, X, Y, C)``, output ``(batch, X, Y, 1)``.
    record : RunRecord
        The run's validated record: ``C`` must be the number of its modalities, and the model's
        poolings its ``depth`` (``2 ** poolings`` its ``input_multiple``).
    path : path-like
        The model file, named in the message.

    Raises
    ------
    DataError
        Naming the model file, the record and what disagrees.
    """
    problems = []
    channels = model.input_shape[-1]
    if channels != len(record.modalities):
        problems.append(
            f"it takes {channels} input channels, the record {len(record.modalities)} "
            f"({','.join(record.modalities)})"
        )
    if model.output_shape[-1] != 1:
        problems.append(f"it gives {model.output_shape[-1]} output channels, not 1")
    pools = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    if record.depth is not None and pools != record.depth:
        problems.append(f"it has depth {pools}, the record {record.depth}")
    elif 2**pools > record.input_multiple and record.input_multiple > 1:
        problems.append(
            f"it needs slice sides that are multiples of {2 ** pools}, the record says "
            f"{record.input_multiple}"
        )
    if problems:
        raise DataError(
            f"{path}: the model does not match {record.source} ({'; '.join(problems)}); "
            "was the model file replaced?"
        )


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hexadecimal digits."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model_folder(
    folder: str | Path, *, mixed_precision: bool = False, trust_savedmodel: bool = False
) -> Any:
    """The model of a run folder or of an export folder, without running an export's graph.

    A run folder's ``model.keras``, or an export folder's copy of it (checked against the
    ``keras_model.sha256`` of its ``mssoft.json``), loaded as a Keras model with ``safe_mode``.
    An export folder without ``model.keras`` holds only its TensorFlow SavedModel: a program,
    loaded (:class:`ExportedModel`) only with ``trust_savedmodel``. Either has
    ``predict_on_batch``, so :func:`mssoft.nn.inference.predict_volume` takes both.
    ``mixed_precision`` applies to a Keras model (:func:`load_run_model`); a SavedModel
    computes in the precision it was exported with.

    Raises
    ------
    DataError
        No model in ``folder``, one that cannot be loaded, a ``model.keras`` that is not the
        one ``mssoft.json`` records, or a SavedModel without ``model.keras`` and without
        ``trust_savedmodel``.
    """
    folder = Path(folder)
    if not (folder / EXPORT_INFO_NAME).is_file():  # a run folder, not an export folder
        return load_run_model(folder, mixed_precision=mixed_precision)
    info_path = folder / EXPORT_INFO_NAME
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{info_path}: cannot read ({exc})") from None
    info = info if isinstance(info, dict) else {}
    keras_file = folder / MODEL_NAME
    if keras_file.is_file():
        record = info.get("keras_model") if isinstance(info.get("keras_model"), dict) else {}
        expected = record.get("sha256")
        if expected is not None and file_sha256(keras_file) != expected:
            raise DataError(
                f"{keras_file}: its SHA-256 differs from the one {info_path} records (a changed "
                "or damaged file); export the run again"
            )
        run_config = info.get("run_config")
        config = run_config.get("config") if isinstance(run_config, dict) else None
        return load_run_model(
            folder,
            mixed_precision=mixed_precision,
            record=parse_run_record(config, info_path),  # the export's, not its config.json
        )
    saved_model = folder / SAVED_MODEL_DIR
    if not trust_savedmodel:
        raise DataError(
            f"{folder}: holds no {MODEL_NAME}, only the TensorFlow SavedModel {saved_model}, "
            "which is a program that can run any code when loaded; mssoft runs it only with "
            "--trust-savedmodel (give it only for a folder you trust), or export the run again "
            f"with this mssoft (which adds {MODEL_NAME})"
        )
    logger.warning("%s: running its TensorFlow SavedModel (--trust-savedmodel)", saved_model)
    if mixed_precision:
        logger.warning("%s is an export folder: --mixed-precision has no effect on it", folder)
    return load_saved_model(saved_model, input_multiple=int(info.get("input_multiple", 1)))


def load_ensemble(
    runs: Sequence[str | Path],
    *,
    tta: str = "none",
    mixed_precision: bool = False,
    trust_savedmodel: bool = False,
) -> Any:
    """The models of several run or export folders as one predictor.

    One folder without test-time augmentation gives its own model; otherwise an
    :class:`mssoft.nn.inference.AveragedModel` (mean over the folders, ``tta="flip"``: each also
    averaged with the left-right mirror of the slices).

    ``trust_savedmodel``: see :func:`load_model_folder`.

    Raises
    ------
    DataError
        A folder has no loadable model.
    ConfigError
        ``tta`` is not ``none`` or ``flip``.
    """
    from mssoft.errors import ConfigError

    models = [
        load_model_folder(r, mixed_precision=mixed_precision, trust_savedmodel=trust_savedmodel)
        for r in runs
    ]
    try:
        return averaged_model(models, tta=tta)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
