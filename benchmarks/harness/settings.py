"""How much a benchmark run measures: :class:`BenchSettings`, :data:`FULL` and :data:`QUICK`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mssoft.errors import ConfigError

__all__ = ["STAGES", "BenchSettings", "FULL", "QUICK"]

#: Stages in the order they run (``machine`` always runs: the others use its peak). The NumPy
#: stages run before TensorFlow is imported: ``build-masks`` and ``evaluate`` never load it, and
#: its idle thread pools slow single-threaded SciPy code by 10-20 %.
STAGES = (
    "machine",
    "soft_mask",
    "evaluation",
    "pipeline",
    "training",
    "prediction",
    "xla",
    "teardown",
    "memory",
    "cv_cell",
)
_COUNTS = (
    "scans",
    "repeats",
    "base_filters",
    "depth",
    "batch_size",
    "timed_steps",
    "fit_path_rounds",
    "pipeline_batches",
    "predict_batch_size",
    "predict_file_scans",
    "sgemm_size",
    "probe_iterations",
    "memory_epochs",
    "memory_base_filters",
    "memory_depth",
    "memory_batch_size",
    "xla_steps",
    "teardown_rounds",
)


@dataclass(frozen=True)
class BenchSettings:
    """Sizes and repetitions of a benchmark run (:data:`FULL` is ``make bench``).

    Attributes
    ----------
    shape : tuple of 3 int
        Grid of the generated scans (X, Y, Z); ISBI 2015 is 181 x 217 x 181 at 1 mm.
    scans : int
        Generated scans (patients ``seed``, ``seed + 1``, ...) of the soft-mask, pipeline and
        evaluation stages; the first one is also predicted.
    n_lesions, lesion_size : float
        Lesion load of the generated scans (:func:`mssoft.synthetic.make_scan`); the defaults
        give 11 and 18 mL in 26 and 40 lesions, more than half periventricular.
    seed : int
        Seed of the data, the weights and the pipeline.
    repeats : int
        Timed repetitions of the soft-mask and evaluation stages (per scan).
    base_filters, depth, batch_size : int
        U-Net and batch of the training and prediction stages (the defaults of ``mssoft fit``).
    warmup_steps, timed_steps : int
        Training steps run after the first (tracing) step and before timing; timed steps (per
        round, of the fit path and of the plain step alike).
    fit_path_bases : tuple of int
        U-Net widths of the training stage (``base_filters`` is always among them).
    fit_path_rounds : int
        Alternating rounds (plain steps, then a ``fit`` epoch) per width and dtype policy.
    pipeline_batches : int
        Batches timed in the pipeline stage.
    predict_batch_size : int
        Slices per model call in the prediction stage.
    predict_file_scans : int
        Scans written as NIfTI and predicted from the files, without and with overlapped
        reading and writing.
    sgemm_size : int
        Side of the square float32 matrices of the sgemm measurement.
    probe_iterations : int
        Loop length of the compiled FMA and clock probe (about 1 s per 10**8 on 3 GHz cores).
    memory_shape : tuple of 3 int
        Grid of the scans of the memory stage (small: that stage trains two models).
    memory_scans : tuple of 2 int
        The two dataset sizes N1 < N2 (scans, two time points per patient, rounded up to whole
        patients); ``fit`` keeps their slices in the on-disk slice cache (``--slice-cache disk``).
    memory_epochs : int
        Epochs of each memory run, >= 2: the peaks after the first, the middle and the last
        epoch are compared.
    memory_base_filters, memory_depth, memory_batch_size : int
        U-Net and batch of the memory runs.
    memory_parallel : bool
        Run the two ``fit`` subprocesses at once, alongside the other stages (their peak memory
        does not depend on it; every timing does, so only for the quick setting).
    xla_steps : int
        Timed training steps and prediction calls per model of the XLA stage.
    teardown_rounds : int
        Iterators dropped per pipeline in the teardown stage (:mod:`harness.teardown`).
    teardown_seconds : float
        Seconds of batches drawn before each drop, > 0 (the autotuning timer it may have to
        wait for grows with them, up to 60 s).
    quick : bool
        The smoke-test setting (also of the cv-cell stage: ``harness.cv_cell.CELL_QUICK``): its
        numbers are not meaningful.
    """

    shape: tuple[int, int, int] = (181, 217, 181)
    scans: int = 2
    n_lesions: float = 40.0
    lesion_size: float = 1.2
    seed: int = 0
    repeats: int = 3
    base_filters: int = 32
    depth: int = 4
    batch_size: int = 8
    warmup_steps: int = 1
    timed_steps: int = 12
    fit_path_bases: tuple[int, ...] = (16, 32)
    fit_path_rounds: int = 4
    pipeline_batches: int = 60
    predict_batch_size: int = 16
    predict_file_scans: int = 2
    sgemm_size: int = 3072
    probe_iterations: int = 200_000_000
    memory_shape: tuple[int, int, int] = (64, 72, 40)
    memory_scans: tuple[int, int] = (10, 100)
    memory_epochs: int = 3
    memory_base_filters: int = 8
    memory_depth: int = 3
    memory_batch_size: int = 8
    memory_parallel: bool = False
    xla_steps: int = 4
    teardown_rounds: int = 8
    teardown_seconds: float = 8.0
    quick: bool = False

    def __post_init__(self) -> None:
        bad = [
            n for n in _COUNTS if int(getattr(self, n)) != getattr(self, n) or getattr(self, n) < 1
        ]
        if self.warmup_steps < 0:
            bad.append("warmup_steps")
        if bad:
            raise ConfigError(f"Invalid benchmark settings: {', '.join(bad)} must be >= 1")
        low, high = self.memory_scans
        if not 1 <= low < high:
            raise ConfigError(
                f"Invalid value for `memory_scans`: expected 1 <= N1 < N2, got {self.memory_scans}"
            )
        if not self.teardown_seconds > 0:
            raise ConfigError("Invalid value for `teardown_seconds`: expected a number > 0")
        if self.memory_epochs < 2:
            raise ConfigError("Invalid value for `memory_epochs`: expected at least 2")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the settings."""
        return tuple(f.name for f in fields(cls))


#: ``make bench``: ISBI-sized scans and the paper's U-Net (and base 16); about 8-10 minutes on
#: 2 idle cores.
FULL = BenchSettings()

#: The smoke test: tiny scans and networks, every stage; about 20 s on 2 idle cores.
QUICK = BenchSettings(
    shape=(40, 48, 32),
    scans=1,
    n_lesions=12.0,
    lesion_size=1.0,
    repeats=1,
    base_filters=4,
    depth=2,
    batch_size=2,
    warmup_steps=0,
    timed_steps=2,
    fit_path_bases=(4,),
    fit_path_rounds=1,
    pipeline_batches=4,
    predict_batch_size=16,
    sgemm_size=256,
    probe_iterations=2_000_000,
    memory_shape=(32, 40, 24),
    memory_scans=(2, 4),
    memory_epochs=2,
    memory_base_filters=2,
    memory_depth=1,
    memory_batch_size=4,
    memory_parallel=True,
    xla_steps=1,
    teardown_rounds=1,
    teardown_seconds=0.5,
    quick=True,
)
