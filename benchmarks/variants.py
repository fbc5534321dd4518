"""Soft-label variants beyond the paper, measured on generated data against the known truth.

Not part of ``make bench``. For each data seed, generates a small synthetic ISBI-layout data set
(:func:`mssoft.synthetic.write_isbi_dataset`, two raters and the true lesion fraction), trains one
model per variant on the training patients (seed = data seed), calibrates its threshold on them
(``mssoft calibrate``), segments the held-out patients and scores them (``mssoft evaluate``):

=================  =========================================================================
binary             rater 1's binary masks (the paper's baseline)
paper              rater 1, ratio 1.2, gamma 0.3, constant ring (the paper's soft labels)
raters             raters 1 and 2 (share inside their union), ratio 1.2, gamma 0.3
ring3-constant     rater 1, ratio 3.0, gamma 0.3, constant ring
ring3-linear       as ring3-constant, ring linear in the distance
ring3-gaussian     as ring3-constant, ring gaussian in the distance (sigma 1.5 mm)
paper+tta          the paper model, calibrated and predicted with --tta flip (no new training)
ensemble           the mean of the binary and paper models' probabilities, calibrated as one
flair-threshold    the trivial baseline: one threshold on the brain-z-scored FLAIR, chosen on
                   the training scans against rater 1, the models' post-processing
=================  =========================================================================

Each trained variant also records ``val_dice`` (its validation Dice at the saved epoch) and
``baseline_val_dice`` (the FLAIR-threshold baseline's Dice on the same validation slices, against
the variant's binarised target); it *learned* when the first beats the second, and the table says
in how many seeds each variant learned.

Graded rings are measured at ratio 3: on these 1 mm scans the lesions are small, so the ring of
the paper's ratio 1.2, and even of ratio 2, lies in the first distance shell (every ring voxel at
1 mm): a graded ring then equals the constant one (a first run gave results identical to the last
digit at ratios 1.2 and 2). At ratio 3 the ring spans several distances.

Scores: Dice and recall against rater 1, rater 2 and the truth (true lesion fraction > 0.5),
mean over the held-out scans; ECE (15 bins, brain voxels, pooled over the held-out scans) against
the true lesion fraction and against the mean of the two raters. The table gives the mean ± std
over seeds and the paired difference of each variant to the binary model, to the paper and to the
FLAIR-threshold baseline (mean ± std over seeds, and how many seeds it was positive).

Usage (about 28 minutes on a busy 2-core machine)::

    nice -n 10 .venv/bin/python benchmarks/variants.py --out /tmp/variants --seeds 0,1,2

Writes ``OUT/results.json`` and ``OUT/table.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.metrics import scan_metrics
from mssoft.files.layout import seg_path, truth_path
from mssoft.files.nifti import read_header, read_volume
from mssoft.files.scans import discover_scans, read_mask
from mssoft.synthetic import write_isbi_dataset
from mssoft.workflows.calibrate import calibrate_run
from mssoft.workflows.evaluate import Evaluation, evaluate_folder
from mssoft.workflows.flair_baseline import (
    calibrate_on_scans,
    run_validation_dice,
    score_against_raters,
    segment_scans,
)
from mssoft.workflows.pipeline import run_pipeline
from mssoft.workflows.predict import predict_folder
from mssoft.workflows.settings import MaskConfig, TrainConfig, TrainingSettings

logger = logging.getLogger("variants")

#: name -> MaskConfig options (None: rater 1's binary masks)
TRAINED: dict[str, dict[str, Any] | None] = {
    "binary": None,
    "paper": {"ratio": 1.2, "gamma": 0.3},
    "raters": {"ratio": 1.2, "gamma": 0.3, "raters": (1, 2)},
    "ring3-constant": {"ratio": 3.0, "gamma": 0.3},
    "ring3-linear": {"ratio": 3.0, "gamma": 0.3, "ring": "linear"},
    "ring3-gaussian": {"ratio": 3.0, "gamma": 0.3, "ring": "gaussian", "ring_sigma": 1.5},
}
#: Paired comparisons: every variant against these.
BASES = ("binary", "paper", "ring3-constant", "flair-threshold")
DERIVED = ("paper+tta", "ensemble")
#: The FLAIR-threshold baseline's row.
BASELINE = "flair-threshold"
METRICS = (
    "dice_r1",
    "dice_r2",
    "dice_truth",
    "recall_r1",
    "recall_r2",
    "recall_truth",
    "ece_truth",
    "ece_raters_mean",
)


def _scores(evaluation: Evaluation, data: Path, pred: Path, scans: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for group in evaluation.groups:
        if group.source == "pred":
            out[f"dice_r{group.rater}"] = group.summary.means["dice"]
            out[f"recall_r{group.rater}"] = group.summary.means["tpr"]
    by_id = {s.scan_id: s for s in discover_scans(data)}
    dice, recall = [], []
    for scan_id in scans:
        truth, _ = read_volume(truth_path(by_id[scan_id].images["flair"], scan_id))
        seg = read_mask(seg_path(pred, scan_id))
        m = scan_metrics(
            seg, truth > 0.5, spacing_mm=read_header(seg_path(pred, scan_id)).spacing_mm
        )
        dice.append(m.dice)
        recall.append(m.tpr)
    out["dice_truth"] = float(np.nanmean(dice))
    out["recall_truth"] = float(np.nanmean(recall))
    for c in evaluation.calibration:
        if c.reference in ("truth", "raters_mean"):
            out[f"ece_{c.reference}"] = c.ece
    return out


def _baseline_scores(data: Path, train: list[str], heldout: list[str]) -> dict[str, float]:
    """The FLAIR-threshold baseline, calibrated on ``train`` against rater 1, on ``heldout``."""
    scans = {s.scan_id: s for s in discover_scans(data)}
    rule = calibrate_on_scans([scans[s] for s in train], rater=1)
    segmentations = segment_scans(rule, [scans[s] for s in heldout])
    out: dict[str, float] = {"threshold": rule.threshold}
    for rater in (1, 2):
        scored = score_against_raters(segmentations, [scans[s] for s in heldout])
        rows = [m for _, r, m in scored if r == rater]
        out[f"dice_r{rater}"] = float(np.nanmean([m.dice for m in rows]))
        out[f"recall_r{rater}"] = float(np.nanmean([m.tpr for m in rows]))
    dice, recall = [], []
    for scan_id in heldout:
        truth, _ = read_volume(truth_path(scans[scan_id].images["flair"], scan_id))
        segmentation, spacing = segmentations[scan_id]
        m = scan_metrics(segmentation, truth > 0.5, spacing_mm=spacing)
        dice.append(m.dice)
        recall.append(m.tpr)
    out["dice_truth"] = float(np.nanmean(dice))
    out["recall_truth"] = float(np.nanmean(recall))
    return out


def _learned(
    data: Path, train: list[str], fitted: Any, raters: tuple[int, ...]
) -> dict[str, float]:
    """The run's validation Dice at its saved epoch and the baseline's on the same slices."""
    from mssoft.experiments.demo.report import saved_epoch_dice

    scans = [s for s in discover_scans(data) if s.scan_id in set(train)]
    rule = calibrate_on_scans(scans, rater=1)
    return {
        "val_dice": saved_epoch_dice(fitted.history, fitted.best_epoch),
        "baseline_val_dice": run_validation_dice(
            segment_scans(rule, scans), scans, fitted.run_dir, raters
        ),
    }


def run_seed(
    seed: int, args: argparse.Namespace, results: dict[str, dict[str, float]], save: Any
) -> dict[str, dict[str, float]]:
    """Measure the variants of one data seed not yet in ``results``; ``save()`` after each."""
    root = Path(args.out) / f"seed{seed}"
    data = root / "data"
    if not data.exists():
        write_isbi_dataset(
            data,
            n_patients=args.train_patients + args.heldout,
            timepoints=args.timepoints,
            shape=tuple(args.shape),
            seed=seed,
        )
    scans = discover_scans(data)
    train_ids = {f"training{p:02d}" for p in range(1, args.train_patients + 1)}
    train = [s.scan_id for s in scans if s.patient_id in train_ids]
    heldout = [s.scan_id for s in scans if s.patient_id not in train_ids]
    settings = TrainingSettings(
        epochs=args.epochs,
        learning_rate=2e-4,
        base_filters=args.base_filters,
        depth=3,
        seed=seed,
        batch_size=8,
    )
    for name, mask in TRAINED.items():
        if name in results:
            continue
        started = time.monotonic()
        config = TrainConfig.from_settings(
            settings,
            data=data,
            out=root / "runs" / name,
            mask=MaskConfig(**mask, flair_threshold="p50") if mask else None,
            patients=tuple(sorted(train_ids)),
        )
        result = run_pipeline(
            config,
            calibrate_scans=train,
            predict_scans=heldout,
            pred_dir=root / "pred" / name,
            eval_dir=root / "eval" / name,
            name=name,
        )
        assert result.evaluation is not None
        results[name] = _scores(result.evaluation, data, root / "pred" / name, heldout)
        raters = tuple((mask or {}).get("raters") or (1,))
        results[name].update(_learned(data, train, result.fit, raters))
        logger.info(
            "seed %d %s: %s (%.0f s)", seed, name, results[name], time.monotonic() - started
        )
        save()
    for name, runs, tta in (
        ("paper+tta", [root / "runs" / "paper"], "flip"),
        ("ensemble", [root / "runs" / "binary", root / "runs" / "paper"], "none"),
    ):
        if name in results:
            continue
        cal = root / "calibration" / name
        calibrate_run(runs, data, scans=train, tta=tta, out=cal, overwrite=True)
        predict_folder(runs, data, root / "pred" / name, scans=heldout, tta=tta, calibration=cal)
        evaluation = evaluate_folder(
            root / "pred" / name, data, root / "eval" / name, scans=heldout
        )
        results[name] = _scores(evaluation, data, root / "pred" / name, heldout)
        logger.info("seed %d %s: %s", seed, name, results[name])
        save()
    if BASELINE not in results:
        results[BASELINE] = _baseline_scores(data, train, heldout)
        logger.info("seed %d %s: %s", seed, BASELINE, results[BASELINE])
        save()
    return results


def _mean_std(values: list[float], digits: int = 1) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    mean = 100 * float(np.mean(finite))
    if len(finite) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {100 * float(np.std(finite, ddof=1)):.{digits}f}"


def _paired(values: list[float], base: list[float], lower_is_better: bool, digits: int = 1) -> str:
    diff = [v - b for v, b in zip(values, base, strict=True) if math.isfinite(v - b)]
    if not diff:
        return "n/a"
    better = sum((d < 0) if lower_is_better else (d > 0) for d in diff)
    sd = f" ± {100 * float(np.std(diff, ddof=1)):.{digits}f}" if len(diff) > 1 else ""
    return f"{100 * float(np.mean(diff)):+.{digits}f}{sd} ({better}/{len(diff)})"


def _digits(metric: str) -> int:
    """Decimals of a metric in %: ECE is small (most brain voxels are far from any lesion)."""
    return 2 if metric.startswith("ece") else 1


def format_table(per_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    seeds = sorted(per_seed)
    names = [*TRAINED, *DERIVED, BASELINE]

    def column(name: str, metric: str) -> list[float]:
        return [per_seed[s][name].get(metric, math.nan) for s in seeds]

    header = ["variant", *METRICS]
    lines = [
        f"Mean ± std over {len(seeds)} data seeds ({', '.join(map(str, seeds))}), values in %.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name in names:
        cells = [_mean_std(column(name, m), _digits(m)) for m in METRICS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    lines += ["", _learned_line(per_seed, seeds)]
    for base in BASES:
        lines += [
            "",
            f"Paired difference to `{base}` (points; mean ± std over seeds; in parentheses the "
            "seeds where the variant was better):",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for name in names:
            if name == base:
                continue
            cells = [
                _paired(column(name, m), column(base, m), m.startswith("ece"), _digits(m))
                for m in METRICS
            ]
            lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _learned_line(per_seed: dict[int, dict[str, dict[str, float]]], seeds: list[int]) -> str:
    """Per trained variant: seeds whose model beat the FLAIR-threshold baseline on its
    validation slices (validation Dice at the saved epoch against the baseline's)."""
    parts = []
    for name in TRAINED:
        judged = [
            per_seed[s][name]["val_dice"] > per_seed[s][name]["baseline_val_dice"]
            for s in seeds
            if name in per_seed[s] and "baseline_val_dice" in per_seed[s][name]
        ]
        parts.append(f"{name} {sum(judged)}/{len(judged)}" if judged else f"{name} n/a")
    return (
        "Learned (validation Dice at the saved epoch above the FLAIR-threshold baseline's on the "
        "same validation slices), seeds: " + ", ".join(parts) + "."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shape", default="64,80,48", help="X,Y,Z of the generated scans")
    parser.add_argument("--train-patients", type=int, default=4)
    parser.add_argument("--heldout", type=int, default=3)
    parser.add_argument("--timepoints", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument(
        "--report", action="store_true", help="Only print the table of OUT/results.json."
    )
    args = parser.parse_args()
    args.shape = [int(v) for v in args.shape.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    if results_file.is_file():  # resume: keep the variants already measured
        per_seed = {int(k): v for k, v in json.loads(results_file.read_text())["seeds"].items()}
        per_seed = {
            k: {n: r for n, r in v.items() if n in (*TRAINED, *DERIVED, BASELINE)}
            for k, v in per_seed.items()
        }

    def save() -> None:
        record = {"options": {k: str(v) for k, v in vars(args).items()}, "seeds": per_seed}
        results_file.write_text(json.dumps(record, indent=2))

    started = time.monotonic()
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        if not args.report:
            run_seed(seed, args, per_seed.setdefault(seed, {}), save)
    table = format_table({s: per_seed[s] for s in seeds})
    (args.out / "table.md").write_text(table)
    print(table)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
