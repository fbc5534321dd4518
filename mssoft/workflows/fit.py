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
    slice_cache/    the training slices on disk (``--slice-cache disk``, or ``auto`` for a set
                    too large for memory), reused by --resume; safe to delete after training

A resumed run continues from the weights and optimizer state of its last completed epoch, up to
``epochs`` (so a finished run can also be extended); the shuffling and augmentation sequence
restarts from the seed, so it is not bit-identical to an uninterrupted run.

The model's input is normalised axial slices ``(batch, X, Y, C)`` (``config.normalise``: z-scored
by default; ``intensity_landmarks.json`` holds the histogram landmarks) in the channel order of
``config["config"]["modalities"]``, ``X`` and ``Y`` multiples of
``config["config"]["input_multiple"]`` (``2 ** depth``; the training batches are zero-padded to
it); its output ``(batch, X, Y, 1)`` lesion probabilities. It is saved uncompiled (no optimizer,
loss or schedule: :func:`mssoft.nn.callbacks.save_inference_model`) and holds built-in Keras
layers only, so ``keras.saving.load_model(path)`` loads it in any process that has Keras, without
mssoft; :func:`mssoft.nn.model_files.load_run_model` too (also for runs saved compiled by earlier
versions). The training state for ``--resume`` is in ``backup/``.

The steps are small functions (:func:`resolve_inputs`, :func:`prepare_data`, :func:`build_model`,
:func:`mssoft.nn.callbacks.run_callbacks`) so that other training loops can reuse them: under
``strategy="multiworker"`` (``MultiWorkerMirroredStrategy``, where Keras ``fit`` fails) :func:`fit`
trains with the custom loop :func:`mssoft.nn.multiworker_loop.train_loop`, which writes the same
run folder;
every worker runs the same command and only the chief writes ``config.out``. Importing this module
imports TensorFlow; ``import mssoft`` does not.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import mssoft.nn.losses  # noqa: F401  (registers the loss and metric for load_model)
from mssoft.arrays.intensity import Normaliser
from mssoft.arrays.slices import SliceSet, Split, split_slices
from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import write_json
from mssoft.files.folders import (
    check_output_location,
    folder_lock,
    prepare_output_folder,
    read_config,
    remove_partial_files,
    write_config,
)
from mssoft.files.geometry import training_geometry
from mssoft.files.history import read_history
from mssoft.files.layout import (
    BACKUP_DIR,
    HISTORY_NAME,
    MODEL_NAME,
    SLICE_CACHE_DIR,
    SPLIT_NAME,
)
from mssoft.files.nifti import read_header
from mssoft.files.normalisation import normalise_record, write_landmarks
from mssoft.files.run_record import resume_differences, settings_entry
from mssoft.files.scans import Scan, discover_scans, resolve_modalities
from mssoft.nn.callbacks import (
    FitResult,
    completed_epochs,
    run_callbacks,
    save_inference_model,
)
from mssoft.nn.dataset import make_dataset
from mssoft.nn.distribute import (
    describe_strategy,
    get_strategy,
    is_multi_worker,
    worker_role,
)
from mssoft.nn.losses import BinarisedDice, SoftDiceLoss
from mssoft.nn.model_reuse import kept_or_built
from mssoft.nn.multiworker_loop import train_loop
from mssoft.nn.strong_augment import STRONG_RANGES
from mssoft.nn.unet import build_unet, input_multiple
from mssoft.nn.warmup import LinearWarmup, prior_logit
from mssoft.workflows.settings import TrainConfig, TrainingSettings
from mssoft.workflows.training_data import (
    MaskSource,
    learn_normaliser,
    load_slices,
    resolve_mask_source,
    slice_storage,
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
    "steps_per_epoch",
    "check_depth",
    "build_model",
    "lesion_prior",
    "MODEL_NAME",
    "HISTORY_NAME",
]

logger = logging.getLogger(__name__)



@dataclass
class TrainingData:
    """The resolved inputs of a run: scans, target source, channels, slices and their split."""

    scans: list[Scan]
    source: MaskSource
    modalities: tuple[str, ...]
    slices: SliceSet
    split: Split
    normaliser: Normaliser = field(default_factory=Normaliser)

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
    config: TrainConfig,
    inputs: tuple[list[Scan], MaskSource] | None = None,
    *,
    cache: Path | None = None,
) -> TrainingData:
    """Resolve the channels, load the lesion slices of the training scans and split them.

    Parameters
    ----------
    config : TrainConfig
    inputs : (scans, source), optional
        The result of :func:`resolve_inputs` if already known.
    cache : Path, optional
        Slice-cache folder, used when ``config.slice_cache`` (``disk``, or ``auto`` for a large
        set: :func:`mssoft.workflows.training_data.slice_storage`) puts the slices on disk;
        default ``config.out / "slice_cache"``.

    Raises
    ------
    ConfigError, DataError
        Bad options or data (one line naming the option or file).
    """
    scans, source = inputs if inputs is not None else resolve_inputs(config)
    check_depth(config.depth, [read_header(scan.images["flair"]).ras_shape[:2] for scan in scans])
    modalities = resolve_modalities(scans, config.modalities)
    normaliser = learn_normaliser(scans, modalities=modalities, method=config.normalise)
    storage = slice_storage(scans, modalities=modalities, mode=config.slice_cache)
    if storage == "disk" and cache is None:
        cache = config.out.expanduser().resolve() / SLICE_CACHE_DIR
    slices = load_slices(
        scans,
        modalities=modalities,
        source=source,
        normaliser=normaliser,
        cache=cache if storage == "disk" else None,
    )
    split = split_slices(
        slices, val_fraction=config.val_fraction, by=config.split, seed=config.seed
    )
    logger.info(
        "%d training and %d validation slices (split by %s)",
        len(split.train),
        len(split.val),
        split.by,
    )
    return TrainingData(scans, source, modalities, slices, split, normaliser)


def build_model(
    config: TrainConfig,
    channels: int,
    *,
    lesion_prior: float | None = None,
    steps_per_epoch: int = 1,
) -> keras.Model:
    """The compiled U-Net (Adam, :class:`SoftDiceLoss`, :class:`BinarisedDice`).

    Call inside ``strategy.scope()``; the input accepts slices whose sides are multiples of
    ``2 ** config.depth``.

    Parameters
    ----------
    config : TrainConfig
    channels : int
        Input channels.
    lesion_prior : float, optional
        Mean target value of the training slices (:func:`lesion_prior`); with
        ``config.output_bias == "prior"`` the head's bias starts at its logit. None (or
        ``output_bias="zero"``) starts it at 0.
    steps_per_epoch : int
        Batches per epoch; the warm-up lasts ``config.warmup_epochs * steps_per_epoch`` steps.
    """
    bias = 0.0
    if config.output_bias == "prior" and lesion_prior is not None:
        bias = prior_logit(lesion_prior)
    model = build_unet(
        (None, None, channels),
        base_filters=config.base_filters,
        depth=config.depth,
        output_bias=bias,
        normalization=config.normalization,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=LinearWarmup(config.learning_rate, _warmup_steps(config, steps_per_epoch))
        ),
        loss=SoftDiceLoss(eps=config.eps),
        metrics=[BinarisedDice()],
        jit_compile=config.keras_jit_compile,
    )
    return model


def _warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of the learning-rate warm-up: ``config.warmup_epochs`` epochs of at least 1 step."""
    return int(math.ceil(config.warmup_epochs * max(int(steps_per_epoch), 1)))


def lesion_prior(data: TrainingData) -> float:
    """Mean target value over the training slices (the lesion share the head's bias starts at)."""
    total, count = 0.0, 0
    for start in range(0, len(data.split.train), 256):
        _, targets = data.slices.gather(data.split.train[start : start + 256])
        total += float(targets.sum(dtype=np.float64))
        count += targets.size
    return total / count if count else 0.0


def _model_builder(config: TrainConfig, data: TrainingData) -> Callable[[], keras.Model]:
    """``build_model`` bound to the run's channels, lesion prior and steps per epoch."""
    prior = lesion_prior(data) if config.output_bias == "prior" else None
    steps = steps_per_epoch(config, data)
    if prior is not None:
        logger.info(
            "lesion prior of the training targets %.4f: head bias %.2f", prior, prior_logit(prior)
        )
    return lambda: build_model(
        config, len(data.modalities), lesion_prior=prior, steps_per_epoch=steps
    )


def _graph_key(
    config: TrainConfig, data: TrainingData, strategy: tf.distribute.Strategy
) -> tuple[Any, ...] | None:
    """Everything that shapes :func:`build_model`'s compiled training graph (the key under which
    :func:`mssoft.nn.model_reuse.kept_or_built` reuses a model), or None under any strategy but
    TensorFlow's default one.

    The lesion prior is not in it: it sets only the head's initial bias, a variable.
    """
    if tf.distribute.has_strategy() or strategy is not tf.distribute.get_strategy():
        return None
    return (
        "build_model",
        len(data.modalities),
        config.base_filters,
        config.depth,
        config.normalization,
        config.eps,
        config.learning_rate,
        _warmup_steps(config, steps_per_epoch(config, data)),
        config.keras_jit_compile,
        keras.config.dtype_policy().name,
    )


def check_depth(depth: int, slice_shapes: Sequence[Sequence[int]]) -> None:
    """Refuse a U-Net deeper than the slices allow, naming the largest depth that fits.

    Slices are zero-padded to multiples of ``2 ** depth`` (:func:`mssoft.nn.unet.input_multiple`);
    a depth fits when ``2 ** depth`` is at most the smallest slice side, so padding at most
    doubles a side (a deeper net pads 48 x 56 slices to 1024 x 1024 at ``depth=10``).

    Parameters
    ----------
    depth : int
        Number of poolings (``--depth``).
    slice_shapes : sequence of (X, Y)
        Axial slice shape (voxels) of every training scan.

    Raises
    ------
    ConfigError
        Naming ``--depth``, the smallest slice side and the largest depth that fits.
    """
    side = min(min(int(n) for n in shape) for shape in slice_shapes)
    if input_multiple(depth) > side:
        largest = max(1, side.bit_length() - 1)
        raise ConfigError(
            f"Invalid value for `--depth`: {depth} pads the slices (smallest side {side} "
            f"voxels) to multiples of {input_multiple(depth)}; the largest depth that fits "
            f"is {largest}"
        )


def steps_per_epoch(config: TrainConfig, data: TrainingData) -> int:
    """Batches in one pass over the training slices (the last one may be smaller), at least 1."""
    return max(1, -(-len(data.split.train) // config.batch_size))


def make_datasets(config: TrainConfig, data: TrainingData) -> tuple[Any, Any]:
    """The training pipeline (shuffled, rotated) and the validation one (None without slices)."""
    train = make_dataset(
        data.slices,
        data.split.train,
        batch_size=config.batch_size,
        training=True,
        seed=config.seed,
        max_degrees=config.rotation_degrees,
        multiple=input_multiple(config.depth),
        strong=config.augment == "strong",
        target_interpolation=config.target_interpolation,
    )
    if not len(data.split.val):
        return train, None
    return train, make_dataset(
        data.slices,
        data.split.val,
        batch_size=config.batch_size,
        training=False,
        multiple=input_multiple(config.depth),
    )


def resolved_config(config: TrainConfig, data: TrainingData, dtype_policy: str) -> dict[str, Any]:
    """The ``config`` entry of ``config.json``: every training setting, what the data resolved.

    Every field of :class:`~mssoft.workflows.settings.TrainingSettings` is recorded
    (:func:`mssoft.files.run_record.settings_entry`), so ``--resume`` compares a new setting too.
    """
    record = data.split.record(data.slices)
    resolved = {
        "data": str(config.data.resolve()),
        "modalities": list(data.modalities),
        "rater": data.source.rater,
        "mask": data.source.to_dict(),
        "patients": list(config.patients) if config.patients is not None else None,
        "optimizer": "adam",
        "loss": {"name": "SoftDiceLoss", "eps": config.eps},
        "dtype_policy": dtype_policy,
        "slice_shape": list(data.slices.slice_shape),
        "input_multiple": input_multiple(config.depth),
        "lesion_free_slices": "excluded (no voxel of the rater's binary mask)"
        if len(data.source.raters) == 1
        else "excluded (no voxel of any of the raters' binary masks)",
        "monitor": data.monitor,
        **training_geometry(data.scans).to_dict(),  # voxel_size_mm, orientation
        "augment": {
            "name": config.augment,
            "rotation_degrees": config.rotation_degrees,
            "strong": STRONG_RANGES.record() if config.augment == "strong" else None,
        },
        "normalise": normalise_record(data.normaliser),
        **{k: v for k, v in record.items() if k != "slices"},
    }
    return settings_entry(config.record(), resolved)


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
        stored = read_config(out)
    except DataError:
        pass  # no run here (prepare_output_folder judges what else the folder holds)
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        stored = None  # no run, or a run killed before it wrote its configuration
    elif stored.get("command") != "fit":
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
    if config.resume:
        remove_partial_files(out)  # a checkpoint being written when the run was killed
    return out, stored


def _check_resumable(stored: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    """Refuse ``--resume`` when the resolved record differs from the stored run's."""
    changed = resume_differences(stored["config"], current, TrainingSettings().record())
    if changed:
        raise ConfigError(
            f"Invalid value for `--resume`: the options differ from the run in {out} "
            f"({'; '.join(changed[:4])}); use the same options, or a new --out folder"
        )


def fit(
    config: TrainConfig,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    slice_cache: Path | None = None,
) -> FitResult:
    """Train a U-Net and write the run folder ``config.out`` (see the module docstring).

    Parameters
    ----------
    config : TrainConfig
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks, called after mssoft's own.
    slice_cache : Path, optional
        Folder of the on-disk slice cache when the slices go to disk (default
        ``config.out / "slice_cache"``); runs on the same scans and targets may share one
        (``mssoft cv`` shares one per fold and mask setting between repeats).

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        Invalid options, an existing run folder without ``resume``, ``resume`` with options that
        differ from the stored run, or a run folder in use by another ``fit``.
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
    # one run per folder: a second fit on config.out fails at once (the lock ends with the process)
    if role.is_chief:  # before the lock creates the folder
        check_output_location(config.out, data=config.data)
    lock = folder_lock(config.out, command="fit") if role.is_chief else contextlib.nullcontext()
    with lock:
        return _fit_locked(config, strategy, role, callbacks, slice_cache)


def _fit_locked(
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    role: Any,
    callbacks: Sequence[keras.callbacks.Callback],
    slice_cache: Path | None = None,
) -> FitResult:
    """:func:`fit` once the chief holds the run folder's lock."""
    with _dtype_policy(config.mixed_precision) as policy:
        inputs = resolve_inputs(config)
        if role.is_chief:
            out, stored = _prepare_run_folder(config, inputs[0])
        else:  # the chief checks and writes the run folder; the other workers only read it
            out, stored = config.out.expanduser().resolve(), None
        # the chief caches slices in the run folder; another worker in a folder of its own
        cache = out / SLICE_CACHE_DIR if role.is_chief else Path(tempfile.mkdtemp("_mssoft"))
        if slice_cache is not None and role.is_chief:
            cache = Path(slice_cache).expanduser().resolve()
        data = prepare_data(config, inputs, cache=cache)
        steps = steps_per_epoch(config, data)
        logger.info(
            "training %d epochs of %d steps (batch size %d): %d steps in all; history.csv "
            "gives each epoch's seconds",
            config.epochs,
            steps,
            config.batch_size,
            config.epochs * steps,
        )
        if not is_multi_worker(strategy):
            _check_last_batches(config.batch_size, strategy.num_replicas_in_sync, data)
        record = resolved_config(config, data, policy)
        if stored is not None:
            _check_resumable(stored, record, out)
        extra = {"strategy": describe_strategy(strategy), "split_file": SPLIT_NAME}
        if role.is_chief:  # a resumed run keeps the result of its last finished training
            kept = {"result": stored["result"]} if stored and "result" in stored else {}
            write_config(out, "fit", record, **extra, **kept)
            write_json(data.split.record(data.slices)["slices"], out / SPLIT_NAME)
            if data.normaliser.landmarks is not None:
                write_landmarks(out, data.modalities, data.normaliser.landmarks)

        train, val = make_datasets(config, data)
        if is_multi_worker(strategy):  # Keras fit fails under MultiWorkerMirroredStrategy
            loop = train_loop(
                strategy,
                _model_builder(config, data),
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
        save_inference_model(model, result.model_path)
    summary = {
        k: v for k, v in asdict(result).items() if k not in ("history", "run_dir", "model_path")
    }
    write_config(out, "fit", record, **extra, result=summary)
    _report_collapse(result, config)
    return result


def _report_collapse(result: FitResult, config: TrainConfig) -> None:
    """Warn (stderr via logging) when the run ended collapsed, and say what to change."""
    if result.collapsed_epoch is None:
        return
    saved = (
        f"model.keras is from epoch {result.best_epoch}, before the collapse"
        if result.best_epoch is not None and result.best_epoch < result.collapsed_epoch
        else "model.keras predicts no lesion"
    )
    advice = []
    if config.output_bias != "prior":
        advice.append("--output-bias prior")
    if config.warmup_epochs < 2:
        advice.append(f"--warmup-epochs {max(2, int(config.warmup_epochs) * 2)}")
    if config.normalization == "none":
        advice.append("--normalization batch")
    advice.append(f"--learning-rate {config.learning_rate / 3:.2g}")
    if config.mixed_precision:
        advice.append("training without --mixed-precision")
    logger.warning(
        "training collapsed to an all-zero output at epoch %d (training loss ~0, training Dice 0 "
        "from then on; flagged in history.csv column `collapsed` and config.json); %s. "
        "Try %s, or another --seed.",
        result.collapsed_epoch,
        saved,
        ", ".join(advice),
    )


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
    key = _graph_key(config, data, strategy)
    with strategy.scope():  # inside keep_compiled_models (mssoft cv), the last run's model
        model = kept_or_built(_model_builder(config, data), key)
    done = completed_epochs(out / BACKUP_DIR)
    if done >= config.epochs:
        logger.info("%s holds %d trained epochs: nothing to do (raise --epochs)", out, done)
    # One iterator for the whole run: `train` repeated, one pass per epoch. Over a finite dataset
    # Keras makes a new iterator every epoch (and another, discarded, at each epoch's end); that
    # cost start-up time every epoch and, on a 2-core CPU, made some epochs run far slower
    # (benchmarks/epoch_iterators.py). The repeated pipeline gives the same batches.
    model.fit(
        train.repeat(),
        steps_per_epoch=steps_per_epoch(config, data),
        validation_data=val,
        epochs=config.epochs,
        verbose=0,
        shuffle=False,
        callbacks=[*run_callbacks(out, data.monitor), *callbacks],
    )
    return model
