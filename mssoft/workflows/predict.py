"""Segmenting scans with a trained run: probabilities slice by slice, then post-processing.

The array-level core is :func:`mssoft.nn.inference.predict_volume`: it z-scores a scan exactly as
training does, feeds its axial slices to the model in batches and stacks the outputs back into a
volume. :func:`predict_folder` is the file-level layer of
``mssoft predict``: for every scan it writes ``<scan>_prob.nii.gz`` (float32) and
``<scan>_seg.nii.gz`` (uint8) on the scan's FLAIR grid, in the FLAIR file's own orientation,
affine and header.

The run folder is read with :mod:`mssoft.files.run_folder`; an export folder of ``mssoft export``
(read by the same module) can stand in for it and gives the same outputs. TensorFlow is
imported only when a model is loaded or called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.intensity import Normaliser
from mssoft.arrays.lesions import label_lesions
from mssoft.arrays.postprocess import Binarisation, bounding_box
from mssoft.files.folders import (
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    open_output_folder,
    write_config,
)
from mssoft.files.geometry import geometry_record, run_geometry, voxel_size_warnings
from mssoft.files.layout import prob_path, seg_path
from mssoft.files.nifti import VolumeMeta, write_volume
from mssoft.files.normalisation import run_normaliser
from mssoft.files.run_folder import (
    RunsLike,
    as_runs,
    check_modalities,
    ensemble_binarisation,
    input_multiple_of,
    read_ensemble,
)
from mssoft.files.scans import Scan, check_scan, discover_scans, load_scan, select_scans
from mssoft.nn.inference import predict_volume_resampled
from mssoft.workflows.overlap import WriteBehind, read_ahead
from mssoft.workflows.progress import Progress, no_progress

__all__ = [
    "predict_scan",
    "ScanPrediction",
    "PredictionReport",
    "predict_folder",
]

logger = logging.getLogger(__name__)


def _write_outputs(
    prob: np.ndarray, seg: np.ndarray, meta: VolumeMeta, out: Path, scan_id: str
) -> None:
    """Write ``<scan>_prob.nii.gz`` (float32) and ``<scan>_seg.nii.gz`` (uint8)."""
    write_volume(prob, meta, prob_path(out, scan_id), dtype=np.float32)
    write_volume(seg.astype(np.uint8), meta, seg_path(out, scan_id), dtype=np.uint8)


def predict_scan(
    model: Any,
    scan: Scan,
    modalities: Sequence[str],
    *,
    batch_size: int = 16,
    voxel_size_mm: tuple[float, float, float] | None = None,
    multiple: int | None = None,
    normaliser: Normaliser | None = None,
) -> tuple[np.ndarray, VolumeMeta]:
    """Read a scan's images and predict its lesion probabilities.

    ``voxel_size_mm`` (the training voxel size) resamples the scan to it for the model and the
    probabilities back to the scan's grid (:func:`~mssoft.nn.inference.predict_volume_resampled`).
    ``multiple``: the slices' padding multiple (see :func:`mssoft.nn.inference.predict_volume`).
    ``normaliser`` is the run's intensity normalisation (default z-score).

    Returns
    -------
    prob : ndarray of float32, shape (X, Y, Z)
        In RAS orientation.
    meta : VolumeMeta
        The FLAIR image's grid (write outputs back with it).
    """
    loaded = load_scan(scan, modalities=modalities)
    prob = predict_volume_resampled(
        model,
        loaded.image,
        loaded.meta.spacing_mm,
        voxel_size_mm,
        batch_size=batch_size,
        multiple=multiple,
        normaliser=normaliser,
    )
    return prob, loaded.meta


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
    resample: bool = False,
    mixed_precision: bool = False,
    tta: str = "none",
    calibration: str | Path | None = None,
    model: Any = None,
) -> PredictionReport:
    """Predict every scan of ``data`` (or the listed ones) with a run and write the results.

    Parameters
    ----------
    run : path-like or sequence of path-like
        Run folder (``model.keras``, ``config.json``, optionally ``calibration.json``), or an
        export folder of ``mssoft export`` (``mssoft.json``, the SavedModel, optionally
        ``calibration.json``), or several such folders whose probabilities are averaged (an
        ensemble; see :mod:`mssoft.files.run_folder`).
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
        Replace an earlier ``predict`` output in ``out``: all its segmentations and
        probabilities are removed first, also those of scans this run does not predict.
    progress : callable, optional
        ``progress(items, label)`` wraps the iteration over scans (a progress bar).
    resample : bool, optional
        Resample each scan to the run's training voxel size for the model, and the
        probabilities back to the scan's grid (outputs stay on the input grid). Without it, a
        scan whose voxel size differs by more than 20 % on any axis gets a warning.
    mixed_precision : bool, optional
        Run the model in bfloat16 on CPU / float16 on GPU (the output layer stays float32):
        about twice as fast on CPUs with AVX512_BF16; probabilities differ slightly.
    tta : {"none", "flip"}, optional
        ``flip`` averages each slice's probabilities with those of its left-right mirror.
    calibration : path-like, optional
        Folder with the ``calibration.json`` to use (default: the run's own; needed for the
        threshold of an ensemble).
    model : object with ``predict_on_batch``, optional
        The model of ``run`` already loaded (:func:`mssoft.nn.model_files.load_ensemble` with
        the same ``tta`` and ``mixed_precision``), so that calibration and prediction of one
        model load it once; default: loaded here.

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
    infos = read_ensemble(runs)  # run folders or export folders
    info = infos[0]
    binarisation, source = ensemble_binarisation(
        runs, calibration=calibration, threshold=threshold, min_size=min_size, tta=tta
    )
    selected = select_scans(discover_scans(data), scans, source=str(data))
    check_modalities(selected, info)
    normaliser = run_normaliser(runs[0], info.record.get("config", {}), info.modalities)
    metas = {scan.scan_id: check_scan(scan, modalities=info.modalities) for scan in selected}
    geometry = run_geometry(info.record, runs[0])
    off = voxel_size_warnings(metas, geometry, resample=resample, run=runs[0])
    target = geometry.voxel_size_mm if resample and geometry is not None else None
    multiple = max(input_multiple_of(i) for i in infos)
    run_files = [p for r in runs for p in Path(r).iterdir() if p.is_file()]
    inputs = [p for scan in selected for p in scan.files()] + run_files
    from mssoft.nn.model_files import load_ensemble  # imports TensorFlow

    # before creating the output folder: a bad model leaves nothing
    if model is None:
        model = load_ensemble(runs, tta=tta, mixed_precision=mixed_precision)
    config = {
        "run": str(runs[0].resolve()),
        "runs": [str(r.resolve()) for r in runs],
        "tta": tta,
        "data": str(Path(data).resolve()),
        "modalities": list(info.modalities),
        "batch_size": int(batch_size),
        "normalise": normaliser.method,
        "mixed_precision": bool(mixed_precision),
        **binarisation.to_dict(),
        "threshold_source": source,
        "geometry": geometry_record(geometry, off, resample=resample),
    }
    with open_output_folder(
        out, command="predict", data=data, input_files=inputs, overwrite=overwrite
    ) as out:
        outputs = {
            s.scan_id: {
                "prob": prob_path(out, s.scan_id).name,
                "seg": seg_path(out, s.scan_id).name,
            }
            for s in selected
        }
        # first: lists every file this run is about to write (an --overwrite removes them all)
        write_config(out, "predict", config, status=STATUS_INCOMPLETE, scans=outputs)
        results = []
        # the next scan is read and the previous one written while the model predicts
        loads = read_ahead(selected, lambda s: load_scan(s, modalities=info.modalities))
        with WriteBehind() as writer:
            for scan, loaded in zip(progress(selected, "predict"), loads, strict=True):
                prob = predict_volume_resampled(
                    model,
                    loaded.image,
                    loaded.meta.spacing_mm,
                    target,
                    batch_size=batch_size,
                    multiple=multiple,
                    normaliser=normaliser,
                )
                seg = binarisation.apply(prob)
                writer.submit(_write_outputs, prob, seg, loaded.meta, out, scan.scan_id)
                box = bounding_box(seg)
                connectivity = binarisation.connectivity
                lesions = (
                    0 if box is None else label_lesions(seg[box], connectivity=connectivity)[1]
                )
                voxel_ml = float(np.prod(metas[scan.scan_id].spacing_mm)) / 1000.0
                volume = float(np.count_nonzero(seg)) * voxel_ml
                paths = prob_path(out, scan.scan_id), seg_path(out, scan.scan_id)
                result = ScanPrediction(scan.scan_id, lesions, volume, *paths)
                logger.info("%s: %d lesions, %.3f mL", scan.scan_id, lesions, volume)
                results.append(result)
        write_config(out, "predict", config, status=STATUS_COMPLETE, scans=outputs)
    return PredictionReport(out, binarisation, source, results)
