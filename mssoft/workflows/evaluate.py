"""Evaluating segmentations against every rater (docs/design.md §7): ``mssoft evaluate``.

The segmentations are the files of a ``mssoft predict`` output folder (any naming: its
``config.json`` lists them), or ``<scan>_seg.nii.gz`` or nnU-Net's ``<case>.nii.gz`` files; the
references are the rater masks of the data set. Every scan is compared with every rater it has a
mask for (or the raters asked for), with :func:`mssoft.arrays.metrics.scan_metrics`; the results are
averaged per rater with :func:`mssoft.arrays.metrics.summarise`.

With ``inter_rater=True`` the comparison of rater 1's masks (as the segmentation) with rater 2's
(as the reference) is added, on the scans that have both: the human agreement the paper's numbers
should be read against. It comes *in addition to* the prediction rows, as its own column
(``R1 vs R2``) and rows with ``source = rater1`` in ``metrics.csv``.

When the predict folder holds the probability maps (``<scan>_prob.nii.gz``), their calibration
is measured too (:mod:`mssoft.workflows.calibration_report`): expected calibration error (15
equal-width bins) and Brier score over the brain voxels against each rater, the mean of the
raters and, for generated data, the true lesion fraction; per scan and pooled over scans.

Outputs: ``metrics.csv`` (one row per scan and reference, every metric and the voxel and lesion
counts it comes from, so each number can be recomputed from the NIfTI files; ``ece``/``brier``
against the row's rater and ``ece_raters_mean``/``ece_truth``... per scan), ``summary.json``
(means, NaN counts, volume correlation, ISBI terms, ``calibration``), ``reliability.png`` and
``config.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY
from mssoft.arrays.metrics import ScanMetrics, SetSummary, scan_metrics, summarise
from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.folders import STATUS_COMPLETE, open_output_folder, read_config, write_config
from mssoft.files.layout import (
    CONFIG_NAME,
    METRICS_NAME,
    RELIABILITY_NAME,
    SEG_SUFFIX,
    SUMMARY_NAME,
)
from mssoft.files.nifti import check_same_grid, read_header
from mssoft.files.prediction_names import find_segmentation
from mssoft.files.scans import Scan, discover_scans, read_mask, select_scans
from mssoft.workflows.calibration_report import (
    RATERS_MEAN,
    TRUTH,
    CalibrationSummary,
    plot_reliability,
    reference_label,
    scan_calibration,
    summarise_calibration,
)
from mssoft.workflows.progress import Progress, no_progress

__all__ = [
    "PRED_SOURCE",
    "EvaluationRow",
    "GroupSummary",
    "Evaluation",
    "evaluate_folder",
    "format_report",
]

logger = logging.getLogger(__name__)

PRED_SOURCE = "pred"
_INTER_SOURCE, _INTER_REF = "rater1", 2
_METRIC_COLUMNS = tuple(f.name for f in fields(ScanMetrics))


@dataclass(frozen=True)
class EvaluationRow:
    """One segmentation compared with one rater's mask.

    Attributes
    ----------
    scan_id, patient_id : str
    source : str
        ``"pred"`` (the prediction) or ``"rater1"`` (rater 1's mask, for inter-rater agreement).
    rater : int
        The reference rater.
    seg_file, ref_file : Path
        The compared files.
    metrics : ScanMetrics
    """

    scan_id: str
    patient_id: str
    source: str
    rater: int
    seg_file: Path
    ref_file: Path
    metrics: ScanMetrics


@dataclass(frozen=True)
class GroupSummary:
    """Means over the scans of one (source, reference rater) pair.

    Attributes
    ----------
    source : str
    rater : int
    label : str
        Column title: ``"Rater 1"``, ``"Rater 2"``, ``"R1 vs R2"``.
    summary : SetSummary
    """

    source: str
    rater: int
    label: str
    summary: SetSummary


@dataclass(frozen=True)
class Evaluation:
    """Result of :func:`evaluate_folder`.

    Attributes
    ----------
    out : Path
    rows : list of EvaluationRow
    groups : list of GroupSummary
        Prediction against each rater, then inter-rater agreement if asked for.
    connectivity : int
        Lesion connectivity of the lesion-wise metrics.
    postprocessing : str or None
        How the predictions were binarised (from the predict folder's ``config.json``).
    isbi_raw_score : float
        The ISBI 2015 raw score of the predictions: mean over raters of each rater's score.
    calibration : list of CalibrationSummary
        Calibration of the probability maps against each reference (empty when the predict
        folder has no ``<scan>_prob.nii.gz``).
    """

    out: Path
    rows: list[EvaluationRow]
    groups: list[GroupSummary]
    connectivity: int
    postprocessing: str | None
    isbi_raw_score: float
    calibration: list[CalibrationSummary] = dataclasses.field(default_factory=list)


def _prediction_config(pred: Path) -> tuple[int, str | None]:
    if not (pred / CONFIG_NAME).is_file():
        logger.warning(
            "%s has no %s: lesions are %d-connected components",
            pred,
            CONFIG_NAME,
            DEFAULT_CONNECTIVITY,
        )
        return DEFAULT_CONNECTIVITY, None
    record = read_config(pred, command="predict")
    config = record.get("config") or {}
    connectivity = int(config.get("connectivity", DEFAULT_CONNECTIVITY))
    rule = None
    if "threshold" in config:
        rule = f"prob >= {config['threshold']:g}"
        if config.get("lesion_definition"):
            rule += f", then {config['lesion_definition']}"
    return connectivity, rule


def _choose_scans(
    found: Sequence[Scan], data: Path, raters: Sequence[int] | None, inter_rater: bool
) -> tuple[list[Scan], list[int]]:
    if raters is None:
        raters = sorted({r for scan in found for r in scan.masks})
        if not raters:
            raise DataError(f"{data}: no scan has a rater mask; nothing to evaluate against")
    else:
        raters = sorted(dict.fromkeys(int(r) for r in raters))
        for rater in raters:
            if not any(rater in scan.masks for scan in found):
                raise ConfigError(
                    f"Invalid value for `--rater`: no scan of {data} has a mask of rater {rater}"
                )
    chosen = [s for s in found if any(r in s.masks for r in raters)]
    if inter_rater and not any(1 in s.masks and _INTER_REF in s.masks for s in found):
        raise ConfigError(
            f"Invalid value for `--inter-rater`: no scan of {data} has masks of both rater 1 and 2"
        )
    return chosen, raters


def evaluate_folder(
    pred: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    raters: Sequence[int] | None = None,
    scans: str | Sequence[str] | None = None,
    inter_rater: bool = False,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> Evaluation:
    """Compare a predict output folder with the rater masks of a data set; write the results.

    Parameters
    ----------
    pred : path-like
        Output folder of ``mssoft predict`` (any naming), or a folder of ``<scan>_seg.nii.gz`` or
        ``<case>.nii.gz`` segmentations (nnU-Net's naming).
    data : path-like
        ISBI 2015 data folder or CSV manifest with the rater masks.
    out : path-like
        Output folder for ``metrics.csv``, ``summary.json`` and ``config.json``.
    raters : sequence of int, optional
        Reference raters (default: every rater the data has).
    scans : sequence of str, optional
        Scan ids to evaluate (default: every scan with a mask of one of the raters).
    inter_rater : bool, optional
        Also compare rater 1 with rater 2 (see the module docstring).
    overwrite : bool, optional
        Replace an earlier ``evaluate`` output in ``out``.
    progress : callable, optional
        ``progress(items, label)`` wraps the iteration over scans (a progress bar).

    Returns
    -------
    Evaluation

    Raises
    ------
    DataError
        Segmentations missing for some scans (all named), a segmentation on another grid than
        its reference (both files named), a non-binary segmentation (named).
    ConfigError
        A rater no scan has; ``--inter-rater`` without scans holding both raters; a bad ``out``.
    """
    pred, data = Path(pred), Path(data)
    if not pred.is_dir():
        raise DataError(f"{pred}: prediction folder not found")
    connectivity, postprocessing = _prediction_config(pred)
    found = select_scans(discover_scans(data), scans, source=str(data))
    chosen, raters = _choose_scans(found, data, raters, inter_rater)
    files = _prediction_files(pred, chosen, data)
    inter = [s for s in chosen if inter_rater and 1 in s.masks and _INTER_REF in s.masks]
    _check_grids(chosen, files, raters, inter)
    with_prob = all(prob is not None for _, prob in files.values())
    if not with_prob:
        logger.warning(
            "%s lacks probability maps (<scan>_prob.nii.gz): the calibration of the "
            "probabilities is skipped",
            pred,
        )
    seg_files = [seg for seg, _ in files.values()]
    with open_output_folder(
        out, command="evaluate", data=data, input_files=seg_files, overwrite=overwrite
    ) as out:
        calibration: dict[str, dict[str, Any]] = {}
        inter_ids = {s.scan_id for s in inter}
        rows: list[EvaluationRow] = []
        for scan in progress(chosen, "evaluate"):
            seg_file, prob_file = files[scan.scan_id]
            scan_rows, masks = _evaluate_scan(
                scan, seg_file, raters, scan.scan_id in inter_ids, connectivity
            )
            rows += scan_rows
            if with_prob:
                calibration[scan.scan_id] = scan_calibration(scan, prob_file, masks)
        evaluation = _write_evaluation(
            out, rows, raters, bool(inter), calibration, connectivity, postprocessing, pred, data
        )
        config = {
            "pred": str(pred.resolve()),
            "data": str(data.resolve()),
            "raters": raters,
            "inter_rater": inter_rater,
            "connectivity": connectivity,
        }
        write_config(
            out, "evaluate", config, status=STATUS_COMPLETE, scans=[s.scan_id for s in chosen]
        )
    return evaluation


def _prediction_files(
    pred: Path, chosen: Sequence[Scan], data: Path
) -> dict[str, tuple[Path, Path | None]]:
    """Scan id -> (segmentation, probability map or None), in any naming of ``mssoft predict``
    (and nnU-Net's own ``<case>.nii.gz``); every scan must have its segmentation."""
    found = {s.scan_id: find_segmentation(pred, s.scan_id) for s in chosen}
    missing = [scan_id for scan_id, hit in found.items() if hit is None]
    if missing:
        raise DataError(
            f"{pred}: no segmentation (<scan>{SEG_SUFFIX} or <case>.nii.gz) for {len(missing)} "
            f"of {len(chosen)} scans of {data}: {', '.join(missing)} (use --scans to evaluate a "
            "subset)"
        )
    return {scan_id: hit for scan_id, hit in found.items() if hit is not None}


def _check_grids(
    chosen: Sequence[Scan],
    files: dict[str, tuple[Path, Path | None]],
    raters: Sequence[int],
    inter: Sequence[Scan],
) -> None:
    """Every segmentation on its references' grid; rater 2's masks on rater 1's."""
    for scan in chosen:
        seg_meta = read_header(files[scan.scan_id][0])
        for rater in [r for r in raters if r in scan.masks]:
            check_same_grid([read_header(scan.masks[rater]), seg_meta])
    for scan in inter:
        check_same_grid([read_header(scan.masks[_INTER_REF]), read_header(scan.masks[1])])


def _evaluate_scan(
    scan: Scan, seg_file: Path, raters: Sequence[int], inter: bool, connectivity: int
) -> tuple[list[EvaluationRow], dict[int, Any]]:
    """The rows of one scan (its segmentation against each rater, and rater 1 against rater 2),
    and the raters' masks (bool arrays) for the calibration."""
    spacing = read_header(seg_file).spacing_mm
    comparisons = [(PRED_SOURCE, seg_file, r) for r in raters if r in scan.masks]
    if inter:
        comparisons.append((_INTER_SOURCE, scan.masks[1], _INTER_REF))
    files = dict.fromkeys([f for _, f, _ in comparisons] + [scan.masks[r] for _, _, r in comparisons])
    coded = {path: scan.label_map for path in scan.masks.values()}  # rater masks
    # each file read (and checked binary, or decoded as a label map) once
    arrays = {f: read_mask(f, coded.get(f)) for f in files}
    rows = []
    for source, source_file, rater in comparisons:
        metrics = scan_metrics(
            arrays[source_file],
            arrays[scan.masks[rater]],
            spacing_mm=spacing,
            connectivity=connectivity,
        )
        rows.append(
            EvaluationRow(
                scan.scan_id, scan.patient_id, source, rater, source_file, scan.masks[rater], metrics
            )
        )
        logger.info("%s: %s against rater %d: Dice %.4f", scan.scan_id, source, rater, metrics.dice)
    masks = {r: arrays[scan.masks[r]] for r in raters if r in scan.masks}
    return rows, masks


def _write_evaluation(
    out: Path,
    rows: list[EvaluationRow],
    raters: Sequence[int],
    inter: bool,
    calibration: dict[str, dict[str, Any]],
    connectivity: int,
    postprocessing: str | None,
    pred: Path,
    data: Path,
) -> Evaluation:
    """Summarise the rows per reference and write ``metrics.csv``, ``summary.json`` and the
    reliability diagram."""
    keys = [(PRED_SOURCE, r) for r in raters] + ([(_INTER_SOURCE, _INTER_REF)] if inter else [])
    groups = []
    for source, rater in keys:
        members = [row.metrics for row in rows if (row.source, row.rater) == (source, rater)]
        label = f"Rater {rater}" if source == PRED_SOURCE else "R1 vs R2"
        groups.append(GroupSummary(source, rater, label, summarise(members)))
    pred_scores = [g.summary.isbi_score for g in groups if g.source == PRED_SOURCE]
    isbi = sum(pred_scores) / len(pred_scores)  # NaN if any rater's score is NaN
    summaries = summarise_calibration(calibration) if calibration else []
    evaluation = Evaluation(out, rows, groups, connectivity, postprocessing, isbi, summaries)
    if summaries:
        plot_reliability(summaries, out / RELIABILITY_NAME)
    _write_csv(rows, out / METRICS_NAME, calibration)
    write_json(_summary_record(evaluation, pred, data), out / SUMMARY_NAME)
    return evaluation


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def _calibration_columns(row: EvaluationRow, calibration: dict[str, dict[str, Any]]) -> list[float]:
    """ECE and Brier against the row's rater, the raters' mean and the truth (NaN if none)."""
    from mssoft.arrays.calibration_metrics import brier_score, expected_calibration_error

    stats = calibration.get(row.scan_id, {}) if row.source == PRED_SOURCE else {}
    values = []
    for label in (reference_label(row.rater), RATERS_MEAN, TRUTH):
        s = stats.get(label)
        values += (
            [math.nan, math.nan]
            if s is None
            else [
                expected_calibration_error(s),
                brier_score(s),
            ]
        )
    return values


_CALIBRATION_COLUMNS = (
    "ece",
    "brier",
    f"ece_{RATERS_MEAN}",
    f"brier_{RATERS_MEAN}",
    f"ece_{TRUTH}",
    f"brier_{TRUTH}",
)


def _write_csv(
    rows: Sequence[EvaluationRow], path: Path, calibration: dict[str, dict[str, Any]]
) -> None:
    header = [
        "scan",
        "patient",
        "source",
        "rater",
        *_METRIC_COLUMNS,
        *_CALIBRATION_COLUMNS,
        "seg_file",
        "ref_file",
    ]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            values = row.metrics.to_dict()
            writer.writerow(
                [
                    row.scan_id,
                    row.patient_id,
                    row.source,
                    row.rater,
                    *(_format_value(values[c]) for c in _METRIC_COLUMNS),
                    *(_format_value(v) for v in _calibration_columns(row, calibration)),
                    Path(row.seg_file).resolve(),
                    Path(row.ref_file).resolve(),
                ]
            )


def _summary_record(evaluation: Evaluation, pred: Path, data: Path) -> dict[str, Any]:
    return {
        "command": "evaluate",
        "pred": str(pred.resolve()),
        "data": str(data.resolve()),
        "lesion_definition": f"{evaluation.connectivity}-connected components, every size",
        "connectivity": evaluation.connectivity,
        "postprocessing": evaluation.postprocessing,
        "scans": list(dict.fromkeys(row.scan_id for row in evaluation.rows)),
        "groups": [
            {"source": g.source, "rater": g.rater, "label": g.label, **g.summary.to_dict()}
            for g in evaluation.groups
        ],
        "isbi_raw_score": evaluation.isbi_raw_score,
        "calibration": {
            "region": "brain (non-zero FLAIR voxels)",
            "bins": "15 equal-width bins on [0, 1]",
            "ece": "sum over bins of (bin voxels / voxels) * |mean probability - mean reference|",
            "brier": "mean of (probability - reference)^2",
            "references": {c.reference: c.to_dict() for c in evaluation.calibration},
        }
        if evaluation.calibration
        else None,
        "notes": [
            "means skip NaN (undefined) values; nan_counts: how many scans each mean leaves out",
            "isbi_raw_score = mean over raters of Dice/8 + PPV/8 + (1-LFPR)/4 + LTPR/4 + Corr/4 "
            "(not the leaderboard's normalised score)",
        ],
    }


def _cell(value: float, scale: float, digits: int) -> str:
    return "NaN" if math.isnan(value) else f"{value * scale:.{digits}f}"


def format_report(evaluation: Evaluation) -> str:
    """The results as text: the paper's table (percent, one decimal), then the other means.

    Returns
    -------
    str
        Lines without a trailing newline.
    """
    groups = evaluation.groups
    width = max(10, *(len(g.label) + 2 for g in groups))

    def table(rows: Sequence[tuple[str, Callable[[SetSummary], str]]]) -> list[str]:
        lines = [" " * 20 + "".join(f"{g.label:>{width}}" for g in groups)]
        for title, cell in rows:
            lines.append(f"{title:<20}" + "".join(f"{cell(g.summary):>{width}}" for g in groups))
        return lines

    paper = table(
        [
            ("Dice (%)", lambda s: _cell(s.means["dice"], 100, 1)),
            ("Precision (%)", lambda s: _cell(s.means["ppv"], 100, 1)),
            ("Recall (%)", lambda s: _cell(s.means["tpr"], 100, 1)),
        ]
    )
    other = table(
        [
            ("LTPR (%)", lambda s: _cell(s.means["ltpr"], 100, 1)),
            ("LFPR (%)", lambda s: _cell(s.means["lfpr"], 100, 1)),
            ("Vol. diff (%)", lambda s: _cell(s.means["rel_volume_diff"], 100, 1)),
            ("Vol. diff (mL)", lambda s: _cell(s.means["abs_volume_diff_ml"], 1, 2)),
            ("Vol. corr", lambda s: _cell(s.volume_correlation, 1, 3)),
            ("ISBI raw score (%)", lambda s: _cell(s.isbi_score, 100, 1)),
            ("Scans", lambda s: str(s.n_scans)),
        ]
    )
    lines = paper + [""] + other
    undefined = []
    for g in groups:
        counts = [f"{name} {n}" for name, n in g.summary.nan_counts.items() if n]
        if counts:
            undefined.append(f"{g.label}: {', '.join(counts)}")
    if undefined:
        lines.append("Undefined (NaN, left out of the means): " + "; ".join(undefined))
    lines.append(f"ISBI raw score, mean over raters: {_cell(evaluation.isbi_raw_score, 100, 1)} %")
    if evaluation.calibration:
        cal = "; ".join(
            f"{c.reference} ECE {_cell(c.ece, 100, 2)} %, Brier {_cell(c.brier, 1, 4)}"
            for c in evaluation.calibration
        )
        lines.append(f"Calibration (brain voxels, pooled, 15 bins): {cal}")
    definition = f"Lesions: {evaluation.connectivity}-connected components"
    if evaluation.postprocessing:
        definition += f"; predictions: {evaluation.postprocessing}"
    lines.append(definition)
    return "\n".join(lines)
