"""The files ``mssoft predict`` writes: per scan, then once for the whole output folder.

Per scan (:func:`write_scan_outputs`, run in a background thread while the model predicts the
next scan): the probability map and the segmentation (named by
:mod:`mssoft.files.prediction_names`), their BIDS sidecars, and the QC picture.
Once at the end (:func:`write_folder_outputs`): the lesion tables, the QC index and, for a BIDS
derivative dataset, ``dataset_description.json`` and ``.bidsignore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mssoft.arrays.lesion_table import LesionRow, ScanRow
from mssoft.arrays.postprocess import Binarisation
from mssoft.files.bids_derivatives import write_derivative_description, write_sidecars
from mssoft.files.layout import QC_INDEX_NAME
from mssoft.files.lesion_tables import write_lesion_tables
from mssoft.files.nifti import VolumeMeta, write_volume
from mssoft.files.prediction_names import ScanOutputs
from mssoft.workflows.qc_pictures import QcEntry, plot_scan_qc, write_qc_index

__all__ = ["OutputSettings", "write_scan_outputs", "write_folder_outputs"]


@dataclass(frozen=True)
class OutputSettings:
    """What every scan's outputs share.

    Attributes
    ----------
    out : Path
        The output folder.
    naming : {"mssoft", "nnunet", "bids"}
    qc : bool
        Draw the QC pictures.
    runs : tuple of Path
        The model's run or export folder(s).
    binarisation : Binarisation
    data_root : Path or None
        The input BIDS dataset (BIDS naming only).
    """

    out: Path
    naming: str
    qc: bool
    runs: tuple[Path, ...]
    binarisation: Binarisation
    data_root: Path | None = None


def write_scan_outputs(
    settings: OutputSettings,
    outputs: ScanOutputs,
    images: dict[str, Path],
    prob: np.ndarray,
    seg: np.ndarray,
    flair: np.ndarray,
    meta: VolumeMeta,
    lesions: Sequence[LesionRow],
) -> None:
    """Write one scan's probability map (float32), segmentation (uint8), sidecars and QC PNG.

    ``prob``, ``seg`` and ``flair`` are RAS arrays of shape ``meta.ras_shape``; the volumes are
    written on the FLAIR file's grid and orientation.
    """
    write_volume(prob, meta, outputs.prob, dtype=np.float32)
    write_volume(seg.astype(np.uint8), meta, outputs.seg, dtype=np.uint8)
    if settings.naming == "bids":
        assert settings.data_root is not None
        write_sidecars(
            outputs,
            images,
            settings.out,
            settings.data_root,
            settings.runs,
            settings.binarisation.to_dict(),
        )
    if outputs.qc is not None:  # drawn only with settings.qc
        scan_id = outputs.qc.name[: -len("_qc.png")]
        plot_scan_qc(outputs.qc, scan_id, flair, prob, seg, lesions, meta.spacing_mm)


def write_folder_outputs(
    settings: OutputSettings,
    lesions: Sequence[LesionRow],
    scans: Sequence[ScanRow],
    outputs: dict[str, ScanOutputs],
) -> list[Path]:
    """Write the lesion tables, the QC index and the BIDS dataset files; return the files."""
    bids = settings.naming == "bids"
    written = list(write_lesion_tables(settings.out, lesions, scans, tsv=bids))
    if settings.qc:
        entries = [
            QcEntry(row.scan, row.lesions, row.lesion_volume_ml, outputs[row.scan].qc)
            for row in scans
        ]
        written.append(write_qc_index(settings.out / QC_INDEX_NAME, entries))
    if bids:
        assert settings.data_root is not None
        write_derivative_description(
            settings.out, settings.data_root, settings.runs, settings.binarisation.to_dict()
        )
    return written
