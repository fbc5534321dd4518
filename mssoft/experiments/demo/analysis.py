"""The file-reading half of ``mssoft demo``: data summary, scores against the truth, figures.

:mod:`mssoft.experiments.demo.run` runs the commands' library functions; this module reads what
they wrote (rater
masks, the synthetic truth, soft masks, probabilities and segmentations), scores the held-out
segmentations against the true lesion fraction and picks the slices the figures of
:mod:`mssoft.experiments.demo.figures` show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.lesions import label_lesions
from mssoft.arrays.metrics import scan_metrics, summarise
from mssoft.experiments.demo.figures import (
    focus_window,
    plot_calibration_curves,
    plot_data_overview,
    plot_predictions,
    plot_training_curves,
)
from mssoft.experiments.demo.types import DataSummary, DemoBaseline, DemoConfig, ModelRun, Score
from mssoft.files import layout
from mssoft.files.layout import DEMO_FIGURE_NAMES, prob_path, seg_path, soft_mask_path
from mssoft.files.nifti import read_header, read_volume
from mssoft.files.scans import Scan, load_scan, read_mask
from mssoft.workflows.build_masks import MaskSummary

__all__ = [
    "TRUTH_LEVEL",
    "truth_path",
    "summarise_data",
    "truth_scores",
    "draw_figures",
]

#: A voxel is lesion in the "truth" reference when its true lesion fraction exceeds this.
TRUTH_LEVEL = 0.5


def truth_path(scan: Scan) -> Path:
    """``<patient>/truth/<scan>_truth.nii.gz`` next to the scan's ``preprocessed`` folder."""
    return layout.truth_path(scan.images["flair"], scan.scan_id)


def summarise_data(
    train: Sequence[Scan], heldout: Sequence[Scan], masks: Sequence[MaskSummary]
) -> DataSummary:
    """Read every rater mask once: volumes, lesion counts; soft-mask ratio of the training scans.

    Parameters
    ----------
    train, heldout : sequence of Scan
        Scans with masks of raters 1 and 2.
    masks : sequence of MaskSummary
        What ``build_soft_masks`` reported (any scans; the training ones are counted).
    """
    scans = [*train, *heldout]
    volumes: dict[int, list[float]] = {}
    counts: dict[int, list[int]] = {}
    voxels: dict[str, int] = {}
    for scan in scans:
        for rater, path in sorted(scan.masks.items()):
            mask = read_mask(path)
            voxel_ml = float(np.prod(read_header(path).spacing_mm)) / 1000.0
            volumes.setdefault(rater, []).append(float(mask.sum()) * voxel_ml)
            counts.setdefault(rater, []).append(label_lesions(mask)[1])
            if rater == 1:
                voxels[scan.scan_id] = int(mask.sum())
    train_ids = {s.scan_id for s in train}
    lesion = sum(m.lesion_voxels for m in masks if m.scan_id in train_ids)
    ring = sum(m.ring_voxels for m in masks if m.scan_id in train_ids)
    return DataSummary(
        train_scans=list(train),
        heldout_scans=list(heldout),
        rater_volume_ml={r: float(np.mean(v)) for r, v in volumes.items()},
        rater_lesions={r: float(np.mean(c)) for r, c in counts.items()},
        lesion_voxels=voxels,
        soft_ratio=(lesion + ring) / lesion if lesion else float("nan"),
    )


def truth_scores(
    heldout: Sequence[Scan], pred_dirs: Mapping[str, Path]
) -> tuple[list[Score], list[Score]]:
    """Segmentations and rater masks against the true lesion fraction > :data:`TRUTH_LEVEL`.

    Parameters
    ----------
    heldout : sequence of Scan
        Scans of the synthetic ISBI layout (with ``truth/`` files and rater masks).
    pred_dirs : mapping of str to Path
        Model name to its ``predict`` output folder.

    Returns
    -------
    models : list of Score
        One per model (reference ``truth``).
    raters : list of Score
        One per rater (model ``rater K``, reference ``truth``): the human error on this data.
    """
    sources: dict[str, list[Any]] = {}
    dice: dict[str, dict[str, float]] = {}
    for scan in heldout:
        truth, meta = read_volume(truth_path(scan))
        reference = truth > TRUTH_LEVEL
        files = {name: seg_path(folder, scan.scan_id) for name, folder in pred_dirs.items()}
        files.update({f"rater {r}": path for r, path in sorted(scan.masks.items())})
        for name, path in files.items():
            metrics = scan_metrics(read_mask(path), reference, spacing_mm=meta.spacing_mm)
            sources.setdefault(name, []).append(metrics)
            dice.setdefault(name, {})[scan.scan_id] = metrics.dice
    scores = [Score(name, "truth", summarise(m), dice[name]) for name, m in sources.items()]
    return (
        [s for s in scores if s.model in pred_dirs],
        [s for s in scores if s.model not in pred_dirs],
    )


def _largest(scans: Sequence[Scan], voxels: Mapping[str, int]) -> Scan:
    return max(scans, key=lambda s: (voxels.get(s.scan_id, 0), s.scan_id))


def _zoom_size(shape: Sequence[int]) -> int:
    return max(16, min(shape[0], shape[1]) // 3)


def draw_figures(
    folder: Path,
    data: DataSummary,
    masks_dir: Path,
    runs: Mapping[str, ModelRun],
    scores: Sequence[Score],
    config: DemoConfig,
    baseline: DemoBaseline | None = None,
) -> dict[str, Path]:
    """Write ``data.png``, ``predictions.png``, ``training.png`` and ``calibration.png``.

    The data figure shows the training scan with the most rater-1 lesion voxels, the prediction
    figure the held-out scan with the most, each at its axial slice with the most rater-1 voxels.
    The training curves show the FLAIR-threshold ``baseline``'s Dice on each model's validation
    slices when it is given.

    Returns
    -------
    dict of str to Path
        Figure name (``data``, ``predictions``, ``training``, ``calibration``) to its file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}

    scan = _largest(data.train_scans, data.lesion_voxels)
    loaded = load_scan(scan)
    raters = {r: read_mask(p) for r, p in sorted(scan.masks.items())}
    z = int(np.argmax(raters[1].sum(axis=(0, 1))))
    soft, _ = read_volume(soft_mask_path(masks_dir, scan.scan_id))
    truth, _ = read_volume(truth_path(scan))
    window = focus_window(soft[:, :, z], _zoom_size(soft.shape))
    mask = config.mask.params
    figures["data"] = plot_data_overview(
        {m: loaded.image[:, :, z, k] for k, m in enumerate(loaded.modalities)},
        {r: m[:, :, z] for r, m in raters.items()},
        soft[:, :, z],
        truth[:, :, z],
        folder / DEMO_FIGURE_NAMES["data"],
        title=f"Training scan {scan.scan_id}, axial slice {z}: images, rater masks, soft mask "
        f"(ratio {mask.ratio:g}, gamma {mask.gamma:g}, FLAIR >= {mask.flair_threshold})",
        window=window,
        gamma=mask.gamma,
    )

    scan = _largest(data.heldout_scans, data.lesion_voxels)
    flair, _ = read_volume(scan.images["flair"])
    raters = {r: read_mask(p) for r, p in sorted(scan.masks.items())}
    z = int(np.argmax(raters[1].sum(axis=(0, 1))))
    truth, _ = read_volume(truth_path(scan))
    probabilities = {
        n: read_volume(prob_path(r.pred_dir, scan.scan_id))[0] for n, r in runs.items()
    }
    segmentations = {n: read_mask(seg_path(r.pred_dir, scan.scan_id)) for n, r in runs.items()}
    by_key = {(s.model, s.reference): s for s in scores}
    subtitles = {}
    for name, run in runs.items():
        score = by_key.get((name, "rater 1"))
        dice = score.scan_dice.get(scan.scan_id) if score else None
        subtitles[name] = f"threshold {run.calibration['threshold']:.2f}" + (
            f", scan Dice {100 * dice:.0f} %" if dice is not None else ""
        )
    window = focus_window(raters[1][:, :, z], _zoom_size(flair.shape))
    figures["predictions"] = plot_predictions(
        flair[:, :, z],
        {r: m[:, :, z] for r, m in raters.items()},
        truth[:, :, z],
        {n: p[:, :, z] for n, p in probabilities.items()},
        {n: s[:, :, z] for n, s in segmentations.items()},
        folder / DEMO_FIGURE_NAMES["predictions"],
        title=f"Held-out scan {scan.scan_id} (never seen in training), axial slice {z}",
        window=window,
        subtitles=subtitles,
    )
    figures["training"] = plot_training_curves(
        {n: r.history for n, r in runs.items()},
        folder / DEMO_FIGURE_NAMES["training"],
        best_epochs={n: r.best_epoch for n, r in runs.items()},
        baseline_dice=baseline.validation_dice if baseline is not None else None,
    )
    figures["calibration"] = plot_calibration_curves(
        {n: r.calibration for n, r in runs.items()}, folder / DEMO_FIGURE_NAMES["calibration"]
    )
    return figures
