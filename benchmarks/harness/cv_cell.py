"""cv-cell stage: one leave-one-patient-out fold of ``mssoft cv`` on real-scan-sized files.

Data: 3 generated patients of 2 time points (:func:`write_cell_data`): FLAIR and two raters'
masks on a 256 x 256 x 120 grid (phantoms generated at half that size and upsampled, trilinear
for the FLAIR, nearest for the masks: generating at full size takes minutes per scan). The held
out patient is ``training01``: 4 training scans, 2 predicted.

One sweep of one grid point (ratio 1.2, gamma 0.3) and two repeats runs the two cells of that
fold, first with ``reuse=True`` (what ``mssoft cv`` runs) then with ``reuse=False`` (every step
as the separate commands run it: the code before the reuse), each in a fresh output folder of
the same process, after one tiny untimed cell that pays TensorFlow's start-up costs. Every
step's wall time is taken by
:class:`harness.step_clock.StepClock`:
reading and normalising scans, soft masks, slice loading, training, calibration, prediction,
evaluation (exclusive times; the remainder is ``other``). The predictions of both runs are
compared voxel by voxel.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.step_clock import StepClock

__all__ = ["CellSettings", "CELL_FULL", "CELL_QUICK", "write_cell_data", "bench_cv_cell"]

logger = logging.getLogger(__name__)


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

    return [
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


def _run_sweep(data: Path, out: Path, settings: CellSettings, *, reuse: bool) -> dict[str, Any]:
    """The fold's cells (held-out ``training01``, every repeat), timed step by step."""
    import keras

    from mssoft.experiments.cv.run import CVConfig, _plan, _prepare_out, run_cells
    from mssoft.files.memo import keep_in_memory
    from mssoft.workflows.settings import TrainingSettings

    config = CVConfig(
        data=data,
        out=out,
        ratios=(1.2,),
        gammas=(0.3,),
        repeats=settings.repeats,
        training=TrainingSettings(
            modalities=("flair",),
            epochs=settings.epochs,
            base_filters=settings.base_filters,
            seed=settings.seed,
            mixed_precision=settings.mixed_precision,
            jit_compile=settings.jit_compile,
        ),
    )
    plan = _plan(config)
    _prepare_out(config, plan[1])
    # the soft point's repeats of one fold (cv adds the binary point to a grid without it)
    cells = [
        c for c in plan[3] if c.fold.held_out == "training01" and not c.point.is_binary
    ]
    keras.backend.clear_session()
    clock = StepClock(_step_targets())
    seconds = []
    t0 = time.perf_counter()
    # one run_cells call per cell, inside one memo (as one run_cells call over them would be)
    with clock.running(), keep_in_memory(2**34) if reuse else contextlib.nullcontext():
        for cell in cells:
            start = time.perf_counter()
            run_cells(config, plan=(*plan[:3], [cell]), reuse=reuse)
            seconds.append(round(time.perf_counter() - start, 1))
    wall = time.perf_counter() - t0
    record = clock.record(wall)
    record["cells"] = [c.key for c in cells]
    record["cell_seconds"] = seconds
    return record


def _warm_up(workdir: Path) -> None:
    """One tiny cell, untimed: TensorFlow's start-up costs are paid before either sweep."""
    data = write_cell_data(workdir / "warmup", CELL_QUICK)
    tiny = CellSettings(**{**asdict(CELL_QUICK), "repeats": 1})
    _run_sweep(data, workdir / "warmup" / "out", tiny, reuse=False)


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
        ``settings``; ``reuse`` and ``reference`` (:meth:`StepClock.record` of each sweep, with
        ``cells`` and ``cell_seconds``); ``speedup`` (reference wall / reuse wall over the fold's
        cells), ``speedup_first_cell`` and ``speedup_later_cells``; ``max_prob_difference``.
    """
    t0 = time.perf_counter()
    data = write_cell_data(workdir, settings)
    record: dict[str, Any] = {
        "settings": asdict(settings),
        "data_seconds": round(time.perf_counter() - t0, 1),
    }
    _warm_up(workdir)
    for name, reuse in (("reuse", True), ("reference", False)):
        logger.info("cv cell: %s", name)
        record[name] = _run_sweep(data, workdir / name, settings, reuse=reuse)
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
        f"cv cell ({record['settings']['shape']}, {len(new['cells'])} cells of one fold): "
        f"reuse {new['wall_seconds']:.1f} s, reference {old['wall_seconds']:.1f} s, "
        f"speed-up {record['speedup']:.2f}x (first cell {record['speedup_first_cell']:.2f}x"
        + (
            f", later cells {record['speedup_later_cells']:.2f}x"
            if "speedup_later_cells" in record
            else ""
        )
        + f"); max |prob difference| {record['max_prob_difference']:.2g}",
        f"{'step':32s} {'reuse s':>9s} {'share':>6s} {'reference s':>12s} {'share':>6s}",
    ]
    for step in old["steps"]:
        a, b = new["steps"][step], old["steps"][step]
        lines.append(
            f"{step:32s} {a['seconds']:9.1f} {a['share']:6.1%} "
            f"{b['seconds']:12.1f} {b['share']:6.1%}"
        )
    return "\n".join(lines)
