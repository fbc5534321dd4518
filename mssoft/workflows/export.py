"""``mssoft export``: a run's model as a TensorFlow SavedModel, with everything needed to use it.

Export folder (``out``)::

    config.json       command "export", the run exported, versions; "status": "incomplete"
                      until every file below is written
    1/                the TensorFlow SavedModel (TensorFlow Serving serves ``out`` as it is:
                      version 1 of the model); signature ``serving_default``: input ``slices``
                      float32 (batch, X, Y, C) normalised axial slices of any size, output
                      ``probabilities`` float32 (batch, X, Y, 1)
    model.keras       the run's Keras model, copied (its SHA-256 is in mssoft.json)
    calibration.json  the run's calibration, copied (only when the run was calibrated)
    mssoft.json       how to use the model, written last (see :func:`export_description`)

``mssoft predict`` takes the export folder in place of the run folder and gives the same outputs.
It loads ``model.keras`` (Keras ``safe_mode``) and never runs the SavedModel, which is a program
(:func:`mssoft.nn.model_files.load_model_folder`). The folder is locked while it is written, and
an export stopped part-way (even by ``kill -9``) keeps ``"status": "incomplete"``, which the
reading commands report as an incomplete export. TensorFlow is imported only to load and write the
model.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mssoft.arrays.postprocess import Binarisation
from mssoft.arrays.resample import SPACING_TOLERANCE
from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.folders import (
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    open_output_folder,
    package_versions,
    write_config,
)
from mssoft.files.layout import (
    CALIBRATION_NAME,
    EXPORT_INFO_NAME,
    LANDMARKS_NAME,
    MODEL_NAME,
    SAVED_MODEL_DIR,
)
from mssoft.files.normalisation import read_landmarks
from mssoft.files.run_folder import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    RunInfo,
    input_multiple_of,
    normalisation_of,
    read_calibration,
    read_run,
)

__all__ = ["ExportReport", "export_description", "export_run", "input_requirements"]

logger = logging.getLogger(__name__)

#: How a scan becomes the model's input slices and its output a segmentation (mssoft.json).
_SLICING = (
    "reorder the scan's voxel axes to RAS+ (nibabel.as_closest_canonical: voxel index i grows "
    "towards the patient's right, j towards anterior, k towards superior); stack the "
    "normalised modalities as channels in the order of `modalities`; axial slice k is "
    "volume[:, :, k, :] of shape (X, Y, C); the probabilities of slice k go back to "
    "volume[:, :, k]"
)


@dataclass(frozen=True)
class ExportReport:
    """Result of :func:`export_run`.

    Attributes
    ----------
    out : Path
        The export folder.
    saved_model : Path
        The SavedModel folder (``out/1``).
    binarisation : Binarisation
        The threshold and lesion definition recorded (the run's calibration, or the defaults).
    calibrated : bool
        Whether the run had a calibration.
    """

    out: Path
    saved_model: Path
    binarisation: Binarisation
    calibrated: bool


def _normalisation(info: RunInfo) -> dict[str, Any]:
    """The run's normalisation record, with the histogram landmarks themselves when it has them."""
    record = normalisation_of(info)
    if record.get("method") == "histogram":
        landmarks = read_landmarks(info.path / LANDMARKS_NAME, info.modalities)
        record["landmarks"] = {
            m: [float(v) for v in row] for m, row in zip(info.modalities, landmarks, strict=True)
        }
    return record


def input_requirements(config: dict[str, Any]) -> dict[str, Any]:
    """What every input scan must be for the exported model (``mssoft.json`` ``inputs``).

    Parameters
    ----------
    config : dict
        The run's resolved configuration (``config.json`` ``config``).

    Returns
    -------
    dict
        ``skull_stripped``, ``co_registered``, ``voxel_size_mm`` (the training voxel size, None
        when the run does not record it) with ``voxel_size_tolerance`` (relative, per axis),
        ``orientation`` and ``resampling``: each a value and, beside it, a sentence saying why.
    """
    voxel = config.get("voxel_size_mm")
    tolerance = SPACING_TOLERANCE
    return {
        "skull_stripped": True,
        "skull_stripped_reason": (
            "intensities are normalised over the non-zero voxels (the brain); skull and "
            "background must be 0, as in the training data"
        ),
        "co_registered": True,
        "co_registered_reason": (
            "every modality must be on the FLAIR image's grid (same shape and affine within "
            "1e-3 mm): the channels of a voxel are read at the same index"
        ),
        "voxel_size_mm": voxel,
        "voxel_size_tolerance": tolerance,
        "voxel_size_rule": (
            f"a scan whose voxel size differs from voxel_size_mm by more than "
            f"{round(tolerance * 100)} % on any axis is off the training distribution: "
            "resample it (mssoft predict --resample) or expect worse segmentations"
        ),
        "orientation": config.get("orientation"),
        "orientation_rule": (
            "any orientation is accepted: the voxel axes are reordered to RAS+ (see slicing) and "
            "outputs are written back in the input file's orientation; orientation is the one "
            "of the training files, for reference"
        ),
        "resampling": (
            "with --resample, each scan is resampled trilinearly (order 1, no anti-aliasing) over "
            "its field of view to voxel_size_mm, and the probabilities trilinearly back to the "
            "scan's grid; without it, scans are used on their own grid"
        ),
    }


def export_description(
    info: RunInfo,
    binarisation: Binarisation,
    *,
    calibrated: bool,
    channels: int,
    keras_sha256: str | None = None,
) -> dict[str, Any]:
    """The content of ``mssoft.json``: everything needed to use the exported model right.

    Parameters
    ----------
    info : RunInfo
        The run exported.
    binarisation : Binarisation
        Threshold, minimum lesion size and connectivity recorded for the segmentation.
    calibrated : bool
        Whether ``binarisation`` comes from ``mssoft calibrate`` (else: mssoft's defaults).
    channels : int
        The model's number of input channels.
    keras_sha256 : str, optional
        SHA-256 of the ``model.keras`` copied into the export (recorded as ``keras_model``).

    Returns
    -------
    dict
        JSON-ready: ``format``, ``format_version``, ``saved_model``, ``signature`` (input and
        output names, shapes, dtypes), ``modalities``, ``normalisation``, ``slicing``,
        ``input_multiple``, ``keras_model`` (file name, SHA-256, how to load it),
        ``binarisation``, ``training`` (voxel size and orientation when the run records them,
        rater, scans), ``inputs`` (:func:`input_requirements`), ``run_config`` (the run's
        ``config.json``) and
        ``versions``.
    """
    from mssoft.nn.saved_model import ENDPOINT_NAME, INPUT_NAME, OUTPUT_NAME

    config = info.run_record.config
    multiple = input_multiple_of(info)
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "saved_model": SAVED_MODEL_DIR,
        "signature": {
            "names": ["serving_default", ENDPOINT_NAME],
            "input": {
                "name": INPUT_NAME,
                "dtype": "float32",
                "shape": [None, None, None, channels],
                "meaning": "(batch, X, Y, C): normalised axial slices, any X and Y",
            },
            "output": {
                "name": OUTPUT_NAME,
                "dtype": "float32",
                "shape": [None, None, None, 1],
                "meaning": "(batch, X, Y, 1): lesion probability of each voxel, in [0, 1]",
            },
        },
        "modalities": list(info.modalities),
        "normalisation": _normalisation(info),
        "slicing": _SLICING,
        "input_multiple": multiple,
        "padding": (
            f"the signature zero-pads X and Y at their end to multiples of {multiple} and crops "
            "the probabilities back; callers of the Keras model.keras must do so themselves"
        ),
        "keras_model": {
            "file": MODEL_NAME,
            "sha256": keras_sha256,
            "loading": (
                "keras.saving.load_model(file, safe_mode=True): the same model as the "
                "SavedModel, loadable without running any code of the export"
            ),
        },
        "binarisation": {
            **binarisation.to_dict(),
            "source": "calibration" if calibrated else "default",
        },
        "training": {
            "voxel_size_mm": config.get("voxel_size_mm"),
            "orientation": config.get("orientation"),
            "rater": info.rater,
            "train_scans": list(info.train_scans) if info.train_scans else None,
            "mask": config.get("mask"),
            "depth": config.get("depth"),
            "base_filters": config.get("base_filters"),
        },
        "inputs": input_requirements(config),
        "run_config": info.record,
        "run": str(Path(info.path).resolve()),
        "versions": package_versions(),
    }


def export_run(run: str | Path, out: str | Path, *, overwrite: bool = False) -> ExportReport:
    """Export the model of ``run`` to the folder ``out`` (see the module docstring).

    Parameters
    ----------
    run : path-like
        A finished ``mssoft fit`` run folder (calibrated or not).
    out : path-like
        The export folder: new, empty, or (with ``overwrite``) an earlier export.
    overwrite : bool
        Replace an earlier export in ``out``.

    Returns
    -------
    ExportReport

    Raises
    ------
    DataError
        Not a run folder, or a model that cannot be loaded.
    ConfigError
        ``out`` is the run folder, another command's output, or an export without ``overwrite``.
    """
    info = read_run(run)
    calibrated = read_calibration(run)
    binarisation = calibrated if calibrated is not None else Binarisation()
    if calibrated is None:
        logger.warning(
            "%s not found: the export records threshold %g and min_size %d "
            "(run `mssoft calibrate` first to choose them)",
            Path(run) / CALIBRATION_NAME,
            binarisation.threshold,
            binarisation.min_size,
        )
    run_files = [p for p in Path(run).iterdir() if p.is_file()]
    from mssoft.nn.model_files import file_sha256, load_run_model  # imports TensorFlow
    from mssoft.nn.saved_model import write_saved_model

    model = load_run_model(run)  # before creating the output folder: a bad model leaves nothing
    config = {"run": str(Path(run).resolve())}
    copies = {
        MODEL_NAME: True,
        CALIBRATION_NAME: calibrated is not None,
        LANDMARKS_NAME: (Path(run) / LANDMARKS_NAME).is_file(),  # --normalise histogram
    }
    outputs = [name for name, present in copies.items() if present] + [EXPORT_INFO_NAME]
    with open_output_folder(
        out, command="export", data=run, input_files=run_files, overwrite=overwrite
    ) as out:
        (out / EXPORT_INFO_NAME).unlink(missing_ok=True)  # until the new export is complete
        write_config(out, "export", config, status=STATUS_INCOMPLETE, outputs=outputs)
        saved_model = write_saved_model(
            model, out / SAVED_MODEL_DIR, multiple=input_multiple_of(info)
        )
        for name, present in copies.items():
            if present:
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(Path(run) / name, tmp)
            else:
                (out / name).unlink(missing_ok=True)
        description = export_description(
            info,
            binarisation,
            calibrated=calibrated is not None,
            channels=int(model.input_shape[-1]),
            keras_sha256=file_sha256(out / MODEL_NAME),
        )
        write_json(description, out / EXPORT_INFO_NAME)
        write_config(out, "export", config, status=STATUS_COMPLETE, outputs=outputs)
    logger.info("exported %s to %s", run, saved_model)
    return ExportReport(out, saved_model, binarisation, calibrated is not None)
