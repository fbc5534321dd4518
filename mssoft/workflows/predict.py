"""Segmenting scans with a trained run: probabilities slice by slice, then post-processing.

The array-level core is :func:`mssoft.nn.inference.predict_volume`: it z-scores a scan exactly as
training does, feeds its axial slices to the model in batches and stacks the outputs back into a
volume. :func:`predict_folder` is the file-level layer of
``mssoft predict``: for every scan it writes ``<scan>_prob.nii.gz`` (float32) and
``<scan>_seg.nii.gz`` (uint8) on the scan's FLAIR grid, in the FLAIR file's own orientation,
affine and header.

The run folder is read with :mod:`mssoft.files.run_folder`. TensorFlow is imported only when a model is
loaded or called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.lesions import label_lesions
from mssoft.arrays.postprocess import Binarisation, bounding_box
from mssoft.files.folders import prepare_output_folder, write_config
from mssoft.files.layout import prob_path, seg_path
from mssoft.files.nifti import VolumeMeta, write_volume
from mssoft.files.run_folder import (
    RunsLike,
    as_runs,
    check_modalities,
    ensemble_binarisation,
    read_ensemble,
)
from mssoft.files.scans import Scan, check_scan, discover_scans, load_scan, select_scans
from mssoft.nn.inference import predict_volume
from mssoft.workflows.progress import Progress, no_progress

__all__ = [
    "predict_scan",
    "ScanPrediction",
    "PredictionReport",
    "predict_folder",
]

logger = logging.getLogger(__name__)


def predict_scan(
    model: Any, scan: Scan, modalities: Sequence[str], *, batch_size: int = 16
) -> tuple[np.ndarray, VolumeMeta]:
    """Read a scan's images and predict its lesion probabilities.

    Returns
    -------
    prob : ndarray of float32, shape (X, Y, Z)
        In RAS orientation.
    meta : VolumeMeta
        The FLAIR image's grid (write outputs back with it).
    """
    loaded = load_scan(scan, modalities=modalities)
    return predict_volume(model, loaded.image, batch_size=batch_size), loaded.meta


@dataclass(frozen=True)
class ScanPrediction:
    """What ``predict`` wrote for one scan.

    Attributes
    ----------
    scan_id : str
    lesions : int
        Connected components of the segmentation.
    volume_ml : float
        Segmented volume in mL.
    prob_path, seg_path : Path
    """

    scan_id: str
    lesions: int
    volume_ml: float
    prob_path: Path
    seg_path: Path


@dataclass(frozen=True)
class PredictionReport:
    """Result of :func:`predict_folder`.

    Attributes
    ----------
    out : Path
    binarisation : Binarisation
    threshold_source : str
        ``"calibration"``, ``"option"`` or ``"default"``.
    scans : list of ScanPrediction
    """

    out: Path
    binarisation: Binarisation
    threshold_source: str
    scans: list[ScanPrediction]


def predict_folder(
    run: RunsLike,
    data: str | Path,
    out: str | Path,
    *,
    threshold: float | None = None,
    min_size: int | None = None,
    scans: str | Sequence[str] | None = None,
    batch_size: int = 16,
    overwrite: bool = False,
    progress: Progress = no_progress,
    tta: str = "none",
    calibration: str | Path | None = None,
) -> PredictionReport:
    """Predict every scan of ``data`` (or the listed ones) with a run and write the results.

    Parameters
    ----------
    run : path-like or sequence of path-like
        Run folder (``model.keras``, ``config.json``, optionally ``calibration.json``), or several
        run folders whose probabilities are averaged (an ensemble; see
        :mod:`mssoft.files.run_folder`).
    data : path-like
        ISBI 2015 data folder or CSV manifest; masks are not needed.
    out : path-like
        Output folder; may not be inside ``data`` nor hold the run's files.
    threshold, min_size : optional
        Override the calibration (default without calibration: 0.5 and 18).
    scans : str or sequence of str, optional
        Scan ids to predict, or one comma-separated string (default: all).
    batch_size : int, optional
        Slices per model call.
    overwrite : bool, optional
        Replace an earlier ``predict`` output in ``out``.
    progress : callable, optional
        ``progress(items, label)`` wraps the iteration over scans (a progress bar).
    tta : {"none", "flip"}, optional
        ``flip`` averages each slice's probabilities with those of its left-right mirror.
    calibration : path-like, optional
        Folder with the ``calibration.json`` to use (default: the run's own; needed for the
        threshold of an ensemble).

    Returns
    -------
    PredictionReport

    Raises
    ------
    DataError, ConfigError
        Bad run folder, unknown scan ids, a scan without one of the model's modalities or with
        files on different grids, or an output folder that is not allowed.
    """
    runs = as_runs(run)
    info = read_ensemble(runs)[0]
    binarisation, source = ensemble_binarisation(
        runs, calibration=calibration, threshold=threshold, min_size=min_size, tta=tta
    )
    selected = select_scans(discover_scans(data), scans, source=str(data))
    check_modalities(selected, info)
    metas = {scan.scan_id: check_scan(scan, modalities=info.modalities) for scan in selected}
    run_files = [p for r in runs for p in Path(r).iterdir() if p.is_file()]
    inputs = [p for scan in selected for p in scan.files()] + run_files
    from mssoft.nn.model_files import load_ensemble  # imports TensorFlow

    # before creating the output folder: a bad model leaves nothing
    model = load_ensemble(runs, tta=tta)
    out = prepare_output_folder(
        out, command="predict", data=data, input_files=inputs, overwrite=overwrite
    )
    write_config(
        out,
        "predict",
        {
            "run": str(runs[0].resolve()),
            "runs": [str(r.resolve()) for r in runs],
            "tta": tta,
            "data": str(Path(data).resolve()),
            "modalities": list(info.modalities),
            "batch_size": int(batch_size),
            **binarisation.to_dict(),
            "threshold_source": source,
        },
        scans={
            s.scan_id: {
                "prob": prob_path(out, s.scan_id).name,
                "seg": seg_path(out, s.scan_id).name,
            }
            for s in selected
        },
    )
    results = []
    for scan in progress(selected, "predict"):
        prob, meta = predict_scan(model, scan, info.modalities, batch_size=batch_size)
        seg = binarisation.apply(prob)
        write_volume(prob, meta, prob_path(out, scan.scan_id), dtype=np.float32)
        write_volume(seg.astype(np.uint8), meta, seg_path(out, scan.scan_id), dtype=np.uint8)
        box = bounding_box(seg)
        lesions = (
            0 if box is None else label_lesions(seg[box], connectivity=binarisation.connectivity)[1]
        )
        voxel_ml = float(np.prod(metas[scan.scan_id].spacing_mm)) / 1000.0
        volume = float(np.count_nonzero(seg)) * voxel_ml
        result = ScanPrediction(
            scan.scan_id, lesions, volume, prob_path(out, scan.scan_id), seg_path(out, scan.scan_id)
        )
        logger.info("%s: %d lesions, %.3f mL", scan.scan_id, lesions, volume)
        results.append(result)
    return PredictionReport(out, binarisation, source, results)
