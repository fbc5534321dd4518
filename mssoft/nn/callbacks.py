"""Keras callbacks that write a training run folder: best model, history, backup, TensorBoard.

Importing this module imports Keras (and TensorFlow); ``import mssoft`` does not.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras

from mssoft.files.atomic import atomic_path
from mssoft.files.history import read_history
from mssoft.files.layout import (
    BACKUP_DIR,
    HISTORY_NAME,
    KERAS_BACKUP_MARKERS,
    LOGS_DIR,
    MODEL_NAME,
)

__all__ = [
    "save_inference_model",
    "FitResult",
    "best_epoch_row",
    "COLLAPSE_LOSS",
    "is_collapsed",
    "collapse_epoch",
    "MODEL_NAME",
    "HISTORY_NAME",
    "BACKUP_DIR",
    "LOGS_DIR",
    "EpochLog",
    "BestModelCheckpoint",
    "read_history",
    "completed_epochs",
    "run_callbacks",
]

logger = logging.getLogger(__name__)




def best_epoch_row(history: Sequence[dict[str, float]], monitor: str) -> dict[str, float] | None:
    """The history row with the lowest finite ``monitor`` (the first of equals), or None.

    The one rule for "the best epoch": the saved model, resumed runs and every result use it.
    """
    scored = [r for r in history if math.isfinite(r.get(monitor, math.nan))]
    return min(scored, key=lambda r: r[monitor]) if scored else None


#: An epoch whose training loss is above ``-COLLAPSE_LOSS`` (overlap below 0.01 % of the target)
#: with a training Dice of 0 has collapsed: the network predicts no lesion anywhere.
COLLAPSE_LOSS = 1e-4


def is_collapsed(row: dict[str, float]) -> bool:
    """Whether a history row (Keras logs of one epoch) shows the all-zero collapse.

    Collapsed: training ``loss`` > ``-COLLAPSE_LOSS`` (the soft Dice overlap has vanished) and
    training ``dice`` == 0 (no pixel predicted as lesion). Rows without both keys are not.
    """
    loss, dice = row.get("loss"), row.get("dice")
    if loss is None or dice is None or not math.isfinite(loss):
        return False
    return loss > -COLLAPSE_LOSS and dice <= 0.0


def collapse_epoch(history: Sequence[dict[str, float]]) -> int | None:
    """First epoch (1-based) of the collapsed stretch the run ended in, or None.

    A run that collapsed and recovered later is not collapsed at its end (None).
    """
    first = None
    for row in sorted(history, key=lambda r: r.get("epoch", 0)):
        collapsed = bool(row.get("collapsed", is_collapsed(row)))
        first = (first or int(row["epoch"])) if collapsed else None
    return first


def _write_history(rows: Sequence[dict[str, float]], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (int(v) if k in ("epoch", "collapsed") else f"{v:.6g}") for k, v in row.items()}
            )


def _ordered(logs: dict[str, float]) -> dict[str, float]:
    """Training values before validation ones, the loss first in each group."""
    return dict(
        sorted(
            logs.items(),
            key=lambda kv: (kv[0].startswith("val_"), kv[0].removeprefix("val_") != "loss"),
        )
    )


class EpochLog(keras.callbacks.Callback):
    """Logs one line per epoch and keeps ``history.csv``, rewritten atomically after each epoch.

    Parameters
    ----------
    path : Path
        The CSV file: columns ``epoch`` (1-based), the Keras logs (``loss``, ``dice``,
        ``val_loss``, ``val_dice``) and ``seconds``.
    rows : sequence of dict
        Rows of earlier epochs (a resumed run).
    """

    def __init__(self, path: Path, rows: Sequence[dict[str, float]] = ()) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows = list(rows)
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        values = _ordered({k: float(v) for k, v in (logs or {}).items()})
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1]
        row = {"epoch": epoch + 1, **values, "seconds": seconds}
        row["collapsed"] = float(is_collapsed(row))
        self.rows.append(row)
        _write_history(self.rows, self.path)
        if row["collapsed"]:
            logger.warning(
                "epoch %d: collapsed (training loss %.2g, training Dice 0: no lesion predicted)",
                epoch + 1,
                values.get("loss", math.nan),
            )
        shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
        logger.info(
            "epoch %d/%d: %s (%.1f s)", epoch + 1, self.params.get("epochs", 0), shown, seconds
        )


def save_inference_model(model: keras.Model, path: str | Path) -> Path:
    """Save ``model`` to ``path`` (``.keras``, atomically) as an inference model.

    The saved model is an uncompiled copy with the same architecture and weights: no optimizer,
    loss, metrics or learning-rate schedule, so ``keras.saving.load_model(path)`` works in any
    process with Keras alone (the training state for ``--resume`` lives in ``backup/``).
    """
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    with atomic_path(path) as tmp:
        copy.save(tmp)
    return Path(path)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` (atomically) whenever ``monitor`` reaches a new minimum.

    Parameters
    ----------
    path : Path
        A ``.keras`` file.
    monitor : str
        Log key to minimise.
    best : float
        Best value so far (from earlier epochs of a resumed run); ``inf`` for a new run.
    best_epoch : int or None
        1-based epoch of ``best``.
    """

    def __init__(
        self,
        path: Path,
        monitor: str = "val_loss",
        best: float = math.inf,
        best_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = best
        self.best_epoch = best_epoch

    @classmethod
    def from_history(
        cls, path: str | Path, monitor: str, rows: Sequence[dict[str, float]]
    ) -> BestModelCheckpoint:
        """A checkpoint that must beat the best epoch of ``rows`` (a resumed run's history)."""
        best = best_epoch_row(rows, monitor)
        return cls(
            path, monitor, best[monitor] if best else math.inf, int(best["epoch"]) if best else None
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            logger.warning("epoch %d: %s is %s; model not saved", epoch + 1, self.monitor, value)
            return
        if float(value) < self.best:
            save_inference_model(self.model, self.path)
            logger.debug(
                "epoch %d: %s improved from %.4f to %.4f; saved %s",
                epoch + 1,
                self.monitor,
                self.best,
                float(value),
                self.path,
            )
            self.best, self.best_epoch = float(value), epoch + 1


def completed_epochs(backup_dir: str | Path) -> int:
    """Epochs completed by the ``BackupAndRestore`` state in ``backup_dir`` (0 if none)."""
    for name in KERAS_BACKUP_MARKERS:
        try:
            return int(json.loads((Path(backup_dir) / name).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0


def run_callbacks(run_dir: str | Path, monitor: str) -> list[keras.callbacks.Callback]:
    """The callbacks that make a run folder: best model, history, backup, TensorBoard.

    Order matters: an epoch's best model and history row are written before the backup marks the
    epoch complete, so a run killed at any moment resumes without losing an epoch's record. When
    ``run_dir`` holds an interrupted run, history rows after the backup's epoch are dropped (that
    epoch runs again) and the best monitored value so far comes from the history, so a resumed
    epoch replaces ``model.keras`` only if it beats every earlier epoch.

    Parameters
    ----------
    run_dir : path-like
        The run folder.
    monitor : str
        ``val_loss`` (or ``loss`` without validation data).

    Returns
    -------
    list of keras.callbacks.Callback
    """
    run_dir = Path(run_dir)
    done = completed_epochs(run_dir / BACKUP_DIR)
    rows = [r for r in read_history(run_dir / HISTORY_NAME) if r.get("epoch", math.inf) <= done]
    if done:
        logger.info("resuming %s after epoch %d", run_dir, done)
    return [
        BestModelCheckpoint.from_history(run_dir / MODEL_NAME, monitor, rows),
        EpochLog(run_dir / HISTORY_NAME, rows),
        keras.callbacks.BackupAndRestore(
            str(run_dir / BACKUP_DIR), double_checkpoint=True, delete_checkpoint=False
        ),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / LOGS_DIR), write_graph=False),
    ]


@dataclass(frozen=True, kw_only=True)
class FitResult:
    """What a training run produced.

    Attributes
    ----------
    run_dir : Path
    model_path : Path
        ``run_dir/model.keras``.
    epochs : int
        Epochs completed in total (over every resumed part).
    best_epoch : int or None
        1-based epoch of the saved model.
    best_loss : float or None
        Its monitored loss (in [-1, 0]; lower is better).
    monitor : str
        ``val_loss`` or ``loss``.
    history : list of dict
        The rows of ``history.csv``.
    collapsed_epoch : int or None
        First epoch of the all-zero collapse the run ended in (:func:`collapse_epoch`), or None.
    """

    run_dir: Path
    model_path: Path
    epochs: int
    best_epoch: int | None
    best_loss: float | None
    monitor: str
    history: list[dict[str, float]] = field(repr=False)
    collapsed_epoch: int | None = None

    @classmethod
    def from_history(
        cls, run_dir: str | Path, history: list[dict[str, float]], monitor: str
    ) -> FitResult:
        """The result of a run from its history rows (:func:`best_epoch_row` picks the best)."""
        best = best_epoch_row(history, monitor)
        return cls(
            run_dir=Path(run_dir),
            model_path=Path(run_dir) / MODEL_NAME,
            epochs=int(max((r["epoch"] for r in history), default=0)),
            best_epoch=int(best["epoch"]) if best else None,
            best_loss=float(best[monitor]) if best else None,
            monitor=monitor,
            history=list(history),
            collapsed_epoch=collapse_epoch(history),
        )
