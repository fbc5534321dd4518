"""Training the U-Net on soft (or binary) masks: ``fit(TrainConfig)`` writes a run folder.

Run folder (``config.out``)::

    config.json     command "fit", the resolved configuration (modalities in channel order, rater,
                    mask source, model size, seed, train/val scans, ...), versions; rewritten with
                    a "result" entry when training ends
    split.json      axial slice indices of every scan in the training and validation parts
    model.keras     the model with the best monitored loss (val_loss, or loss without validation)
    history.csv     one row per epoch (1-based ``epoch``, losses, binarised Dice, seconds)
    logs/           TensorBoard logs
    backup/         training state after the last epoch (weights, optimizer, epoch), for --resume

A resumed run continues from the weights and optimizer state of its last completed epoch, up to
``epochs`` (so a finished run can also be extended); the shuffling and augmentation sequence
restarts from the seed, so it is not bit-identical to an uninterrupted run.

The model's input is z-scored axial slices ``(batch, X, Y, C)`` in the channel order of
``config["config"]["modalities"]``; its output ``(batch, X, Y, 1)`` lesion probabilities.
:func:`mssoft.nn.model_files.load_run_model` loads it in any process.

The steps are small functions (:func:`resolve_inputs`, :func:`prepare_data`, :func:`build_model`,
:func:`mssoft.nn.callbacks.run_callbacks`) so that other training loops can reuse them: under
``strategy="multiworker"`` (``MultiWorkerMirroredStrategy``, where Keras ``fit`` fails) :func:`fit`
trains with the custom loop :func:`mssoft.nn.multiworker_loop.train_loop`, which writes the same run folder;
every worker runs the same command and only the chief writes ``config.out``. Importing this module
imports TensorFlow; ``import mssoft`` does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import mssoft.nn.losses  # noqa: F401  (registers the loss and metric for load_model)
import mssoft.nn.unet  # noqa: F401  (registers the custom layers for load_model)
from mssoft.arrays.slices import SliceSet, Split, split_slices
from mssoft.errors import ConfigError
from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.folders import prepare_output_folder, write_config
from mssoft.files.layout import BACKUP_DIR, CONFIG_NAME, HISTORY_NAME, MODEL_NAME, SPLIT_NAME
from mssoft.files.scans import Scan, discover_scans, resolve_modalities
from mssoft.nn.callbacks import FitResult, completed_epochs, read_history, run_callbacks
from mssoft.nn.dataset import make_dataset
from mssoft.nn.distribute import (
    describe_strategy,
    get_strategy,
    is_multi_worker,
    worker_role,
)
from mssoft.nn.losses import BinarisedDice, SoftDiceLoss
from mssoft.nn.multiworker_loop import train_loop
from mssoft.nn.unet import build_unet
from mssoft.workflows.settings import TrainConfig
from mssoft.workflows.training_data import (
    MaskSource,
    load_slices,
    resolve_mask_source,
    training_scans,
)

__all__ = [
    "TrainConfig",
    "TrainingData",
    "FitResult",
    "fit",
    "resolve_inputs",
    "prepare_data",
    "make_datasets",
    "build_model",
    "MODEL_NAME",
    "HISTORY_NAME",
]

logger = logging.getLogger(__name__)

#: Options that may change when a run is resumed; every other resolved option must match.
_RESUMABLE_CHANGES = frozenset({"data", "epochs", "strategy", "devices"})


@dataclass
class TrainingData:
    """The resolved inputs of a run: scans, target source, channels, slices and their split."""

    scans: list[Scan]
    source: MaskSource
    modalities: tuple[str, ...]
    slices: SliceSet
    split: Split

    @property
    def monitor(self) -> str:
        """``val_loss``, or ``loss`` when there is no validation slice."""
        return "val_loss" if len(self.split.val) else "loss"


def resolve_inputs(config: TrainConfig) -> tuple[list[Scan], MaskSource]:
    """The training scans (with the rater's mask, of ``config.patients``) and the target source.

    Raises
    ------
    ConfigError, DataError
        Bad options or data (one line naming the option or file).
    """
    source = resolve_mask_source(masks=config.masks, mask_config=config.mask, rater=config.rater)
    scans = training_scans(
        discover_scans(config.data),
        rater=source.rater,
        patients=config.patients,
        raters=source.raters,
    )
    return scans, source


def prepare_data(
    config: TrainConfig, inputs: tuple[list[Scan], MaskSource] | None = None
) -> TrainingData:
    """Resolve the channels, load the lesion slices of the training scans and split them.

    Parameters
    ----------
    config : TrainConfig
    inputs : (scans, source), optional
        The result of :func:`resolve_inputs` if already known.

    Raises
    ------
    ConfigError, DataError
        Bad options or data (one line naming the option or file).
    """
    scans, source = inputs if inputs is not None else resolve_inputs(config)
    modalities = resolve_modalities(scans, config.modalities)
    slices = load_slices(scans, modalities=modalities, source=source)
    split = split_slices(
        slices, val_fraction=config.val_fraction, by=config.split, seed=config.seed
    )
    logger.info(
        "%d training and %d validation slices (split by %s)",
        len(split.train),
        len(split.val),
        split.by,
    )
    return TrainingData(scans, source, modalities, slices, split)


def build_model(config: TrainConfig, channels: int) -> keras.Model:
    """The compiled U-Net (Adam, :class:`SoftDiceLoss`, :class:`BinarisedDice`).

    Call inside ``strategy.scope()``; the input accepts slices of any size.
    """
    model = build_unet((None, None, channels), base_filters=config.base_filters, depth=config.depth)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=SoftDiceLoss(eps=config.eps),
        metrics=[BinarisedDice()],
    )
    return model


def make_datasets(config: TrainConfig, data: TrainingData) -> tuple[Any, Any]:
    """The training pipeline (shuffled, rotated) and the validation one (None without slices)."""
    train = make_dataset(
        data.slices,
        data.split.train,
        batch_size=config.batch_size,
        training=True,
        seed=config.seed,
        max_degrees=config.rotation_degrees,
    )
    if not len(data.split.val):
        return train, None
    return train, make_dataset(
        data.slices, data.split.val, batch_size=config.batch_size, training=False
    )


def resolved_config(config: TrainConfig, data: TrainingData, dtype_policy: str) -> dict[str, Any]:
    """The ``config`` entry of ``config.json``: every option as used, plus the split."""
    record = data.split.record(data.slices)
    return {
        "data": str(config.data.resolve()),
        "modalities": list(data.modalities),
        "rater": data.source.rater,
        "mask": data.source.to_dict(),
        "patients": list(config.patients) if config.patients is not None else None,
        "base_filters": config.base_filters,
        "depth": config.depth,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "optimizer": "adam",
        "loss": {"name": "SoftDiceLoss", "eps": config.eps},
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "split": config.split,
        "rotation_degrees": config.rotation_degrees,
        "strategy": config.strategy,
        "devices": list(config.devices) if config.devices is not None else None,
        "mixed_precision": config.mixed_precision,
        "dtype_policy": dtype_policy,
        "slice_shape": list(data.slices.slice_shape),
        "lesion_free_slices": "excluded (no voxel of the rater's binary mask)"
        if len(data.source.raters) == 1
        else "excluded (no voxel of any of the raters' binary masks)",
        "monitor": data.monitor,
        **{k: v for k, v in record.items() if k != "slices"},
    }


@contextlib.contextmanager
def _dtype_policy(mixed_precision: bool) -> Iterator[str]:
    """Set the global Keras dtype policy for the block, then restore the previous one."""
    previous = keras.config.dtype_policy()
    name = "float32"
    if mixed_precision:
        name = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


def _prepare_run_folder(
    config: TrainConfig, scans: Sequence[Scan]
) -> tuple[Path, dict[str, Any] | None]:
    """Create or check the run folder; return it and the stored record of a run to resume."""
    out = config.out.expanduser().resolve()
    stored = None
    try:
        stored = json.loads((out / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        pass  # no run here (prepare_output_folder judges what else the folder holds)
    if not isinstance(stored, dict) or stored.get("command") != "fit":
        stored = None
    elif not config.resume:
        raise ConfigError(
            f"Invalid value for `--out`: {out} already holds a `mssoft fit` run; pass --resume "
            "to continue it, or choose a new folder"
        )
    inputs = [path for scan in scans for path in scan.files()]
    out = prepare_output_folder(
        out, command="fit", data=config.data, input_files=inputs, overwrite=config.resume
    )
    if config.resume and stored is None:
        logger.info("%s holds no run to resume: starting a new run", out)
    return out, stored


def _check_resumable(stored: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    before = stored.get("config", {})
    changed = [k for k in current if k not in _RESUMABLE_CHANGES and before.get(k) != current[k]]
    if changed:
        detail = "; ".join(f"{k}: {before.get(k)!r} -> {current[k]!r}" for k in changed[:4])
        raise ConfigError(
            f"Invalid value for `--resume`: the options differ from the run in {out} ({detail}); "
            "use the same options, or a new --out folder"
        )


def fit(config: TrainConfig, *, callbacks: Sequence[keras.callbacks.Callback] = ()) -> FitResult:
    """Train a U-Net and write the run folder ``config.out`` (see the module docstring).

    Parameters
    ----------
    config : TrainConfig
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks, called after mssoft's own.

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        Invalid options, an existing run folder without ``resume``, or ``resume`` with options that
        differ from the stored run.
    DataError
        Missing, unreadable or inconsistent data.
    MssoftError
        A multi-worker run lost a worker (restart every worker with ``resume``).

    Notes
    -----
    With ``strategy="multiworker"`` every worker calls :func:`fit` with the same configuration
    (``TF_CONFIG`` tells them apart); ``fit`` must then be the process's first use of TensorFlow.
    Only the chief checks and writes ``config.out``; the other workers return the same
    :class:`FitResult`, built from memory.
    """
    keras.utils.set_random_seed(config.seed)
    # First TensorFlow call: MultiWorkerMirroredStrategy and logical CPUs need it uninitialised.
    strategy = get_strategy(config.strategy, config.devices)
    role = worker_role(strategy)
    with _dtype_policy(config.mixed_precision) as policy:
        inputs = resolve_inputs(config)
        if role.is_chief:
            out, stored = _prepare_run_folder(config, inputs[0])
        else:  # the chief checks and writes the run folder; the other workers only read it
            out, stored = config.out.expanduser().resolve(), None
        data = prepare_data(config, inputs)
        if not is_multi_worker(strategy):
            _check_last_batches(config.batch_size, strategy.num_replicas_in_sync, data)
        record = resolved_config(config, data, policy)
        if stored is not None:
            _check_resumable(stored, record, out)
        extra = {"strategy": describe_strategy(strategy), "split_file": SPLIT_NAME}
        if role.is_chief:
            write_config(out, "fit", record, **extra)
            write_json(data.split.record(data.slices)["slices"], out / SPLIT_NAME)

        train, val = make_datasets(config, data)
        if is_multi_worker(strategy):  # Keras fit fails under MultiWorkerMirroredStrategy
            loop = train_loop(
                strategy,
                lambda: build_model(config, len(data.modalities)),
                train,
                val,
                epochs=config.epochs,
                run_dir=out,
                callbacks=callbacks,
            )
            model = loop.model
        else:
            model = _fit_keras(config, strategy, data, train, val, out, callbacks)

    if not role.is_chief:  # only under multiworker: the chief wrote the files
        logger.info("%s done; the chief wrote %s", role.describe(), out)
        return loop
    result = FitResult.from_history(out, read_history(out / HISTORY_NAME), data.monitor)
    if not result.model_path.is_file():
        logger.warning("no epoch had a finite %s: saving the last model", data.monitor)
        with atomic_path(result.model_path) as tmp:
            model.save(tmp)
    summary = {
        k: v for k, v in asdict(result).items() if k not in ("history", "run_dir", "model_path")
    }
    write_config(out, "fit", record, **extra, result=summary)
    return result


def _check_last_batches(batch_size: int, replicas: int, data: TrainingData) -> None:
    """Refuse a Keras ``fit`` under ``replicas`` > 1 whose last batch leaves a device empty.

    Keras splits each batch over the devices; a last batch of fewer slices than devices leaves a
    device with an empty batch, which fails (oneDNN's CPU convolutions return a wrong shape) or
    hangs. The multi-worker loop handles it, ``model.fit`` does not.
    """
    sizes = {"training": len(data.split.train), "validation": len(data.split.val)}

    def fits(size: int) -> bool:
        return all(n % size == 0 or n % size >= replicas for n in sizes.values())

    if replicas < 2 or fits(batch_size):
        return
    part, n = next((p, n) for p, n in sizes.items() if 0 < n % batch_size < replicas)
    candidates = sorted(
        range(replicas, 4 * batch_size + replicas), key=lambda b: (abs(b - batch_size), -b)
    )
    better = next((b for b in candidates if b % replicas == 0 and fits(b)), None)
    hint = f"e.g. --batch-size {better}" if better else "fewer devices or another --val-fraction"
    raise ConfigError(
        f"Invalid value for `--batch-size`: the last batch of the {n} {part} slices holds "
        f"{n % batch_size} slice(s) for {replicas} devices, which leaves a device without data; "
        f"use {hint}"
    )


def _fit_keras(
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    data: TrainingData,
    train: Any,
    val: Any,
    out: Path,
    callbacks: Sequence[keras.callbacks.Callback],
) -> keras.Model:
    """Train with Keras ``model.fit`` (one device, or mirrored on one machine)."""
    if tf.train.latest_checkpoint(str(out / BACKUP_DIR)):
        raise ConfigError(
            f"Invalid value for `--resume`: {out / BACKUP_DIR} holds the state of a run trained "
            "with --strategy multiworker; resume it with that strategy, or use a new --out folder"
        )
    with strategy.scope():
        model = build_model(config, len(data.modalities))
    done = completed_epochs(out / BACKUP_DIR)
    if done >= config.epochs:
        logger.info("%s holds %d trained epochs: nothing to do (raise --epochs)", out, done)
    model.fit(
        train,
        validation_data=val,
        epochs=config.epochs,
        verbose=0,
        shuffle=False,
        callbacks=[*run_callbacks(out, data.monitor), *callbacks],
    )
    return model
