"""Seconds to drop a training-pipeline iterator on a busy CPU (``make bench`` stage ``teardown``).

``model.fit`` drops its iterator over the training pipeline when it returns. With TensorFlow's
autotuning on (``num_parallel_calls`` and ``prefetch`` set to ``AUTOTUNE``, as mssoft did
earlier), dropping it waits for the autotuning thread, which sleeps on a timer that grows to
60 s; on a busy CPU its wake-up is sometimes missed, and ``fit`` returns late. mssoft's pipeline
now runs with fixed settings and autotuning off (:mod:`mssoft.nn.dataset`).

The stage keeps every core busy with spinning processes (another job on the machine), then, for
``teardown_rounds`` rounds, draws batches from each pipeline for ``teardown_seconds`` (a short
sleep per batch stands for the training step) and times dropping the iterator. The two pipelines
alternate, on the same slices.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from harness.network import training_pipeline
from harness.settings import BenchSettings

__all__ = ["bench_teardown"]

#: Seconds slept per batch drawn: the training step the pipeline would feed.
_STEP_SECONDS = 0.05
#: A drop slower than this counts as a wait.
WAIT_SECONDS = 0.5


@contextlib.contextmanager
def _cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy-looping Python processes, stopped on exit."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def _drop_seconds(dataset: Any, seconds: float) -> float:
    """Draw batches for ``seconds``, then time dropping the iterator."""
    iterator = iter(dataset)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        time.sleep(_STEP_SECONDS)
    start = time.perf_counter()
    del iterator
    return time.perf_counter() - start


def _summary(drops: list[float]) -> dict[str, Any]:
    return {
        "drop_seconds": [round(d, 3) for d in drops],
        "max_seconds": round(max(drops), 3),
        "total_seconds": round(sum(drops), 3),
        "waits": sum(d > WAIT_SECONDS for d in drops),
    }


def bench_teardown(slices: Any, settings: BenchSettings) -> dict[str, Any]:
    """Seconds to drop a training-pipeline iterator under CPU load, fixed against autotuned.

    Parameters
    ----------
    slices : mssoft.arrays.slices.SliceSet
        The bench's training slices.
    settings : BenchSettings
        ``teardown_rounds``, ``teardown_seconds``, ``batch_size``, ``seed``.

    Returns
    -------
    dict
        ``fixed`` (mssoft's pipeline) and ``autotuned`` (the same with ``autotune=True``), each
        with ``drop_seconds`` per round, ``max_seconds``, ``total_seconds`` and ``waits`` (drops
        over :data:`WAIT_SECONDS`); the load and the sizes.
    """
    cores = os.cpu_count() or 1
    drops: dict[str, list[float]] = {"fixed": [], "autotuned": []}
    with _cpu_load(cores):
        for _ in range(settings.teardown_rounds):
            for name, autotune in (("fixed", False), ("autotuned", True)):
                pipeline = training_pipeline(slices, settings, autotune=autotune)
                drops[name].append(_drop_seconds(pipeline, settings.teardown_seconds))
    return {
        "what": "drop an iterator of mssoft.nn.dataset.make_dataset(training=True).repeat() "
        f"after drawing batches for {settings.teardown_seconds} s, beside {cores} busy-looping "
        "processes; fixed settings (mssoft) against autotune=True (the earlier pipeline)",
        "load_processes": cores,
        "rounds": settings.teardown_rounds,
        "seconds_per_round": settings.teardown_seconds,
        "wait_threshold_seconds": WAIT_SECONDS,
        **{name: _summary(values) for name, values in drops.items()},
    }
