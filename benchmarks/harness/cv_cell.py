"""cv-cell stage: one leave-one-patient-out fold of ``mssoft cv`` on real-scan-sized files.

Data: 3 generated patients of 2 time points (:func:`write_cell_data`): FLAIR and two raters'
masks on a 256 x 256 x 120 grid (phantoms generated at half that size and upsampled, trilinear
for the FLAIR, nearest for the masks: generating at full size takes minutes per scan). The held
out patient is ``training01``: 4 training scans, 2 predicted.

One sweep of one grid point (ratio 1.2, gamma 0.3) and two repeats runs the two cells of that
fold twice, each in a new process that first runs one tiny untimed cell (TensorFlow's start-up
costs):

- **reuse** (this code): this checkout, as ``mssoft cv`` runs it (scans and slices kept for the
  fold's cells, the compiled training model kept from cell to cell, one model load for
  calibration and prediction, slices without brain predicted once, in full batches);
- **reference**: the code before this work, commit :data:`REFERENCE_COMMIT` (extracted with
  ``git archive``), on the same data and settings. Where that commit is not in the clone (a
  shallow clone, an sdist), the reference is this checkout with the reuse turned off, and
  ``reference_code`` says so.

Every step's wall time is taken by :class:`harness.step_clock.StepClock`: reading and
normalising scans, soft masks, slice loading, training, calibration, prediction, evaluation
(exclusive times; the remainder is ``other``); within training, the time from the end of each
``model.fit``'s last epoch to its return (``fit_end_seconds``: dropping the training pipeline,
which waited up to a minute in the reference code, :mod:`harness.teardown`). The predictions of
both runs are compared voxel by voxel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.step_clock import StepClock

__all__ = [
    "CellSettings",
    "CELL_FULL",
    "CELL_QUICK",
    "REFERENCE_COMMIT",
    "write_cell_data",
    "reference_code",
    "bench_cv_cell",
]

logger = logging.getLogger(__name__)

#: The commit the cv-cell speed-ups started from: the reference of the stage.
REFERENCE_COMMIT = "b8918fa92889ec65c32dd8a3fa0f9c5241b14e75"
BENCHMARKS = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CellSettings:
    """Size of the cv-cell stage (:data:`CELL_FULL` in ``make bench``)."""

    shape: tuple[int, int, int] = (256, 256, 120)
    epochs: int = 3
    base_filters: int = 16
    repeats: int = 2
    seed: int = 0
    mixed_precision: bool = False
    jit_compile: str = "auto"


CELL_FULL = CellSettings()
CELL_QUICK = CellSettings(shape=(48, 48, 24), epochs=1, base_filters=4)


def write_cell_data(root: Path, settings: CellSettings) -> Path:
    """3 patients x 2 time points: FLAIR, 2 raters' masks on ``settings.shape`` (ISBI layout)."""
    from scipy.ndimage import zoom

    from mssoft.files.nifti import grid_meta, read_volume, write_volume
    from mssoft.files.scans import discover_scans
    from mssoft.synthetic import write_isbi_dataset
    from mssoft.synthetic.writer import isbi_affine

    small = root / "small"
    half = tuple(max(16, s // 2) for s in settings.shape)
    write_isbi_dataset(
        small, n_patients=3, timepoints=2, shape=half, seed=settings.seed, write_truth=False
    )
    data = root / "data"
    meta = grid_meta(settings.shape, isbi_affine(settings.shape), path=data)  # 1 mm voxels
    for scan in discover_scans(small):
        files = [(scan.images["flair"], 1, np.float32)]
        files += [(path, 0, np.uint8) for path in scan.masks.values()]
        for path, order, dtype in files:
            array, _ = read_volume(path, dtype=np.float32)
            factors = [t / s for t, s in zip(settings.shape, array.shape, strict=True)]
            big = zoom(array, factors, order=order, grid_mode=True, mode="grid-constant")
            write_volume(big.astype(dtype), meta, data / path.relative_to(small), dtype=dtype)
    shutil.rmtree(small)
    return data


def _step_targets() -> list[tuple[Any, str, str]]:
    import mssoft.files.scans as scans
    import mssoft.workflows.build_masks as build_masks
    import mssoft.workflows.calibrate as calibrate
    import mssoft.workflows.evaluate as evaluate
    import mssoft.workflows.fit as fit
    import mssoft.workflows.pipeline as pipeline
    import mssoft.workflows.predict as predict
    import mssoft.workflows.training_data as training_data
    from mssoft.arrays.intensity import Normaliser
    from mssoft.workflows.settings import MaskConfig

    targets = [
        (scans, "load_scan", "reading and normalising scans"),
        (Normaliser, "apply", "reading and normalising scans"),
        (build_masks, "build_soft_masks", "soft masks"),
        (MaskConfig, "soft_mask", "soft masks"),
        (training_data, "load_slices", "slice loading"),
        (fit, "fit", "training"),
        (pipeline, "_trained_model", "calibration"),  # the model both steps share
        (calibrate, "calibrate_run", "calibration"),
        (predict, "predict_folder", "prediction"),
        (evaluate, "evaluate_folder", "evaluation"),
    ]
    # the reference code has no shared model load
    return [t for t in targets if t[1] in vars(t[0])]


def _run_sweep(
    data: Path, out: Path, settings: CellSettings, *, reuse: bool | None
) -> dict[str, Any]:
    """The fold's cells (held-out ``training01``, every repeat), timed step by step.

    ``reuse`` None runs the code of :data:`REFERENCE_COMMIT` (it has no such option); True and
    False this checkout's :func:`~mssoft.experiments.cv.run.run_cells` with and without reuse.
    """
    import keras

    from mssoft.experiments.cv.run import CVConfig, _plan, _prepare_out, run_cells
    from mssoft.workflows.settings import TrainingSettings

    wanted = {
        "modalities": ("flair",),
        "epochs": settings.epochs,
        "base_filters": settings.base_filters,
        "seed": settings.seed,
        "mixed_precision": settings.mixed_precision,
        "jit_compile": settings.jit_compile,  # not an option of the reference code
    }
    known = {f.name for f in dataclasses.fields(TrainingSettings)}
    config = CVConfig(
        data=data,
        out=out,
        ratios=(1.2,),
        gammas=(0.3,),
        repeats=settings.repeats,
        training=TrainingSettings(**{k: v for k, v in wanted.items() if k in known}),
    )
    plan = _plan(config)
    _prepare_out(config, plan[1])
    # the soft point's repeats of one fold (cv now adds the binary point to a grid without it)
    cells = [
        c
        for c in plan[3]
        if c.fold.held_out == "training01" and not getattr(c.point, "is_binary", False)
    ]
    keras.backend.clear_session()
    clock = StepClock(_step_targets())
    seconds = []
    options = {} if reuse is None else {"reuse": reuse}
    kept = contextlib.ExitStack()
    if reuse:  # what one run_cells call over all the cells keeps from cell to cell
        from mssoft.files.memo import keep_in_memory
        from mssoft.nn.model_reuse import keep_compiled_models

        kept.enter_context(keep_in_memory(2**34))
        kept.enter_context(keep_compiled_models())
    t0 = time.perf_counter()
    # one run_cells call per cell (timed each), inside what one call over them all would keep
    with clock.running(), kept, _fit_end_clock() as fit_ends:
        for cell in cells:
            start = time.perf_counter()
            run_cells(config, plan=(*plan[:3], [cell]), **options)
            seconds.append(round(time.perf_counter() - start, 1))
    wall = time.perf_counter() - t0
    record = clock.record(wall)
    record["cells"] = [c.key for c in cells]
    record["cell_seconds"] = seconds
    record["fit_end_seconds"] = [round(s, 2) for s in fit_ends]
    return record


@contextlib.contextmanager
def _fit_end_clock() -> Iterator[list[float]]:
    """Seconds from the end of each ``keras.Model.fit``'s training to its return, in a list.

    ``fit`` drops its training iterator between the two: with an autotuned ``tf.data``
    pipeline that can wait up to a minute (:mod:`harness.teardown`). Both codes train with
    ``keras.Model.fit``, so the same wrapper measures them.
    """
    import keras

    ends: list[float] = []
    original = keras.Model.fit

    class _TrainEnd(keras.callbacks.Callback):
        at: float | None = None

        def on_train_end(self, logs: Any = None) -> None:
            self.at = time.perf_counter()

    def fit(model: Any, *args: Any, callbacks: Any = None, **kwargs: Any) -> Any:
        end = _TrainEnd()
        try:
            return original(model, *args, callbacks=[*(callbacks or []), end], **kwargs)
        finally:
            if end.at is not None:
                ends.append(time.perf_counter() - end.at)

    keras.Model.fit = fit
    try:
        yield ends
    finally:
        keras.Model.fit = original


def reference_code(workdir: Path) -> Path | None:
    """The ``mssoft`` package of :data:`REFERENCE_COMMIT`, extracted into ``workdir``.

    Returns
    -------
    Path or None
        The folder to put first on ``sys.path``; None when git or the commit is not available.
    """
    command = ["git", "-C", str(BENCHMARKS.parent), "archive", REFERENCE_COMMIT, "mssoft"]
    try:
        archive = subprocess.run(command, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        logger.warning("cv cell: commit %s not available (%s)", REFERENCE_COMMIT[:7], error)
        return None
    target = workdir / "reference_code"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _sweep_in_new_process(
    code: Path | None, data: Path, warmup: Path, out: Path, settings: CellSettings, *, reuse: bool
) -> dict[str, Any]:
    """:func:`_run_sweep` in a new Python process (``code``, if given, first on its path) after
    one tiny untimed cell on the ``warmup`` data; its record."""
    job = {
        "code": None if code is None else str(code),
        "data": str(data),
        "warmup": str(warmup),
        "out": str(out),
        "result": str(out.with_suffix(".json")),
        "settings": asdict(settings),
        "reuse": None if code is not None else reuse,
    }
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(Path(f"{out}_warmup"), ignore_errors=True)
    # the reference's mssoft goes first on the path before anything imports mssoft
    child = (
        "import json, sys; code = json.loads(sys.argv[1])['code']; "
        "code and sys.path.insert(0, code); "
        "from harness.cv_cell import run_child; run_child(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", child, json.dumps(job)], check=True, cwd=BENCHMARKS)
    return json.loads(Path(job["result"]).read_text())


def run_child(job_json: str) -> None:
    """The body of :func:`_sweep_in_new_process`: one tiny cell, then the timed sweep."""
    job = json.loads(job_json)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    given = job["settings"]
    settings = CellSettings(**{**given, "shape": tuple(given["shape"])})
    tiny = CellSettings(**{**asdict(CELL_QUICK), "repeats": 1})
    _run_sweep(Path(job["warmup"]), Path(job["out"] + "_warmup"), tiny, reuse=job["reuse"])
    record = _run_sweep(Path(job["data"]), Path(job["out"]), settings, reuse=job["reuse"])
    import mssoft

    record["mssoft"] = str(Path(mssoft.__file__).parent)
    Path(job["result"]).write_text(json.dumps(record))


def _max_prob_difference(out_a: Path, out_b: Path, cells: list[str]) -> float:
    """Largest voxel difference of the cells' predicted probabilities between two sweeps."""
    from mssoft.files.nifti import read_volume

    worst = 0.0
    for key in cells:
        for path in sorted((out_a / "cells" / key / "pred").glob("*_prob.nii.gz")):
            a, _ = read_volume(path, dtype=np.float32)
            b, _ = read_volume(out_b / "cells" / key / "pred" / path.name, dtype=np.float32)
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def bench_cv_cell(workdir: Path, settings: CellSettings = CELL_FULL) -> dict[str, Any]:
    """Run the stage (module docstring) in ``workdir``; every figure, JSON-ready.

    Returns
    -------
    dict
        ``settings``; ``reuse`` (this code) and ``reference`` (:meth:`StepClock.record` of each
        sweep, with ``cells`` and ``cell_seconds``); ``reference_code`` (what the reference
        ran); ``speedup`` (reference wall / this code's wall over the fold's cells),
        ``speedup_first_cell`` and ``speedup_later_cells``; ``max_prob_difference``.
    """
    t0 = time.perf_counter()
    data = write_cell_data(workdir, settings)
    warmup = write_cell_data(workdir / "warmup", CELL_QUICK)
    record: dict[str, Any] = {
        "settings": asdict(settings),
        "data_seconds": round(time.perf_counter() - t0, 1),
    }
    code = reference_code(workdir)
    record["reference_code"] = (
        f"commit {REFERENCE_COMMIT[:7]}"
        if code is not None
        else "this checkout without reuse (the reference commit is not in this clone)"
    )
    for name, where in (("reuse", None), ("reference", code)):
        logger.info("cv cell: %s", name)
        record[name] = _sweep_in_new_process(
            where, data, warmup, workdir / name, settings, reuse=name == "reuse"
        )
    new, old = record["reuse"], record["reference"]
    record["speedup"] = old["wall_seconds"] / new["wall_seconds"]
    record["speedup_first_cell"] = old["cell_seconds"][0] / max(new["cell_seconds"][0], 1e-9)
    if len(new["cell_seconds"]) > 1:
        record["speedup_later_cells"] = sum(old["cell_seconds"][1:]) / max(
            sum(new["cell_seconds"][1:]), 1e-9
        )
    record["max_prob_difference"] = _max_prob_difference(
        workdir / "reuse", workdir / "reference", new["cells"]
    )
    return record


def format_cell(record: dict[str, Any]) -> str:
    """The stage's table: seconds and share of each step, both runs side by side."""
    new, old = record["reuse"], record["reference"]
    lines = [
        f"cv cell ({record['settings']['shape']}, "
        f"{'mixed bfloat16' if record['settings'].get('mixed_precision') else 'float32'}, "
        f"{len(new['cells'])} cells of one fold): "
        f"this code {new['wall_seconds']:.1f} s, reference "
        f"({record.get('reference_code', 'this checkout without reuse')}) "
        f"{old['wall_seconds']:.1f} s, "
        f"speed-up {record['speedup']:.2f}x (first cell {record['speedup_first_cell']:.2f}x"
        + (
            f", later cells {record['speedup_later_cells']:.2f}x"
            if "speedup_later_cells" in record
            else ""
        )
        + f"); max |prob difference| {record['max_prob_difference']:.2g}",
        f"{'step':32s} {'this code s':>11s} {'share':>6s} {'reference s':>12s} {'share':>6s}",
    ]
    for step in old["steps"]:
        a, b = new["steps"][step], old["steps"][step]
        lines.append(
            f"{step:32s} {a['seconds']:11.1f} {a['share']:6.1%} "
            f"{b['seconds']:12.1f} {b['share']:6.1%}"
        )
    if "fit_end_seconds" in new and "fit_end_seconds" in old:
        ends = [sum(run["fit_end_seconds"]) for run in (new, old)]
        lines.append(
            f"{'  of training: end of fit':32s} {ends[0]:11.1f} {'':6s} {ends[1]:12.1f}"
            "   (training's end to fit's return: the pipeline's teardown)"
        )
    return "\n".join(lines)
