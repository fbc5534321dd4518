"""Leave-one-patient-out cross-validation over dilation size and soft label (paper Tables 1, 2).

For every fold (one patient held out, all of its time points) and every grid point (ratio, gamma)
and repeat (seed), a *cell* builds nothing new for the masks (soft masks of a grid point are built
once for all scans, since a scan's soft mask depends on that scan alone), fits a U-Net on the other
patients, calibrates its threshold on them, predicts the held-out patient and evaluates it against
every rater. Cells are written as they finish
(``cells/<patient>/<grid point>/repeat<k>/result.json``);
re-running the same command skips them. ``shard=(k, n)`` runs every n-th cell, so n processes or
machines sharing the output folder split a sweep; :func:`run_cv` with ``jobs > 1`` starts such
processes itself.

A process reads each scan once and cuts the training slices of a fold and mask setting once for
all of its cells (:func:`run_cells`, :mod:`mssoft.files.memo`), and loads each cell's model once
for calibration and prediction; results are those of the separate commands (up to
floating-point noise). With ``jobs > 1`` on a CPU-only machine, each job gets its share of the
cores (:func:`job_threads`).

Output folder::

    config.json         the sweep (written first; a re-run must match it)
    masks/<grid point>/ soft masks (build-masks output)
    cells/...           one folder per cell: run/, pred/, eval/, result.json
    cells/<patient>/flair_baseline.json
                        the fold's FLAIR-threshold baseline (computed once, reused on re-runs)
    slice_cache/...     training slices on disk (only when they do not fit in memory), one
                        folder per fold and mask setting, shared by its repeats; safe to delete
    cv_results.csv      a row per fold × grid point × repeat × rater (means over the fold's scans)
    cv_scans.csv        a row per held-out scan × grid point × repeat × rater
    comparison.csv      every grid point against binary and against the FLAIR-threshold
                        baseline (column ``against``), per rater and metric: pairs, mean
                        difference, 95 % bootstrap CI, Wilcoxon p, models that learned
    table.md            the paper's table (mean ± std), the paired comparisons and the best
                        setting (marked incomplete while cells are missing)
    sweep.png           one panel per metric (raters offset) and the paired Dice difference

The FLAIR-threshold baseline is the pseudo grid point ``FLAIR threshold`` in every output (ratio 0,
gamma 0, variant ``flair-threshold`` in the CSV files; :mod:`mssoft.experiments.cv.baseline`). A
grid without the binary point gets it added (an info line says so): every point is compared with
it. Re-running a sweep written before the baseline existed computes the baseline files and the new
rows without retraining any finished cell.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mssoft.arrays.metrics import MEAN_FIELDS, nanmean
from mssoft.arrays.soft_masks import parse_flair_threshold
from mssoft.errors import ConfigError, MssoftError
from mssoft.experiments.cv.baseline import (
    baseline_rows,
    ensure_fold_baselines,
    read_fold_baselines,
    validation_dice_of_cell,
)
from mssoft.experiments.cv.plan import (
    Cell,
    GridPoint,
    grid_points,
    leave_one_patient_out,
    plan_cells,
    with_binary_point,
)
from mssoft.experiments.cv.report import (
    BestSetting,
    Learning,
    choose_best,
    compare,
    compare_with_flair,
    comparison_records,
    describe_best,
    format_comparison,
    format_table,
    learning,
    plot_sweep,
    summarise,
)
from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.folders import (
    FolderInUseError,
    clear_folder,
    folder_lock,
    is_complete,
    read_config,
    write_config,
)
from mssoft.files.history import read_history
from mssoft.files.layout import (
    CELL_EVAL_DIR,
    CELL_PRED_DIR,
    CELL_RESULT_NAME,
    CELL_RUN_DIR,
    CONFIG_NAME,
    CV_COMPARISON_NAME,
    CV_FIGURE_NAME,
    CV_MASKS_DIR,
    CV_RESULTS_NAME,
    CV_SCANS_NAME,
    CV_TABLE_NAME,
    HISTORY_NAME,
    SLICE_CACHE_DIR,
    soft_mask_path,
)
from mssoft.files.memo import keep_in_memory
from mssoft.files.scans import Scan, discover_scans, resolve_modalities
from mssoft.nn.model_reuse import keep_compiled_models
from mssoft.workflows.build_masks import build_soft_masks
from mssoft.workflows.pipeline import run_pipeline
from mssoft.workflows.settings import MaskConfig, TrainConfig, TrainingSettings
from mssoft.workflows.training_data import available_memory_bytes

__all__ = [
    "CVConfig",
    "CVResult",
    "run_cv",
    "run_cells",
    "collect_rows",
    "collect_cells",
    "write_reports",
    "job_threads",
    "limit_threads",
]

logger = logging.getLogger(__name__)

#: Share of the available memory the scans and slices kept between cells may take.
MEMO_SHARE = 0.25
#: Fewest cores per job for which ``--jobs`` bounds each CPU-only job's threads
#: (:func:`job_threads`).
MIN_JOB_THREADS = 2
#: Options that may differ between runs of one sweep (they do not change any cell's result).
_FREE_OPTIONS = ("shard", "jobs", "data", "out", "strategy", "devices")
#: Grid axes added after the first sweeps, with the values those sweeps had.
#: (``jit_compile``: a training option added later; a sweep from before it ran with ``auto``.)
_NEW_AXES = {
    "raters": [None],
    "rings": ["constant"],
    "ring_sigma": 2.0,
    "tta": ["none"],
    "jit_compile": "auto",
}
#: Soft-mask settings that are grid axes (``--ratios``, ``--gammas``, ``--rings``), not options.
_AXIS_PARAMS = ("ratio", "gamma", "ring")


@dataclass(frozen=True)
class CVConfig:
    """A cross-validation sweep.

    Attributes
    ----------
    data, out : Path
        Data (ISBI folder or manifest) and the sweep's output folder.
    ratios, gammas : tuple of float
        Grid; ratio 1 (or gamma 0) is the binary baseline, listed once.
    repeats : int
        Models per cell, seeds ``training.seed, training.seed + 1, ...``.
    mask : MaskConfig
        Soft-mask settings shared by the grid points
        (:class:`mssoft.workflows.settings.MaskConfig`): its rater is softened and trained on
        (evaluation uses every rater); FLAIR threshold, per-lesion growth and the ring
        parameters (``ring_sigma``) apply to every point. Its ratio, gamma, ring and raters are
        replaced by each grid point's.
    raters : tuple of (tuple of int or None)
        Grid axis: None (``rater`` alone) or several raters whose share makes the label.
    rings : tuple of str
        Grid axis: ring profiles (``constant``, ``linear``, ``gaussian``).
    tta : tuple of str
        Grid axis: test-time augmentation of calibration and prediction (``none``, ``flip``).
    training : TrainingSettings
        Every training option of ``mssoft fit``
        (:class:`mssoft.workflows.settings.TrainingSettings`);
        its seed is the first repeat's.
    shard : (int, int)
        Run cells ``i`` with ``i % n == k`` for ``shard == (k, n)``.
    jobs : int
        Local processes, each running one shard.
    """

    data: Path
    out: Path
    ratios: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4)
    gammas: tuple[float, ...] = (0.3,)
    repeats: int = 1
    mask: MaskConfig = field(default_factory=MaskConfig)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    shard: tuple[int, int] = (0, 1)
    jobs: int = 1
    raters: tuple[tuple[int, ...] | None, ...] = (None,)
    rings: tuple[str, ...] = ("constant",)
    tta: tuple[str, ...] = ("none",)

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"Invalid value for `--jobs`: expected >= 1, got {self.jobs}")
        if self.jobs > 1 and self.shard != (0, 1):
            raise ConfigError("Invalid options: `--jobs` and `--shard` cannot be combined")
        if self.training.strategy == "multiworker":
            raise ConfigError(
                "Invalid value for `--strategy`: cv runs its cells on one machine each "
                "(use --shard to spread them over machines)"
            )

    @property
    def rater(self) -> int:
        """The rater whose masks are softened and trained on (``mask.rater``)."""
        return self.mask.rater

    def record(self) -> dict[str, Any]:
        """JSON-ready configuration, the training settings at the top level.

        The soft-mask settings appear as the fields they were before :attr:`mask` held them:
        ``rater`` and every setting that is no grid axis (``flair_threshold``, ``per_lesion``,
        ``ring_sigma``), so a sweep recorded earlier compares equal.
        """
        own: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "mask":
                own["rater"] = self.mask.rater
                params = asdict(self.mask.params)
                own.update({k: v for k, v in params.items() if k not in _AXIS_PARAMS})
            elif f.name != "training":
                own[f.name] = getattr(self, f.name)
        record = {k: (str(v) if isinstance(v, Path) else v) for k, v in own.items()}
        return {**record, **self.training.record()}


@dataclass
class CVResult:
    """What :func:`run_cv` produced."""

    out: Path
    cells_total: int
    cells_done: int
    cells_run: int
    rows: list[dict[str, Any]] = field(repr=False)
    best: BestSetting | None = None
    comparisons: list[dict[str, Any]] = field(default_factory=list, repr=False)
    learned: dict[tuple[float, float, str], Learning] = field(default_factory=dict)
    best_line: str = ""

    @property
    def complete(self) -> bool:
        return self.cells_done == self.cells_total


_PlanT = tuple[list[Scan], tuple[str, ...], list[GridPoint], list[Cell]]


def _plan(config: CVConfig) -> _PlanT:
    scans = [s for s in discover_scans(config.data) if config.rater in s.masks]
    if not scans:
        raise ConfigError(
            f"Invalid value for `--rater`: no scan in {config.data} has a mask of rater "
            f"{config.rater}"
        )
    modalities = resolve_modalities(scans, config.training.modalities)
    folds = leave_one_patient_out(scans)
    points, added = with_binary_point(
        grid_points(
            config.ratios, config.gammas, raters=config.raters, rings=config.rings, ttas=config.tta
        )
    )
    if added:
        logger.info(
            "the grid has no binary point (ratio 1 of rater %d): added, since every grid point is "
            "compared with it",
            config.rater,
        )
    return (
        scans,
        modalities,
        points,
        plan_cells(folds, points, repeats=config.repeats, seed=config.training.seed),
    )


def _prepare_out(config: CVConfig, modalities: tuple[str, ...]) -> None:
    out = Path(config.out)
    record = json.loads(json.dumps({**config.record(), "modalities": list(modalities)}))
    if (out / CONFIG_NAME).is_file():
        stored = read_config(out, command="cv")["config"]
        stored = {**_NEW_AXES, **stored}  # a sweep from before these axes: their defaults
        stored = _parsed_threshold(stored)
        differ = sorted(k for k in record if k not in _FREE_OPTIONS and stored.get(k) != record[k])
        if differ:
            raise ConfigError(
                f"Invalid value for `--out`: {out} holds a sweep with other options "
                f"({', '.join(differ)}); use a new folder or the same options"
            )
        return
    from mssoft.files.folders import prepare_output_folder

    prepare_output_folder(out, command="cv", data=config.data)
    write_config(out, "cv", record)


def _parsed_threshold(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``flair_threshold`` as :class:`MaskConfig` holds it (``"none"`` is
    None, ``"0.5"`` is 0.5): sweeps recorded before CVConfig held a MaskConfig have the text of
    the option."""
    try:
        return {**record, "flair_threshold": parse_flair_threshold(record.get("flair_threshold"))}
    except ValueError:
        return record


def _mask_folder(config: CVConfig, point: GridPoint, scans: Sequence[Scan]) -> Path | None:
    """Soft masks of ``point`` for every scan, built once (None for the binary baseline)."""
    if point.is_binary:
        return None
    folder = Path(config.out) / CV_MASKS_DIR / replace(point, tta="none").name  # TTA: same masks
    mask_config = point.mask_config(config.mask)
    # one builder at a time: a shard that finds another building these masks waits for it
    with folder_lock(folder, command="cv", wait=True):
        if is_complete(folder, command="build-masks") and all(
            soft_mask_path(folder, s.scan_id).is_file() for s in scans
        ):
            return folder
        logger.info("building %s soft masks for %d scans", point.name, len(scans))
        for _ in build_soft_masks(scans, folder, mask_config):
            pass
    return folder


def _fold_rows(per_scan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per rater: the cell's identity and the means over its held-out scans."""
    rows = []
    for rater in sorted({r["rater"] for r in per_scan}):
        mine = [r for r in per_scan if r["rater"] == rater]
        row = {
            k: mine[0][k]
            for k in ("fold", "ratio", "gamma", "repeat", "seed", "rater", "threshold", "min_size")
        }
        row["n_scans"] = len(mine)
        for key in (*MEAN_FIELDS, "ece", "brier", "ece_truth", "brier_truth"):
            row[key] = nanmean([float(r.get(key, "nan")) for r in mine])[0]
        row["variant"] = mine[0].get("variant", "")  # last: the paper's columns keep their order
        rows.append(row)
    return rows


def _run_cell(
    cell: Cell,
    config: CVConfig,
    modalities: tuple[str, ...],
    masks: Path | None,
    patients: tuple[str, ...],
    *,
    reuse: bool = True,
) -> dict[str, Any]:
    """Fit on ``patients``, calibrate, predict and evaluate one cell; returns its result record.

    ``reuse``: load the trained model once for calibration and prediction (see
    :func:`run_cells`)."""
    folder = cell.folder(config.out)
    folder.mkdir(parents=True, exist_ok=True)  # emptied by run_cells
    train_config = TrainConfig.from_settings(
        config.training,
        data=Path(config.data),
        out=folder / CELL_RUN_DIR,
        masks=masks,
        rater=config.rater if cell.point.raters is None else None,
        modalities=modalities,
        patients=patients,
        seed=cell.seed,
    )
    result = run_pipeline(
        train_config,
        calibrate_scans=cell.fold.train,
        predict_scans=cell.fold.test,
        pred_dir=folder / CELL_PRED_DIR,
        eval_dir=folder / CELL_EVAL_DIR,
        name=f"model of {cell.key}",
        tta=cell.point.tta,
        share_model=reuse,
        slice_cache=_shared_slice_cache(config, cell) if reuse else None,
    )
    fitted, calibration, evaluation = result.fit, result.calibration, result.evaluation
    assert evaluation is not None
    ece = {c.reference: c.per_scan for c in evaluation.calibration}
    per_scan = []
    for row in evaluation.rows:
        if row.source != "pred":
            continue
        per_scan.append(
            {
                "fold": cell.fold.held_out,
                "scan": row.scan_id,
                "ratio": cell.point.ratio,
                "gamma": cell.point.gamma,
                "repeat": cell.repeat,
                "seed": cell.seed,
                "rater": row.rater,
                "threshold": calibration.binarisation.threshold,
                "min_size": calibration.binarisation.min_size,
                **{k: v for k, v in row.metrics.to_dict().items() if k in MEAN_FIELDS},
                **_calibration_values(ece, row.scan_id, row.rater),
                "variant": cell.point.variant,
            }
        )
    record = {
        "cell": cell.key,
        "fold": cell.fold.held_out,
        "train_scans": list(cell.fold.train),
        "test_scans": list(cell.fold.test),
        "ratio": cell.point.ratio,
        "gamma": cell.point.gamma,
        "variant": cell.point.variant,
        "repeat": cell.repeat,
        "seed": cell.seed,
        "best_epoch": fitted.best_epoch,
        "best_val_loss": fitted.best_loss,
        "val_dice": _saved_epoch_dice(fitted.history, fitted.best_epoch),
        "collapsed_epoch": fitted.collapsed_epoch,
        "threshold": calibration.binarisation.threshold,
        "min_size": calibration.binarisation.min_size,
        "scans": per_scan,
    }
    write_json(record, folder / CELL_RESULT_NAME)  # last: marks the cell finished
    return record


def _shared_slice_cache(config: CVConfig, cell: Cell) -> Path:
    """``out/slice_cache/<held-out patient>/<mask setting>``: the on-disk slice cache (when the
    slices go to disk) that the repeats of a fold and mask setting share; the cache's own key
    (files, channels, target source, normalisation) rebuilds any scan whose slices differ."""
    mask_name = replace(cell.point, tta="none").name  # TTA: same training slices
    return Path(config.out) / SLICE_CACHE_DIR / cell.fold.held_out / mask_name


def _saved_epoch_dice(history: Sequence[dict[str, float]], best_epoch: int | None) -> float | None:
    """Validation Dice (else training Dice) at 0.5 of the saved epoch; None without that row."""
    for row in history:
        if best_epoch is not None and int(row["epoch"]) == best_epoch:
            value = row.get("val_dice", row.get("dice"))
            return None if value is None else float(value)
    return None


def _remaining(seconds: Sequence[float], left: int) -> str:
    """``about 12 min left for 3 cells`` from the durations of the cells run so far."""
    if not left:
        return "no cell left"
    minutes = sum(seconds) / len(seconds) * left / 60
    shown = f"{minutes:.0f} min" if minutes >= 1 else "under a minute"
    return f"about {shown} left for {left} cell{'s' if left > 1 else ''}"


def _calibration_values(
    ece: dict[str, dict[str, Any]], scan_id: str, rater: int
) -> dict[str, float]:
    """ECE and Brier of one held-out scan against the rater (and the truth, NaN if none)."""
    from mssoft.arrays.calibration_metrics import brier_score, expected_calibration_error

    values = {}
    for suffix, label in (("", f"rater{rater}"), ("_truth", "truth")):
        stats = ece.get(label, {}).get(scan_id)
        values[f"ece{suffix}"] = expected_calibration_error(stats) if stats else float("nan")
        values[f"brier{suffix}"] = brier_score(stats) if stats else float("nan")
    return values


def run_cells(config: CVConfig, *, plan: _PlanT | None = None, reuse: bool = True) -> int:
    """Run this shard's unfinished cells (in this process). Returns how many were run.

    A cell that another process is running (it holds the cell folder's lock) is skipped.

    ``plan`` is :func:`_plan`'s result when the caller has already made it and checked the output
    folder; a spawned shard process plans (and checks) itself.

    ``reuse`` (default) keeps the scans and training slices read for one cell in memory for the
    next cells of the process (:func:`mssoft.files.memo.keep_in_memory`, at most
    :data:`MEMO_SHARE` of the available memory: the cells of a fold share them, in the order the
    plan runs them), loads each trained model once for calibration and prediction, and trains
    every cell after the first on the compiled model of the one before, set to the cell's own
    initial weights (:mod:`mssoft.nn.model_reuse`: its traced training steps are reused). False
    runs every cell as the separate commands would (the reference the results are compared with).
    """
    if not reuse:
        return _run_cells(config, plan, reuse)
    with keep_in_memory(_memo_bytes()), keep_compiled_models():
        return _run_cells(config, plan, reuse)


def _memo_bytes() -> int:
    """Bytes the memo of :func:`run_cells` may hold."""
    available = available_memory_bytes()
    return int(MEMO_SHARE * available) if available > 0 else 2**30


def _run_cells(config: CVConfig, plan: _PlanT | None, reuse: bool) -> int:
    """:func:`run_cells` inside its memo."""
    if plan is None:
        plan = _plan(config)
        _prepare_out(config, plan[1])
    scans, modalities, _, cells = plan
    index, count = config.shard
    todo = [
        c
        for i, c in enumerate(cells)
        if i % count == index and not (c.folder(config.out) / CELL_RESULT_NAME).is_file()
    ]
    logger.info("shard %d/%d: %d of %d cells to run", index + 1, count, len(todo), len(cells))
    import keras

    run = 0
    patient_of = {s.scan_id: s.patient_id for s in scans}
    masks: dict[GridPoint, Path | None] = {}
    durations: list[float] = []
    for number, cell in enumerate(todo, start=1):
        start = time.perf_counter()
        if cell.point not in masks:
            masks[cell.point] = _mask_folder(config, cell.point, scans)
        logger.info(
            "cell %d/%d: %s (held out: %s)", number, len(todo), cell.key, ", ".join(cell.fold.test)
        )
        patients = tuple(dict.fromkeys(patient_of[s] for s in cell.fold.train))
        folder = cell.folder(config.out)
        try:  # one process per cell: two sweeps on one folder share the cells out
            with folder_lock(folder, command="cv"):
                if (folder / CELL_RESULT_NAME).is_file():
                    continue  # finished by another process meanwhile
                clear_folder(folder)  # a cell interrupted earlier: start it again
                record = _run_cell(
                    cell, config, modalities, masks[cell.point], patients, reuse=reuse
                )
        except FolderInUseError:
            logger.warning("cell %s is being run by another process: skipped", cell.key)
            continue
        run += 1
        durations.append(time.perf_counter() - start)
        collapsed = (
            f", COLLAPSED at epoch {record['collapsed_epoch']}"
            if record["collapsed_epoch"] is not None
            else ""
        )
        logger.info(
            "cell %s done in %.0f s: threshold %.2f, validation Dice %s%s; Dice %s; %s",
            cell.key,
            durations[-1],
            record["threshold"],
            "n/a" if record["val_dice"] is None else f"{record['val_dice']:.3f}",
            collapsed,
            ", ".join(f"{r['scan']} R{r['rater']} {r['dice']:.3f}" for r in record["scans"]),
            _remaining(durations, len(todo) - number),
        )
        keras.backend.clear_session()  # its free_memory runs the garbage collector
    return run


def job_threads(jobs: int, gpus: int, cores: int | None = None) -> int | None:
    """Compute threads for each of ``jobs`` CPU-only shard processes: the usable cores shared out
    when that leaves each job at least :data:`MIN_JOB_THREADS`, else None (TensorFlow's default);
    None too when each job has a GPU of its own.

    Measured on 2 cores (docs/explanation/performance-cv.md): ``--jobs 2`` with one thread each
    took 1.55x as long as with TensorFlow's default threads, which took about as long as
    ``--jobs 1``; so small machines keep the default.
    """
    if gpus >= jobs:
        return None
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS, Windows
            cores = os.cpu_count() or 1
    share = cores // jobs
    return share if share >= MIN_JOB_THREADS else None


def limit_threads(threads: int) -> None:
    """Bound this process's operator threads (before TensorFlow starts): TensorFlow's intra-op
    pool, OpenMP and OpenCV (the inter-op pool and ``tf.data`` keep their defaults)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


def _run_shard(config: CVConfig, threads: int | None = None) -> None:
    """Entry point of a spawned shard process: logs to stderr, tagged with the shard; at most
    ``threads`` compute threads (:func:`job_threads`)."""
    if threads is not None:
        limit_threads(threads)
    tag = f"shard{config.shard[0] + 1}/{config.shard[1]}"
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("mssoft").setLevel(logging.INFO)
    run_cells(config)


def _finished(config: CVConfig, cells: Sequence[Cell]) -> list[Path]:
    """``result.json`` of every finished cell."""
    paths = [cell.folder(config.out) / CELL_RESULT_NAME for cell in cells]
    return [p for p in paths if p.is_file()]


def collect_cells(
    config: CVConfig,
    cells: Sequence[Cell] | None = None,
    baselines: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The ``result.json`` record of every finished cell (without its per-scan rows).

    Cells written before ``val_dice`` was recorded get it from their run's ``history.csv``. Each
    record gets ``baseline_val_dice``: the FLAIR-threshold baseline's Dice on the cell's
    validation slices (NaN without the fold's baseline in ``baselines``).
    """
    if cells is None:
        cells = _plan(config)[3]
    baselines = baselines or {}
    records = []
    for cell in cells:
        path = cell.folder(config.out) / CELL_RESULT_NAME
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        record.pop("scans", None)
        if "val_dice" not in record:
            record["val_dice"] = _saved_epoch_dice(
                read_history(path.parent / CELL_RUN_DIR / HISTORY_NAME), record.get("best_epoch")
            )
        record["baseline_val_dice"] = validation_dice_of_cell(
            cell, Path(config.out), baselines, config.rater
        )
        records.append(record)
    return records


def collect_rows(
    config: CVConfig, cells: Sequence[Cell] | None = None
) -> tuple[list[dict[str, Any]], int, int]:
    """Per-scan rows of every finished cell, with the number of finished and planned cells."""
    if cells is None:
        cells = _plan(config)[3]
    rows: list[dict[str, Any]] = []
    finished = _finished(config, cells)
    for path in finished:
        rows.extend(json.loads(path.read_text())["scans"])
    return rows, len(finished), len(cells)


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _not_learned_note(learned: dict[tuple[float, float, str], Learning]) -> str:
    """The table's line on grid points whose models did not all learn ("" when all did)."""
    from mssoft.experiments.cv.report import point_label

    failing = [
        f"{point_label(*p)}: {c.describe()}" for p, c in learned.items() if not c.all_learned
    ]
    if not failing:
        return ""
    return (
        "\nModels that did not learn (a model learned when its validation Dice at the saved "
        "epoch beats the FLAIR-threshold baseline's on the same validation slices, and its run "
        "did not collapse): " + "; ".join(failing) + ".\n"
    )


def write_reports(config: CVConfig, cells: Sequence[Cell] | None = None) -> CVResult:
    """Write ``cv_results.csv``, ``cv_scans.csv``, ``comparison.csv``, ``table.md`` (marked
    incomplete while cells are missing) and ``sweep.png``, with the FLAIR-threshold baseline of
    every fold whose ``flair_baseline.json`` exists."""
    out = Path(config.out)
    if cells is None:
        cells = _plan(config)[3]
    rows, done, total = collect_rows(config, cells)
    result = CVResult(out=out, cells_total=total, cells_done=done, cells_run=0, rows=rows)
    if not rows:
        return result
    baselines = read_fold_baselines(out, list({c.fold.held_out: c.fold for c in cells}.values()))
    rows = rows + baseline_rows(baselines, rows)
    result.rows = rows
    _write_csv(rows, out / CV_SCANS_NAME)
    by_cell: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["fold"], row["ratio"], row["gamma"], row.get("variant", ""), row["repeat"])
        by_cell.setdefault(key, []).append(row)
    fold_rows = [row for key in sorted(by_cell) for row in _fold_rows(by_cell[key])]
    _write_csv(fold_rows, out / CV_RESULTS_NAME)
    summaries = summarise(rows)
    learned = learning(collect_cells(config, cells, baselines))
    comparisons = compare(rows, seed=config.training.seed)
    against_flair = compare_with_flair(rows, seed=config.training.seed)
    records = comparison_records(comparisons, learned) + comparison_records(
        against_flair, learned, against="flair-threshold"
    )
    _write_csv(records, out / CV_COMPARISON_NAME)
    best = choose_best(summaries, comparisons, learned, against_flair)
    best_line = describe_best(best, learned)
    if done < total:
        best_line = f"provisional ({done} of {total} cells finished): {best_line}"
    table = format_table(summaries) + _not_learned_note(learned)
    if not baselines:
        table += "\nNo FLAIR-threshold baseline: the data has no FLAIR image.\n"
    table += "\n## Against the binary model\n\n" + format_comparison(comparisons, learned)
    if against_flair:
        table += "\n## Against the FLAIR-threshold baseline\n\n" + format_comparison(
            against_flair, learned, against="flair-threshold"
        )
    table += "\n" + best_line + "\n"
    if done < total:
        table += (
            f"\n**Incomplete**: {done} of {total} cells finished; re-run the command to finish.\n"
        )
    with atomic_path(out / CV_TABLE_NAME) as tmp:
        tmp.write_text("# Leave-one-patient-out cross-validation\n\n" + table)
    plot_sweep(summaries, out / CV_FIGURE_NAME, comparisons)
    result.best = best
    result.comparisons = records
    result.learned = learned
    result.best_line = best_line
    return result


def run_cv(config: CVConfig) -> CVResult:
    """Run (or resume) a sweep and write its reports; see the module docstring.

    With ``config.jobs > 1``, that many processes each run one shard; on a machine with at least
    as many GPUs, process k sees only GPU k.
    """
    plan = _plan(config)
    _prepare_out(config, plan[1])
    scans, _, points, cells = plan
    folds = list({c.fold.held_out: c.fold for c in cells}.values())
    ensure_fold_baselines(Path(config.out), scans, folds, points, config.rater)
    before = len(_finished(config, plan[3]))
    if config.jobs == 1:
        run_cells(config, plan=plan)
    else:
        _run_processes(config)
    result = write_reports(config, plan[3])
    result.cells_run = result.cells_done - before
    return result


def _run_processes(config: CVConfig) -> None:
    gpus = _gpu_count()
    threads = job_threads(config.jobs, gpus)
    if threads is not None:
        logger.info("%d jobs on the CPU: %d compute threads each", config.jobs, threads)
    context = multiprocessing.get_context("spawn")
    processes = []
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        for k in range(config.jobs):
            if gpus >= config.jobs:
                os.environ["CUDA_VISIBLE_DEVICES"] = str(k)  # inherited by the spawned process
            process = context.Process(
                target=_run_shard,
                args=(replace(config, jobs=1, shard=(k, config.jobs)), threads),
            )
            process.start()
            processes.append(process)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    try:
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
    failed = [k + 1 for k, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        raise MssoftError(
            f"cross-validation shard(s) {', '.join(map(str, failed))} of {config.jobs} failed "
            "(see their log lines above); re-run the command to retry the unfinished cells"
        )


def _gpu_count() -> int:
    try:
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    except Exception:  # pragma: no cover - TensorFlow always importable when installed
        return 0
