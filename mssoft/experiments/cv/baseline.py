"""The FLAIR-threshold baseline of a cross-validation sweep: one per fold, reused on re-runs.

The baseline does not depend on the grid point or the repeat: per fold, its threshold is
calibrated once on the fold's training scans against the sweep's rater
(:func:`mssoft.workflows.flair_baseline.calibrate_on_scans`), it segments the held-out scans and
is scored against every rater. ``cells/<held-out patient>/flair_baseline.json``
(:func:`mssoft.files.layout.cv_fold_baseline_path`) holds the result, plus the TP, FP and FN of
every axial slice of the training scans against each validation target of the grid (the sweep's
rater, or the share of several raters): with those, the baseline's Dice on any cell's validation
slices is a sum (:func:`validation_dice_of_cell`), which is what a model must beat to count as
learned. The file is written once and reused when the sweep is re-run; it is rebuilt only when
its fold, rater or targets no longer match.

In the sweep's per-scan rows the baseline is the pseudo grid point :data:`FLAIR_POINT`
(ratio 0, gamma 0, variant ``flair-threshold``), one row per held-out scan, rater and repeat
present among the models' rows, so it pairs with every model like a grid point.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.flair_baseline import FLAIR_THRESHOLD_GRID
from mssoft.arrays.metrics import MEAN_FIELDS
from mssoft.experiments.cv.plan import FLAIR_POINT, FLAIR_VARIANT, Cell, Fold, GridPoint
from mssoft.files.atomic import write_json
from mssoft.files.layout import cv_fold_baseline_path
from mssoft.files.scans import Scan
from mssoft.workflows.flair_baseline import (
    calibrate_on_scans,
    has_flair,
    metric_row,
    overlap_counts,
    rater_targets,
    score_against_raters,
    segment_scans,
    target_name,
    validation_dice,
)

__all__ = [
    "FLAIR_VARIANT",
    "FLAIR_POINT",
    "point_target",
    "grid_targets",
    "ensure_fold_baselines",
    "read_fold_baselines",
    "baseline_rows",
    "validation_dice_of_cell",
]

logger = logging.getLogger(__name__)


def point_target(point: GridPoint, rater: int) -> tuple[int, ...]:
    """The raters whose (binarised) masks a grid point's model is validated against."""
    return tuple(point.raters) if point.raters is not None else (rater,)


def grid_targets(points: Sequence[GridPoint], rater: int) -> dict[str, tuple[int, ...]]:
    """Validation targets of the grid by name (``rater1``, ``raters1-2``)."""
    targets = [point_target(p, rater) for p in points]
    return {target_name(t): t for t in dict.fromkeys(targets)}


def _matches(record: dict[str, Any], fold: Fold, rater: int, targets: dict[str, Any]) -> bool:
    return (
        record.get("rater") == rater
        and record.get("train_scans") == list(fold.train)
        and record.get("test_scans") == list(fold.test)
        and record.get("grid") == FLAIR_THRESHOLD_GRID.tolist()
        and set(targets) <= set(record.get("slice_counts", {}))
    )


def _fold_record(
    fold: Fold, scans: dict[str, Scan], rater: int, targets: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    train = [scans[s] for s in fold.train if rater in scans[s].masks]
    test = [scans[s] for s in fold.test]
    baseline = calibrate_on_scans(train, rater)
    held_out = segment_scans(baseline, test)
    rows = [
        {"scan": scan, "rater": r, **metric_row(m)}
        for scan, r, m in score_against_raters(held_out, test)
    ]
    segmented = segment_scans(baseline, train)
    counts = {}
    for name, raters in targets.items():
        usable = [s for s in train if all(r in s.masks for r in raters)]
        counts[name] = {
            scan: c.tolist()
            for scan, c in overlap_counts(segmented, rater_targets(usable, raters)).items()
        }
    return {
        "fold": fold.held_out,
        "rater": rater,
        "train_scans": list(fold.train),
        "test_scans": list(fold.test),
        "grid": FLAIR_THRESHOLD_GRID.tolist(),
        "baseline": baseline.to_dict(),
        "scans": rows,
        "slice_counts": counts,
    }


def ensure_fold_baselines(
    out: Path,
    scans: Sequence[Scan],
    folds: Sequence[Fold],
    points: Sequence[GridPoint],
    rater: int,
) -> dict[str, dict[str, Any]]:
    """Compute (or reuse) every fold's baseline file; returns the records by held-out patient.

    Nothing is computed when the scans have no FLAIR (the records are then empty; a warning is
    logged). Two processes computing one fold's file write the same content atomically.
    """
    if not has_flair(list(scans)):
        logger.warning("no FLAIR image in the data: the FLAIR-threshold baseline is not computed")
        return {}
    by_id = {s.scan_id: s for s in scans}
    targets = grid_targets(points, rater)
    records = {}
    for fold in folds:
        path = cv_fold_baseline_path(out, fold.held_out)
        if path.is_file():
            stored = json.loads(path.read_text())
            if _matches(stored, fold, rater, targets):
                records[fold.held_out] = stored
                continue
        logger.info("FLAIR-threshold baseline of fold %s", fold.held_out)
        record = _fold_record(fold, by_id, rater, targets)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(record, path)
        records[fold.held_out] = record
    return records


def read_fold_baselines(out: Path, folds: Sequence[Fold]) -> dict[str, dict[str, Any]]:
    """The baseline records that exist, by held-out patient (written by
    :func:`ensure_fold_baselines`)."""
    records = {}
    for fold in folds:
        path = cv_fold_baseline_path(out, fold.held_out)
        if path.is_file():
            records[fold.held_out] = json.loads(path.read_text())
    return records


def baseline_rows(
    records: dict[str, dict[str, Any]], model_rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per-scan rows of the baseline, shaped like the models' rows (see the module docstring).

    One row per held-out scan, rater and repeat for which some model has a row, so the
    baseline's means cover the same scans as the models' and it pairs with every repeat.
    """
    repeats: dict[str, dict[int, int]] = {}
    for row in model_rows:
        repeats.setdefault(str(row["scan"]), {})[int(row["repeat"])] = int(row["seed"])
    rows = []
    for fold, record in records.items():
        baseline = record["baseline"]
        for scan_row in record["scans"]:
            for repeat, seed in sorted(repeats.get(scan_row["scan"], {}).items()):
                rows.append(
                    {
                        "fold": fold,
                        "scan": scan_row["scan"],
                        "ratio": FLAIR_POINT[0],
                        "gamma": FLAIR_POINT[1],
                        "repeat": repeat,
                        "seed": seed,
                        "rater": scan_row["rater"],
                        "threshold": baseline["threshold"],
                        "min_size": baseline["min_size"],
                        **{k: scan_row[k] for k in MEAN_FIELDS if k in scan_row},
                        "ece": math.nan,
                        "brier": math.nan,
                        "ece_truth": math.nan,
                        "brier_truth": math.nan,
                        "variant": FLAIR_VARIANT,
                    }
                )
    return rows


def validation_dice_of_cell(
    cell: Cell, out: Path, records: dict[str, dict[str, Any]], rater: int
) -> float:
    """The baseline's Dice on the cell's validation slices against the cell's validation target.

    NaN when the fold has no baseline record or the cell's run has no ``split.json``.
    """
    record = records.get(cell.fold.held_out)
    if record is None:
        return math.nan
    counts = record["slice_counts"].get(target_name(point_target(cell.point, rater)))
    if counts is None:
        return math.nan
    arrays = {scan: np.asarray(c, dtype=np.int64) for scan, c in counts.items()}
    return validation_dice(arrays, cell.folder(out) / "run")
