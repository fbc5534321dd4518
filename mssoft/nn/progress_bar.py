"""A per-batch progress bar within each training epoch (a Keras callback over tqdm).

The command line adds it to ``mssoft fit`` when stderr is a terminal (an epoch on ISBI-sized data
takes minutes on a CPU); elsewhere the one log line per epoch of
:class:`mssoft.nn.callbacks.EpochLog` is the progress report. While training, log records go
above the bar (``tqdm.contrib.logging.logging_redirect_tqdm``) instead of breaking it.

Importing this module imports Keras (and TensorFlow); ``import mssoft`` does not.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import IO, Any

import keras
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["BatchProgressBar"]


class BatchProgressBar(keras.callbacks.Callback):
    """One tqdm bar per epoch over its training batches, with the running loss; gone at epoch end.

    Only the batch hooks draw: a training loop that calls epoch hooks alone (the multi-worker
    loop) shows no bar and is not disturbed.

    Parameters
    ----------
    file : text stream
        Where the bar goes (``sys.stderr`` on the command line).
    loggers : sequence of logging.Logger, optional
        Loggers whose console handlers are routed through tqdm during training (default: the
        root logger).
    """

    def __init__(self, file: IO[str], loggers: list[logging.Logger] | None = None) -> None:
        super().__init__()
        self.file = file
        self.loggers = loggers if loggers is not None else [logging.getLogger()]
        self._bar: Any = None
        self._epoch = 0
        self._redirect: contextlib.ExitStack | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._redirect = contextlib.ExitStack()
        self._redirect.enter_context(logging_redirect_tqdm(self.loggers))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._close()
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is None:
            steps = (self.params or {}).get("steps")
            epochs = (self.params or {}).get("epochs")
            self._bar = tqdm(
                total=steps,
                desc=f"epoch {self._epoch + 1}/{epochs}" if epochs else f"epoch {self._epoch + 1}",
                unit="batch",
                file=self.file,
                leave=False,
                dynamic_ncols=True,
            )
        self._bar.update(1)
        loss = _number((logs or {}).get("loss"))
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._close()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._close()
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _number(value: Any) -> float | None:
    """A finite float from a Keras log value (a float, NumPy or tensor scalar), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
