"""Segmenting scans with a trained run: probabilities slice by slice, then post-processing.

The array-level core is :func:`mssoft.nn.inference.predict_volume`: it z-scores a scan exactly as
training does, feeds its axial slices to the model in batches and stacks the outputs back into a
volume. :func:`predict_folder` (a data folder or manifest) and :func:`predict_files` (one scan's
image files) are the file-level layer of ``mssoft predict``. For every scan they write the
probability map (float32) and the segmentation (uint8) on the scan's FLAIR grid, in the FLAIR
file's own orientation, affine and header, named by the output's naming
(:mod:`mssoft.files.prediction_names`: mssoft, nnU-Net or BIDS derivatives), and a QC picture;
for the whole folder the lesion tables (``lesions.csv``, ``scans.csv``) and the QC index
(:mod:`mssoft.workflows.predict_outputs`).

The per-scan step is :func:`segment_scan` (probabilities, segmentation, lesion rows); the run
folder is read with :mod:`mssoft.files.run_folder`; an export folder of ``mssoft export`` (read
by the same module) can stand in for it and gives the same outputs. TensorFlow is imported only
when a model is loaded or called.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.intensity import Normaliser
from mssoft.arrays.lesion_table import LesionRow, ScanRow, lesion_rows, scan_row
from mssoft.arrays.postprocess import Binarisation
from mssoft.errors import ConfigError
from mssoft.files.folders import (
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    open_output_folder,
    write_config,
)
from mssoft.files.nifti import VolumeMeta
from mssoft.files.prediction_names import NAMINGS, ScanOutputs, default_naming, scan_outputs
from mssoft.files.run_folder import RunInfo, RunsLike, as_runs, ensemble_binarisation, read_ensemble
from mssoft.files.scans import (
    LoadedScan,
    Scan,
    data_kind,
    discover_run_scans,
    load_scan,
    normalise_modality,
    select_scans,
)
from mssoft.nn.inference import predict_volume_resampled
from mssoft.workflows.model_input import ModelInput, model_input
from mssoft.workflows.overlap import WriteBehind, read_ahead
from mssoft.workflows.predict_outputs import (
    OutputSettings,
    write_folder_outputs,
    write_scan_outputs,
)
from mssoft.workflows.progress import Progress, no_progress

__all__ = [
    "predict_scan",
    "segment_scan",
    "ScanSegmentation",
    "ScanPrediction",
    "PredictionReport",
    "predict_folder",
    "predict_files",
]

logger = logging.getLogger(__name__)


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
class ScanSegmentation:
    """The per-scan result of :func:`segment_scan` (arrays in RAS orientation).

    Attributes
    ----------
    prob : ndarray of float32, shape (X, Y, Z)
    seg : ndarray of bool, shape (X, Y, Z)
    flair : ndarray of float32, shape (X, Y, Z)
        The raw FLAIR channel (for the QC picture; its non-zero voxels are the brain).
    lesions : list of LesionRow
    summary : ScanRow
    """

    prob: np.ndarray
    seg: np.ndarray
    flair: np.ndarray
    lesions: list[LesionRow]
    summary: ScanRow


def segment_scan(
    model: Any,
    loaded: LoadedScan,
    setup: ModelInput,
    binarisation: Binarisation,
    *,
    model_name: str,
    batch_size: int = 16,
) -> ScanSegmentation:
    """Predict, binarise and measure one loaded scan.

    Parameters
    ----------
    model : keras.Model or ExportedModel
    loaded : LoadedScan
        The scan's images in the run's channel order.
    setup : ModelInput
        The run's model input (:func:`mssoft.workflows.model_input.model_input`).
    binarisation : Binarisation
    model_name : str
        Written into the scan row (the run folders).
    batch_size : int, optional
    """
    scan_id = loaded.scan.scan_id
    prob = setup.predict(model, loaded, batch_size=batch_size)
    seg = binarisation.apply(prob)
    channel = loaded.modalities.index("flair") if "flair" in loaded.modalities else 0
    flair = loaded.image[..., channel]
    affine = loaded.meta.ras_affine
    rows = lesion_rows(scan_id, seg, affine, prob, connectivity=binarisation.connectivity)
    summary = scan_row(
        scan_id,
        rows,
        flair != 0,
        affine,
        threshold=binarisation.threshold,
        min_size=binarisation.min_size,
        model=model_name,
    )
    return ScanSegmentation(prob, seg, flair, rows, summary)


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
    qc_path : Path or None
        The QC picture (None with ``qc=False``).
    """

    scan_id: str
    lesions: int
    volume_ml: float
    prob_path: Path
    seg_path: Path
    qc_path: Path | None = None


@dataclass(frozen=True)
class PredictionReport:
    """Result of :func:`predict_folder` and :func:`predict_files`.

    Attributes
    ----------
    out : Path
    binarisation : Binarisation
    threshold_source : str
        ``"calibration"``, ``"option"`` or ``"default"``.
    scans : list of ScanPrediction
    naming : str
        The output naming (``mssoft``, ``nnunet`` or ``bids``).
    tables : list of Path
        ``lesions.csv`` and ``scans.csv`` (``.tsv`` for BIDS), then the QC index if drawn.
    lesions : list of LesionRow
    scan_rows : list of ScanRow
    """

    out: Path
    binarisation: Binarisation
    threshold_source: str
    scans: list[ScanPrediction]
    naming: str = "mssoft"
    tables: list[Path] | None = None
    lesions: list[LesionRow] | None = None
    scan_rows: list[ScanRow] | None = None


@dataclass(frozen=True)
class _Options:
    """The options every prediction shares (the keyword arguments of the public functions)."""

    threshold: float | None = None
    min_size: int | None = None
    batch_size: int = 16
    overwrite: bool = False
    progress: Progress = no_progress
    resample: bool = False
    mixed_precision: bool = False
    tta: str = "none"
    calibration: str | Path | None = None
    naming: str | None = None
    qc: bool = True
    trust_savedmodel: bool = False
    model: Any = None


def predict_folder(
    run: RunsLike,
    data: str | Path,
    out: str | Path,
    *,
    scans: str | Sequence[str] | None = None,
    **options: Any,
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
        Data folder (ISBI 2015, nnU-Net v2 raw, BIDS, or a bare folder of nnU-Net
        ``<case>_XXXX.nii.gz`` images whose channels are the run's modalities in order) or CSV
        manifest; masks are not needed.
    out : path-like
        Output folder; may not be inside ``data`` (except under ``derivatives/`` of a BIDS
        dataset) nor hold the run's files.
    scans : str or sequence of str, optional
        Scan ids to predict, or one comma-separated string (default: all).
    **options
        threshold, min_size : Override the calibration (default without calibration: 0.5 and 18).
        batch_size : Slices per model call (16).
        overwrite : Replace an earlier ``predict`` output in ``out`` (its listed files are
        removed first).
        progress : ``progress(items, label)`` wraps the iteration over scans.
        resample : Resample each scan to the run's training voxel size for the model and the
        probabilities back (without it, a voxel size >20 % off warns).
        mixed_precision : bfloat16 on CPU / float16 on GPU (output layer float32).
        tta : ``"none"`` or ``"flip"`` (average with the left-right mirror).
        calibration : Folder with the ``calibration.json`` to use (default: the run's own).
        naming : ``"mssoft"``, ``"nnunet"`` or ``"bids"`` (default: that of ``data``'s layout;
        ``bids`` needs BIDS input).
        qc : Draw the QC pictures and their index (default True).
        trust_savedmodel : Allow running the TensorFlow SavedModel of an export folder that
        holds no ``model.keras`` (a SavedModel is a program; see
        :func:`mssoft.nn.model_files.load_model_folder`).
        model : The model of ``run`` already loaded (:func:`mssoft.nn.model_files.load_ensemble`
        with the same ``tta`` and ``mixed_precision``), so that calibration and prediction of
        one model load it once; default: loaded here.

    Returns
    -------
    PredictionReport

    Raises
    ------
    DataError, ConfigError
        Bad run folder, unknown scan ids, a scan without one of the model's modalities or with
        files on different grids, or an output folder that is not allowed.
    """
    settings = _Options(**options)
    runs = as_runs(run)
    infos = read_ensemble(runs)  # run folders or export folders
    kind = data_kind(data)
    found = discover_run_scans(data, infos[0].modalities)
    selected = select_scans(found, scans, source=str(data))
    data_root = Path(data).resolve() if kind == "bids" else None
    return _predict(runs, infos, selected, out, settings, data=data, kind=kind, root=data_root)


def predict_files(
    run: RunsLike,
    images: Mapping[str, str | Path],
    out: str | Path,
    *,
    scan_id: str | None = None,
    **options: Any,
) -> PredictionReport:
    """Predict one scan given as image files (no data folder, no manifest).

    Parameters
    ----------
    run : path-like or sequence of path-like
        As :func:`predict_folder`.
    images : mapping of str to path-like
        Modality (``flair``, ``t1``, ``t2``, ``pd``; aliases such as ``mprage`` accepted) to
        image file; every modality of the run is required.
    out : path-like
        Output folder (may not be the folder of an input image).
    scan_id : str, optional
        Name of the outputs (default: the FLAIR file name without ``.nii[.gz]``, and without
        an nnU-Net channel suffix ``_0000``).
    **options
        As :func:`predict_folder` (``naming`` ``bids`` is not available here).

    Raises
    ------
    ConfigError
        A modality of the run without its file (the message names the option to add).
    DataError
        As :func:`predict_folder`.
    """
    settings = _Options(**options)
    runs = as_runs(run)
    infos = read_ensemble(runs)
    given = {normalise_modality(k): Path(v) for k, v in images.items() if v is not None}
    missing = [m for m in infos[0].modalities if m not in given]
    if missing:
        raise ConfigError(
            f"Missing option `--{missing[0]}`: the model of {runs[0]} needs "
            f"{', '.join(infos[0].modalities)} images (give --{' FILE --'.join(missing)} FILE)"
        )
    if "flair" not in given:
        raise ConfigError("Missing option `--flair`: every scan needs a FLAIR image")
    for modality, path in given.items():
        if not path.is_file():
            raise ConfigError(f"Invalid value for `--{modality}`: {path}: no such file")
    if scan_id is None:
        scan_id = given["flair"].name.split(".nii")[0]
        if len(scan_id) > 5 and scan_id[-5] == "_" and scan_id[-4:].isdigit():
            scan_id = scan_id[:-5]  # nnU-Net's channel suffix
    ordered = {"flair": given.pop("flair"), **given}
    scan = Scan(scan_id, scan_id, ordered)
    if settings.naming == "bids":
        raise ConfigError("Invalid value for `--naming`: bids needs a BIDS dataset as DATA")
    return _predict(runs, infos, [scan], out, settings, data=None, kind="files", root=None)


def _predict(
    runs: list[Path],
    infos: list[RunInfo],
    selected: list[Scan],
    out: str | Path,
    options: _Options,
    *,
    data: str | Path | None,
    kind: str,
    root: Path | None,
) -> PredictionReport:
    """Check everything, load the model, then predict and write every scan and the tables."""
    naming = options.naming or default_naming(kind)
    if naming not in NAMINGS:
        raise ConfigError(f"Invalid value for `--naming`: {naming!r} (one of {', '.join(NAMINGS)})")
    if naming == "bids" and root is None:
        raise ConfigError("Invalid value for `--naming`: bids needs a BIDS dataset as DATA")
    binarisation, source = ensemble_binarisation(
        runs,
        calibration=options.calibration,
        threshold=options.threshold,
        min_size=options.min_size,
        tta=options.tta,
    )
    setup = model_input(runs, infos, selected, resample=options.resample)
    run_files = [p for r in runs for p in Path(r).iterdir() if p.is_file()]
    inputs = [p for scan in selected for p in scan.files()] + run_files
    from mssoft.nn.model_files import load_ensemble  # imports TensorFlow

    # before creating the output folder: a bad model leaves nothing
    model = options.model
    if model is None:
        model = load_ensemble(
            runs,
            tta=options.tta,
            mixed_precision=options.mixed_precision,
            trust_savedmodel=options.trust_savedmodel,
        )
    config = {
        "run": str(runs[0].resolve()),
        "runs": [str(r.resolve()) for r in runs],
        "tta": options.tta,
        "data": str(Path(data).resolve()) if data is not None else None,
        "images": None if data is not None else {m: str(p) for m, p in selected[0].images.items()},
        "modalities": list(setup.modalities),
        "batch_size": int(options.batch_size),
        "normalise": setup.normaliser.method,
        "mixed_precision": bool(options.mixed_precision),
        **binarisation.to_dict(),
        "threshold_source": source,
        "geometry": setup.geometry,
        "naming": naming,
        "qc": bool(options.qc),
    }
    with open_output_folder(
        out, command="predict", data=data, input_files=inputs, overwrite=options.overwrite
    ) as out:
        outputs = {
            s.scan_id: scan_outputs(out, s.scan_id, naming, s.images["flair"], qc=options.qc)
            for s in selected
        }
        listed = {scan_id: o.relative(out) for scan_id, o in outputs.items()}
        # first: lists every file this run is about to write (an --overwrite removes them all)
        write_config(out, "predict", config, status=STATUS_INCOMPLETE, scans=listed)
        settings = OutputSettings(out, naming, options.qc, tuple(runs), binarisation, root)
        results = _predict_scans(model, selected, setup, binarisation, settings, outputs, options)
        lesions = [row for _, scan_lesions, _ in results for row in scan_lesions]
        rows = [summary for _, _, summary in results]
        tables = write_folder_outputs(settings, lesions, rows, outputs)
        written = [Path(t).resolve().relative_to(Path(out).resolve()).as_posix() for t in tables]
        write_config(
            out, "predict", config, status=STATUS_COMPLETE, scans=listed, outputs=written
        )
    return PredictionReport(
        out,
        binarisation,
        source,
        [r for r, _, _ in results],
        naming,
        tables,
        lesions,
        rows,
    )


def _predict_scans(
    model: Any,
    selected: list[Scan],
    setup: ModelInput,
    binarisation: Binarisation,
    settings: OutputSettings,
    outputs: dict[str, ScanOutputs],
    options: _Options,
) -> list[tuple[ScanPrediction, list[LesionRow], ScanRow]]:
    """Segment every scan; its files are written in the background while the next one runs.

    Only the measurements are kept (not the volumes), so memory does not grow with the cohort.
    """
    model_name = ";".join(str(r.resolve()) for r in settings.runs)
    results = []
    # the next scan is read and the previous one written while the model predicts
    loads = read_ahead(selected, lambda s: load_scan(s, modalities=setup.modalities))
    with WriteBehind() as writer:
        for scan, loaded in zip(options.progress(selected, "predict"), loads, strict=True):
            segmented = segment_scan(
                model,
                loaded,
                setup,
                binarisation,
                model_name=model_name,
                batch_size=options.batch_size,
            )
            files = outputs[scan.scan_id]
            writer.submit(
                write_scan_outputs,
                settings,
                files,
                scan.images,
                segmented.prob,
                segmented.seg,
                segmented.flair,
                loaded.meta,
                segmented.lesions,
            )
            summary = segmented.summary
            result = ScanPrediction(
                scan.scan_id,
                summary.lesions,
                summary.lesion_volume_ml,
                files.prob,
                files.seg,
                files.qc,
            )
            logger.info(
                "%s: %d lesions, %.3f mL", scan.scan_id, summary.lesions, summary.lesion_volume_ml
            )
            results.append((result, segmented.lesions, summary))
    return results
