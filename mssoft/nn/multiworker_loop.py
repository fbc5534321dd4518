"""Training on several machines: a custom loop under ``tf.distribute.MultiWorkerMirroredStrategy``.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585; with
TF 2.21 and Keras 3.15: ``ValueError: Attempt to convert a value (PerReplica:{...})``), so
:func:`train_loop` trains with a loop of its own and keeps what ``fit`` shows the user:

* the same run folder (written by the chief only): ``model.keras`` (best monitored loss),
  ``history.csv`` (same columns), TensorBoard ``logs/``, and the training state in ``backup/``
  (a ``tf.train.Checkpoint`` of model, optimizer and epoch counter, saved after every epoch);
* one progress line per epoch on stderr (:class:`mssoft.nn.callbacks.EpochLog`), validation after
  every epoch, Keras callbacks called at the epoch level (``on_train_begin``, ``on_epoch_begin``,
  ``on_test_begin``/``on_test_end``, ``on_epoch_end``, ``on_train_end``; ``model.stop_training``
  is honoured);
* resumption: every worker restores the chief's latest checkpoint at start, so a cluster restarted
  with the same command after a worker was killed continues after the last completed epoch.

Every worker runs the same program on the same data (read from a shared file system) and builds
the same ``tf.data`` pipeline from the same seed; ``experimental_distribute_dataset`` with the
``DATA`` auto-shard policy gives each worker its part of every global batch, so the batches, their
order and their augmentation are those of a single-device run. The per-sample losses are summed
and divided by the number of samples of the *global* batch (``tf.nn.compute_average_loss``), and
the optimizer sums the gradients over all replicas: one step equals a single-device step on the
whole global batch.

Workers other than the chief write their copies of the model, history and checkpoints into a
temporary folder that they delete at the end (as TensorFlow's multi-worker tutorial does): all
workers take part in every save, none of them touches the run folder.

The loop runs under any ``tf.distribute`` strategy (default, mirrored, multi-worker); ``mssoft fit``
uses it only for multi-worker runs. Importing this module imports TensorFlow; ``import mssoft``
does not.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from mssoft.errors import ConfigError, DataError, MssoftError
from mssoft.files.history import read_history
from mssoft.files.layout import BACKUP_DIR, HISTORY_NAME, KERAS_BACKUP_MARKERS, LOGS_DIR, MODEL_NAME
from mssoft.nn.callbacks import BestModelCheckpoint, EpochLog, FitResult
from mssoft.nn.distribute import WorkerRole, worker_role

__all__ = ["LoopResult", "distribute_dataset", "train_loop"]

logger = logging.getLogger(__name__)

#: Marker file of a Keras ``BackupAndRestore`` state (the ``model.fit`` path), in ``backup/``.


# === Data ===


def distribute_dataset(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset) -> Any:
    """Split each global batch of ``dataset`` over the replicas of every worker.

    The ``DATA`` auto-shard policy makes every worker iterate the same pipeline and keep its part
    of each batch: no file-level sharding (mssoft's pipelines read in-memory slices), and the same
    batches as on one device.

    Parameters
    ----------
    strategy : tf.distribute.Strategy
    dataset : tf.data.Dataset
        Batched with the global batch size.

    Returns
    -------
    tf.distribute.DistributedDataset
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


# === Training state ===


class _Backup:
    """A ``tf.train.Checkpoint`` of model, optimizer and completed epochs.

    Every worker restores from ``read_dir`` (the chief's ``backup/`` folder) and saves into its
    own ``write_dir`` (the chief's is ``read_dir``).
    """

    def __init__(self, model: keras.Model, optimizer: Any, read_dir: Path, write_dir: Path) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch)
        self.read_dir = read_dir
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(write_dir), max_to_keep=2)

    def restore(self) -> int:
        """Restore the latest state in ``read_dir``; return the epochs it completed (0: none)."""
        latest = tf.train.latest_checkpoint(str(self.read_dir))
        if latest is None:
            if (self.read_dir / KERAS_BACKUP_MARKERS[0]).is_file():
                raise ConfigError(
                    f"Invalid value for `--resume`: {self.read_dir} holds the state of a "
                    "run trained with Keras fit (--strategy auto, default or mirrored); "
                    "resume it with that strategy, or train in a new --out folder"
                )
            return 0
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise DataError(
                f"{latest}: cannot restore the training state ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); was it written with the "
                "same options?"
            ) from None
        return int(self.epoch.numpy())

    def save(self, completed: int) -> None:
        """Record ``completed`` epochs and save (every worker must call this at the same time)."""
        self.epoch.assign(completed)
        self.manager.save(checkpoint_number=completed)


def _check_same_epoch(strategy: tf.distribute.Strategy, epoch: int) -> None:
    """Raise unless every replica of every worker restored the same epoch."""
    value = tf.constant([float(epoch), float(epoch) ** 2], tf.float32)

    @tf.function
    def total() -> tf.Tensor:
        return strategy.reduce("SUM", strategy.run(lambda: tf.identity(value)), axis=None)

    sums = total().numpy()
    n = strategy.num_replicas_in_sync
    # sum(e) == n * e and sum(e^2) == n * e^2 only if every replica's e equals this worker's
    if not (math.isclose(sums[0], n * epoch) and math.isclose(sums[1], n * epoch**2)):
        raise ConfigError(
            f"Invalid value for `--out`: the workers restored different epochs (this one: "
            f"{epoch}, mean: {sums[0] / n:g}); every worker must see the chief's run folder "
            "(a shared file system)"
        )


# === Steps ===


def _metrics_of(model: keras.Model) -> list[keras.metrics.Metric]:
    """New instances of the metrics ``model`` was compiled with (Keras names: ``dice``, ...)."""
    metrics = []
    for spec in model.get_compile_config().get("metrics") or []:
        metric = keras.metrics.get(spec)
        if not isinstance(metric, keras.metrics.Metric):
            name = spec if isinstance(spec, str) else getattr(metric, "__name__", "metric")
            metric = keras.metrics.MeanMetricWrapper(metric, name=name)
        metrics.append(metric)
    return metrics


def _loss_of(model: keras.Model) -> Callable[[Any, Any], Any]:
    """The compiled loss as a function returning unreduced values (first axis: samples)."""
    loss = model.loss
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    if callable(loss):
        return loss
    raise ConfigError(
        f"Invalid value for `build_model`: the model must be compiled with one loss, got {loss!r}"
    )


def _gradients(
    tape: tf.GradientTape, target: tf.Tensor, variables: Sequence[Any]
) -> list[tf.Tensor]:
    """Gradients of ``target``, zeros for the variables it does not depend on."""
    gradients = tape.gradient(target, variables)
    return [
        tf.zeros(v.shape, v.dtype) if g is None else g
        for g, v in zip(gradients, variables, strict=True)
    ]


class _Steps:
    """The distributed train and evaluation steps of one compiled model."""

    def __init__(self, strategy: tf.distribute.Strategy, model: keras.Model) -> None:
        self.strategy = strategy
        self.model = model
        self.loss = _loss_of(model)
        self.optimizer = model.optimizer
        with strategy.scope():
            self.train_metrics = _metrics_of(model)
            self.val_metrics = _metrics_of(model)
        self._traced: dict[tuple[str, int], Callable[[Any], tf.Tensor]] = {}

    def _per_sample(self, targets: Any, predictions: Any) -> tf.Tensor:
        """Loss per sample, shape (local batch,): the unreduced loss averaged over other axes."""
        values = tf.cast(self.loss(targets, predictions), tf.float32)
        return tf.reshape(
            tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1), [-1]
        )

    def _regularisation(self) -> tf.Tensor:
        losses = self.model.losses
        return tf.add_n([tf.cast(x, tf.float32) for x in losses]) if losses else tf.constant(0.0)

    def _train_replica(self, images: Any, targets: Any) -> tf.Tensor:
        local = tf.shape(images)[0]
        # The number of samples in the whole global batch (the last batch may be smaller).
        total = tf.distribute.get_replica_context().all_reduce("SUM", local)
        variables = self.model.trainable_variables

        def forward_backward() -> tuple[list[tf.Tensor], tf.Tensor]:
            with tf.GradientTape() as tape:
                predictions = self.model(images, training=True)
                per_sample = self._per_sample(targets, predictions)
                regularisation = self._regularisation()
                loss = tf.nn.compute_average_loss(per_sample, global_batch_size=total)
                loss += tf.nn.scale_regularization_loss(regularisation)
                scaled = self.optimizer.scale_loss(loss)
            gradients = _gradients(tape, scaled, variables)
            for metric in self.train_metrics:
                metric.update_state(targets, predictions)
            count = tf.cast(local, tf.float32)
            return gradients, tf.stack([tf.reduce_sum(per_sample) + regularisation * count, count])

        def no_samples() -> tuple[list[tf.Tensor], tf.Tensor]:
            # This replica got nothing of a small last batch: it only takes part in the gradient
            # all-reduce (the model is not called on an empty batch, which oneDNN's CPU
            # convolutions get wrong).
            with tf.GradientTape() as tape:
                scaled = self.optimizer.scale_loss(
                    tf.nn.scale_regularization_loss(self._regularisation())
                )
            return _gradients(tape, scaled, variables), tf.zeros([2])

        gradients, sums = tf.cond(local > 0, forward_backward, no_samples)
        self.optimizer.apply(gradients, variables)
        return sums

    def _test_replica(self, images: Any, targets: Any) -> tf.Tensor:
        def evaluate() -> tf.Tensor:
            predictions = self.model(images, training=False)
            per_sample = self._per_sample(targets, predictions)
            for metric in self.val_metrics:
                metric.update_state(targets, predictions)
            count = tf.cast(tf.shape(images)[0], tf.float32)
            return tf.stack([tf.reduce_sum(per_sample) + self._regularisation() * count, count])

        return tf.cond(tf.shape(images)[0] > 0, evaluate, lambda: tf.zeros([2]))

    def _train_batch(self, batch: Any) -> tf.Tensor:
        images, targets = batch
        return self.strategy.reduce(
            "SUM", self.strategy.run(self._train_replica, args=(images, targets)), axis=None
        )

    def _test_batch(self, batch: Any) -> tf.Tensor:
        images, targets = batch
        return self.strategy.reduce(
            "SUM", self.strategy.run(self._test_replica, args=(images, targets)), axis=None
        )

    def _epoch(
        self,
        batches: Any,
        step: Callable[[Any], tf.Tensor],
        metrics: Sequence[keras.metrics.Metric],
    ) -> dict[str, float]:
        for metric in metrics:
            metric.reset_state()
        total = tf.zeros([2], tf.float64)  # (sum of per-sample losses, number of samples)
        for batch in batches:
            total += tf.cast(step(batch), tf.float64)
        loss_sum, count = (float(x) for x in total.numpy())
        logs = {"loss": loss_sum / count if count else math.nan}
        logs.update({metric.name: float(metric.result()) for metric in metrics})
        return logs

    def _function(self, kind: str, batches: Any) -> Callable[[Any], tf.Tensor]:
        """The step traced once for the element spec of ``batches`` (whatever the batch size)."""
        key = (kind, id(batches))
        if key not in self._traced:
            step = self._train_batch if kind == "train" else self._test_batch
            self._traced[key] = tf.function(step, input_signature=[batches.element_spec])
        return self._traced[key]

    def train_epoch(self, batches: Any) -> dict[str, float]:
        """Train on every batch; the mean loss per sample and the metrics of the epoch."""
        return self._epoch(batches, self._function("train", batches), self.train_metrics)

    def evaluate(self, batches: Any) -> dict[str, float]:
        """Mean loss per sample and metrics over every batch, without training."""
        return self._epoch(batches, self._function("test", batches), self.val_metrics)


# === The loop ===


@dataclass(frozen=True, kw_only=True)
class LoopResult(FitResult):
    """What :func:`train_loop` did (identical on every worker): a :class:`FitResult` and more.

    Attributes
    ----------
    model : keras.Model
        The model after the last epoch.
    role : WorkerRole
    initial_epoch : int
        Epochs completed before this call (restored from ``backup/``).

    The other attributes are those of :class:`mssoft.nn.callbacks.FitResult` (``history``: one
    row per epoch, also earlier epochs of a resumed run).
    """

    model: keras.Model = field(repr=False)
    role: WorkerRole
    initial_epoch: int


def train_loop(
    strategy: tf.distribute.Strategy,
    build_model: Callable[[], keras.Model],
    train: tf.data.Dataset,
    val: tf.data.Dataset | None = None,
    *,
    epochs: int,
    run_dir: str | Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> LoopResult:
    """Train ``build_model()`` under ``strategy`` with a custom loop and write the run folder.

    Parameters
    ----------
    strategy : tf.distribute.Strategy
        Typically a ``MultiWorkerMirroredStrategy`` (any strategy works).
    build_model : callable
        Returns a model compiled with an optimizer, one loss and metrics (e.g.
        :func:`mssoft.workflows.fit.build_model`); called inside ``strategy.scope()``. The loss's
        ``call``
        must return one value per sample (or per element, averaged per sample), like
        :class:`mssoft.nn.losses.SoftDiceLoss`; the compiled metrics are logged under their names.
    train, val : tf.data.Dataset
        ``(images, targets)`` batches of the **global** batch size, the same pipeline (same seed)
        on every worker; ``val`` is optional (the monitored loss is then ``loss``).
    epochs : int
        Total number of epochs, including those completed by a restored run.
    run_dir : path-like
        Run folder, on a file system every worker sees. The chief writes ``model.keras``,
        ``history.csv``, ``logs/`` and ``backup/`` there; all workers restore from its ``backup/``.
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks, called at the epoch level after mssoft's own (not ``on_*_batch_*``).

    Returns
    -------
    LoopResult

    Raises
    ------
    ConfigError
        ``run_dir/backup`` holds a Keras ``fit`` state, or the workers restored different epochs.
    DataError
        An unreadable checkpoint.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(
            f"Invalid value for `--epochs`. Expected an integer >= 1. Received: {epochs!r}"
        )
    run_dir = Path(run_dir)
    role = worker_role(strategy)
    scratch = (
        None
        if role.is_chief
        else Path(tempfile.mkdtemp(prefix=f"mssoft-{role.task_type}{role.task_id}-"))
    )
    out = run_dir if role.is_chief else scratch
    assert out is not None
    logger.info(
        "custom training loop: %s, %d replica(s)", role.describe(), strategy.num_replicas_in_sync
    )
    progress = _Progress()
    try:
        with strategy.scope():
            model = build_model()
            if getattr(model, "optimizer", None) is None:
                raise ConfigError("Invalid value for `build_model`: the model is not compiled")
            model.optimizer.build(model.trainable_variables)
        steps = _Steps(strategy, model)
        backup = _Backup(model, model.optimizer, run_dir / BACKUP_DIR, out / BACKUP_DIR)
        progress.done = done = backup.restore()
        _check_same_epoch(strategy, done)
        monitor = "val_loss" if val is not None else "loss"
        rows = [r for r in read_history(run_dir / HISTORY_NAME) if r.get("epoch", math.inf) <= done]
        if done >= epochs:
            logger.info("%s holds %d trained epochs: nothing to do (raise --epochs)", run_dir, done)
        elif done:
            logger.info("resuming %s after epoch %d", run_dir, done)
        own = [
            BestModelCheckpoint.from_history(out / MODEL_NAME, monitor, rows),
            EpochLog(out / HISTORY_NAME, rows),
        ]
        if role.is_chief:
            own.append(
                keras.callbacks.TensorBoard(log_dir=str(run_dir / LOGS_DIR), write_graph=False)
            )
        hooks = keras.callbacks.CallbackList(
            [*own, *callbacks], model=model, verbose=0, epochs=epochs, steps=None
        )
        _run_epochs(strategy, steps, backup, hooks, train, val, range(done, epochs), progress)
        rows = read_history(out / HISTORY_NAME) or rows  # as written (rounded), on every worker
    except (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.DeadlineExceededError,
    ) as exc:
        if role.num_workers == 1:
            raise
        lines = [line.strip() for line in str(exc).splitlines()]
        detail = next((line for line in lines if "task" in line.lower()), type(exc).__name__)
        raise MssoftError(
            f"the cluster lost a worker during epoch {progress.done + 1} ({detail}); see that "
            "worker's log, then restart every worker with the same command and --resume to "
            f"continue after epoch {progress.done}"
        ) from exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    summary = FitResult.from_history(run_dir, rows, monitor)
    return LoopResult(
        **{f.name: getattr(summary, f.name) for f in fields(FitResult)},
        model=model,
        role=role,
        initial_epoch=done,
    )


@dataclass
class _Progress:
    done: int = 0  # epochs in the last saved checkpoint


def _run_epochs(
    strategy: tf.distribute.Strategy,
    steps: _Steps,
    backup: _Backup,
    hooks: keras.callbacks.CallbackList,
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    epochs: range,
    progress: _Progress,
) -> None:
    """Train and validate each epoch of ``epochs`` (0-based), calling the epoch-level hooks."""
    train_batches = distribute_dataset(strategy, train)
    val_batches = distribute_dataset(strategy, val) if val is not None else None
    # Keras's fit opens a second, unused iterator at the end of every epoch over a dataset of
    # known size, which advances the per-iteration shuffling and augmentation seeds; do the same
    # so that a run sees the batches of `model.fit` on one device with the same seed.
    like_keras_fit = int(train.cardinality()) >= 0
    hooks.model.stop_training = False
    logs: dict[str, float] = {}
    hooks.on_train_begin()
    for epoch in epochs:
        hooks.on_epoch_begin(epoch)
        logs = steps.train_epoch(train_batches)
        if like_keras_fit:
            iter(train_batches)
        if val_batches is not None:
            hooks.on_test_begin()
            val_logs = steps.evaluate(val_batches)
            hooks.on_test_end(val_logs)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        hooks.on_epoch_end(epoch, logs)
        backup.save(epoch + 1)  # after the epoch's model and history row, as in the fit path
        progress.done = epoch + 1
        if hooks.model.stop_training:
            break
    hooks.on_train_end(logs)
