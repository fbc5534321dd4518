"""Memory stage: peak resident memory of ``mssoft fit`` for two dataset sizes and over epochs.

``mssoft fit --slice-cache disk`` runs in subprocesses (the command a user runs, soft masks built
on the fly, slices in the on-disk cache of the run folder) on N1 and N2 generated scans. A thread
of the benchmark polls each child every 20 ms: the kernel's high-water mark of its resident memory
(``VmHWM`` in ``/proc/PID/status``; elsewhere the largest RSS sampled with psutil) is recorded
whenever a row appears in the run's ``history.csv``, that is at the end of every epoch. So the peak
after the first epoch (model built, data loaded, one epoch trained and validated, first checkpoint
written) can be compared with the peak after the last.

Measured on Linux/glibc: the peak grows by a few MB per epoch over the first epochs and then
levels off (allocator arenas of TensorFlow's threads filling; ``MALLOC_ARENA_MAX=2`` cuts that
growth by about three quarters), so the stage also reports the growth over the second half of
the epochs.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.settings import BenchSettings
from mssoft.errors import MssoftError

__all__ = ["FitMemory"]

_POLL_SECONDS = 0.02
#: Time points per generated patient (ISBI patient ids have two digits: 100 scans need 50).
_TIMEPOINTS = 2


def _patients(scans: int) -> int:
    """Patients whose scans make up ``scans`` (rounded up to whole patients)."""
    return -(-scans // _TIMEPOINTS)


def _vm_hwm_mb(pid: int) -> float | None:
    """The kernel's high-water mark of a process's resident memory (Linux), in MiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def _history_rows(path: Path) -> int:
    try:
        with path.open(newline="") as handle:
            return max(sum(1 for _ in csv.reader(handle)) - 1, 0)
    except OSError:
        return 0


@dataclass
class _Child:
    """One ``mssoft fit`` subprocess and what was seen of it."""

    scans: int
    run_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float
    peak_after_epoch: dict[int, float] = field(default_factory=dict)
    sampled_peak_mb: float = 0.0
    seconds: float = math.nan
    history_mtime: int = -1

    def poll(self) -> None:
        """Record the peak so far, and the peak at each epoch end newly seen in history.csv."""
        import psutil

        try:
            rss = psutil.Process(self.proc.pid).memory_info().rss / 2**20
        except psutil.Error:
            return
        self.sampled_peak_mb = max(self.sampled_peak_mb, rss)
        peak = max(_vm_hwm_mb(self.proc.pid) or 0.0, self.sampled_peak_mb)
        history = self.run_dir / "history.csv"
        try:
            mtime = history.stat().st_mtime_ns
        except OSError:
            return
        if mtime != self.history_mtime:
            self.history_mtime = mtime
            for epoch in range(len(self.peak_after_epoch) + 1, _history_rows(history) + 1):
                self.peak_after_epoch[epoch] = peak

    def record(self) -> dict[str, Any]:
        """Slices kept (from the run's config.json), their size, and the peaks per epoch."""
        from mssoft.files.folders import read_config

        config = read_config(self.run_dir, command="fit")["config"]
        slices = int(config["train_slices"]) + int(config["val_slices"])
        height, width = config["slice_shape"]
        # float32 images (a channel per modality) and float32 targets
        slice_mb = slices * height * width * (len(config["modalities"]) + 1) * 4 / 2**20
        peaks = self.peak_after_epoch
        last = max(peaks)
        middle = max((last + 1) // 2, 1)  # epoch 2 of 3, 2 of 4, 3 of 6
        return {
            "scans": _patients(self.scans) * _TIMEPOINTS,
            "slices_kept": slices,
            "slice_data_mb": slice_mb,
            "peak_rss_mb_after_epoch": {str(k): round(v, 1) for k, v in sorted(peaks.items())},
            "peak_rss_mb_first_epoch": peaks[1],
            "peak_rss_mb_last_epoch": peaks[last],
            "epoch_growth_mb": peaks[last] - peaks[1],
            "late_epoch_growth_mb": peaks[last] - peaks[middle],
            "late_epochs": [middle, last],
            "sampled_peak_rss_mb": self.sampled_peak_mb,
            "seconds": self.seconds,
        }


class FitMemory:
    """The memory stage, run in a background thread: :meth:`start`, then :meth:`result`.

    Parameters
    ----------
    settings : BenchSettings
        ``memory_*`` fields: grid, N1 and N2, epochs, U-Net, batch; ``memory_parallel`` runs the
        two children at once.
    workdir : Path
        Scratch folder for the generated data, the run folders and the children's logs.
    """

    def __init__(self, settings: BenchSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = Path(workdir)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done: list[_Child] = []

    def start(self) -> FitMemory:
        """Write the data, then launch and poll the ``fit`` runs in a background thread."""
        from mssoft.synthetic import write_isbi_dataset

        write_isbi_dataset(
            self.workdir / "memory_data",
            n_patients=_patients(self.settings.memory_scans[1]),
            timepoints=_TIMEPOINTS,
            shape=self.settings.memory_shape,
            seed=self.settings.seed,
            write_truth=False,
            overwrite=True,
        )
        self._thread = threading.Thread(target=self._run, name="mssoft-bench-memory", daemon=True)
        self._thread.start()
        return self

    def result(self) -> dict[str, Any]:
        """Wait for the runs; the stage record.

        Returns
        -------
        dict
            ``runs`` (per N: slices kept, their MB, peak after each epoch), ``epoch_growth_mb``
            (largest growth from the first to the last epoch), ``late_epoch_growth_mb`` (largest
            growth over the second half of the epochs: the early growth is the memory
            allocator warming up), ``scan_growth_mb`` (peak at N2 minus peak at N1, last
            epoch) and ``slice_data_growth_mb`` (slices' MB at N2 minus N1).

        Raises
        ------
        MssoftError
            A ``fit`` run failed (its last log line is quoted).
        """
        if self._thread is None:
            raise RuntimeError("FitMemory.result() before start()")
        self._thread.join()
        if self._error is not None:
            raise self._error
        s = self.settings
        runs = sorted((child.record() for child in self._done), key=lambda r: r["scans"])
        return {
            "what": "mssoft fit --slice-cache disk in a subprocess (soft masks on the fly, ratio "
            "1.2); peak resident memory = VmHWM of /proc/PID/status when each epoch's "
            "history.csv row appears",
            "scan_shape": list(s.memory_shape),
            "model": {
                "base_filters": s.memory_base_filters,
                "depth": s.memory_depth,
                "batch_size": s.memory_batch_size,
            },
            "epochs": s.memory_epochs,
            "parallel": s.memory_parallel,
            "runs": runs,
            "epoch_growth_mb": max(r["epoch_growth_mb"] for r in runs),
            "late_epoch_growth_mb": max(r["late_epoch_growth_mb"] for r in runs),
            "scan_growth_mb": runs[1]["peak_rss_mb_last_epoch"] - runs[0]["peak_rss_mb_last_epoch"],
            "slice_data_growth_mb": runs[1]["slice_data_mb"] - runs[0]["slice_data_mb"],
        }

    def _command(self, run_dir: Path, scans: int) -> list[str]:
        s = self.settings
        options = {
            "--out": run_dir,
            "--patients": ",".join(f"training{i:02d}" for i in range(1, _patients(scans) + 1)),
            "--epochs": s.memory_epochs,
            "--batch-size": s.memory_batch_size,
            "--base-filters": s.memory_base_filters,
            "--depth": s.memory_depth,
            "--ratio": 1.2,
            "--seed": s.seed,
            "--slice-cache": "disk",
        }
        code = "from mssoft.cli.main import cli; cli(prog_name='mssoft')"
        command = [sys.executable, "-c", code, "-q", "fit", str(self.workdir / "memory_data")]
        return command + [str(v) for pair in options.items() for v in pair]

    def _launch(self, scans: int) -> _Child:
        run_dir = self.workdir / f"memory_fit_{scans}"
        shutil.rmtree(run_dir, ignore_errors=True)
        log_path = self.workdir / f"memory_fit_{scans}.log"
        log = log_path.open("wb")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.Popen(self._command(run_dir, scans), stdout=log, stderr=log, env=env)
        return _Child(scans, run_dir, log_path, proc, log, time.perf_counter())

    def _run(self) -> None:
        pending = list(self.settings.memory_scans)
        active: list[_Child] = []
        try:
            while pending or active:
                while pending and (self.settings.memory_parallel or not active):
                    active.append(self._launch(pending.pop(0)))
                for child in list(active):
                    child.poll()
                    if child.proc.poll() is None:
                        continue
                    child.seconds = time.perf_counter() - child.started
                    child.log.close()
                    active.remove(child)
                    if child.proc.returncode != 0 or not child.peak_after_epoch:
                        lines = child.log_path.read_text(errors="replace").strip().splitlines()
                        raise MssoftError(
                            f"{child.log_path}: `mssoft fit` on {child.scans} scans failed in the "
                            f"memory benchmark (exit {child.proc.returncode}): "
                            f"{lines[-1] if lines else 'no output'}"
                        )
                    self._done.append(child)
                time.sleep(_POLL_SECONDS)
        except BaseException as exc:  # reported by result() in the calling thread
            self._error = exc
            for child in active:
                child.proc.kill()
                child.proc.wait()
                child.log.close()
