"""The demo's FLAIR-threshold baseline: calibrated on the training scans, scored like the models.

Its threshold is chosen on the demo's training scans against rater 1 (as each model's probability
threshold), it segments the held-out scans with the models' post-processing and is scored against
rater 1, rater 2 and the synthetic truth with the models' metrics. Its Dice on each model's
validation slices (against that model's binarised target: rater 1's mask, or the soft mask
>= 0.5) is what the model's validation Dice must beat for the model to count as learned
(:func:`mssoft.experiments.demo.report.failed_models`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mssoft.arrays.flair_baseline import FLAIR_THRESHOLD_GRID
from mssoft.arrays.metrics import scan_metrics, summarise
from mssoft.experiments.demo.analysis import TRUTH_LEVEL, truth_path
from mssoft.experiments.demo.types import FLAIR_MODEL, DemoBaseline, ModelRun, Score
from mssoft.files.layout import soft_mask_path
from mssoft.files.nifti import read_volume
from mssoft.files.scans import Scan
from mssoft.workflows.flair_baseline import (
    calibrate_on_scans,
    overlap_counts,
    rater_targets,
    score_against_raters,
    segment_scans,
    validation_dice,
)

__all__ = ["run_baseline"]


def _held_out_scores(
    segmentations: Mapping[str, tuple[np.ndarray, tuple[float, float, float]]],
    heldout: Sequence[Scan],
) -> list[Score]:
    """Scores against every rater and against the truth (true lesion fraction > 0.5)."""
    metrics: dict[str, list] = {}
    dice: dict[str, dict[str, float]] = {}
    for scan_id, rater, m in score_against_raters(segmentations, heldout):
        metrics.setdefault(f"rater {rater}", []).append(m)
        dice.setdefault(f"rater {rater}", {})[scan_id] = m.dice
    for scan in heldout:
        path = truth_path(scan)
        if not path.is_file():
            continue
        truth, _ = read_volume(path)
        segmentation, spacing = segmentations[scan.scan_id]
        m = scan_metrics(segmentation, truth > TRUTH_LEVEL, spacing_mm=spacing)
        metrics.setdefault("truth", []).append(m)
        dice.setdefault("truth", {})[scan.scan_id] = m.dice
    return [Score(FLAIR_MODEL, ref, summarise(ms), dice[ref]) for ref, ms in metrics.items()]


def _targets(name: str, train: Sequence[Scan], masks_dir: Path) -> dict[str, np.ndarray]:
    """A model's validation target binarised at 0.5: rater 1, or the soft mask >= 0.5."""
    if name == "soft":
        return {
            s.scan_id: read_volume(soft_mask_path(masks_dir, s.scan_id))[0] >= 0.5 for s in train
        }
    return rater_targets(train, (1,))


def run_baseline(
    train: Sequence[Scan],
    heldout: Sequence[Scan],
    runs: Mapping[str, ModelRun],
    masks_dir: Path,
) -> tuple[DemoBaseline, list[Score]]:
    """Calibrate, apply and score the baseline; its Dice on each model's validation slices.

    Parameters
    ----------
    train, heldout : sequence of Scan
        The demo's training and held-out scans (with rater masks; held-out ones with truth).
    runs : mapping of str to ModelRun
        The trained models (their run folders hold ``split.json``).
    masks_dir : Path
        The soft masks the ``soft`` model was trained on.

    Returns
    -------
    DemoBaseline
    list of Score
        The baseline (model :data:`FLAIR_MODEL`) against rater 1, rater 2 and the truth.
    """
    rule = calibrate_on_scans(train, rater=1)
    scores = _held_out_scores(segment_scans(rule, heldout), heldout)
    segmented = segment_scans(rule, train)
    validation = {
        name: validation_dice(
            overlap_counts(segmented, _targets(name, train, masks_dir)), run.run_dir
        )
        for name, run in runs.items()
    }
    grid = tuple(float(t) for t in FLAIR_THRESHOLD_GRID)
    return DemoBaseline(rule.to_dict(), grid, validation), scores
