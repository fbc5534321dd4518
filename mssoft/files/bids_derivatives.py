"""``mssoft predict`` output as a BIDS derivative dataset (BIDS 1.10, derivatives).

Besides the segmentations named by :mod:`mssoft.files.prediction_names` (``bids`` naming), a
derivative dataset holds:

``dataset_description.json``
    ``DatasetType: derivative``; ``GeneratedBy`` mssoft with its version and, in
    ``Description``, the run(s) and threshold; ``SourceDatasets`` and ``DatasetLinks.raw``
    pointing at the input BIDS dataset.
``<...>_probseg.json``, ``<...>_mask.json``
    Sidecars: ``Sources`` (BIDS URIs of the images the model read, or of the probability map
    the mask was thresholded from), ``SpatialReference`` (the FLAIR image, whose grid the
    outputs share), ``Type: Lesion`` (mask), and ``Threshold``, ``MinSize``, ``Connectivity``,
    ``Model``.
``lesions.tsv``, ``scans.tsv`` with ``lesions.json``, ``scans.json``
    The lesion tables with their data dictionaries. BIDS defines no file for per-lesion
    measurements, so they sit at the dataset root and are listed in ``.bidsignore`` together with
    mssoft's ``config.json`` and the QC pictures.

Derivative datasets mssoft wrote are recognised by their ``GeneratedBy`` (:func:`is_mssoft_derivative`)
so that reading the raw dataset again does not take its predictions for rater masks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mssoft._version import __version__
from mssoft.arrays.lesion_table import LESION_UNITS, SCAN_UNITS
from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.bids_layout import GENERATOR_NAME, is_mssoft_derivative
from mssoft.files.layout import (
    BIDS_DESCRIPTION_NAME,
    BIDS_IGNORE_NAME,
    CONFIG_NAME,
    LESIONS_NAME,
    QC_DIR,
    QC_INDEX_NAME,
    SCANS_NAME,
)
from mssoft.files.prediction_names import ScanOutputs

__all__ = [
    "BIDS_VERSION",
    "GENERATOR_NAME",
    "write_derivative_description",
    "write_sidecars",
    "is_mssoft_derivative",
]

BIDS_VERSION = "1.10.0"
_RAW = "raw"


def _link(out: Path, data_root: Path) -> str:
    """``DatasetLinks`` value of the raw dataset: a relative path when it is a parent folder."""
    relative = os.path.relpath(data_root, out)
    return relative if not relative.startswith("..") or data_root in out.parents else data_root.as_uri()


def write_derivative_description(
    out: Path, data_root: Path, runs: Sequence[Path], binarisation: Mapping[str, Any]
) -> None:
    """Write ``dataset_description.json``, ``.bidsignore`` and the tables' data dictionaries.

    Parameters
    ----------
    out : Path
        The derivative dataset (the predict output folder).
    data_root : Path
        The input BIDS dataset.
    runs : sequence of Path
        The run or export folders of the model (an ensemble: several).
    binarisation : mapping
        ``threshold``, ``min_size`` and ``connectivity`` of the segmentations.
    """
    models = ", ".join(str(r.resolve()) for r in runs)
    description = {
        "Name": "mssoft lesion segmentations",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": GENERATOR_NAME,
                "Version": __version__,
                "Description": (
                    f"mssoft predict with the model of {models}; lesion = probability >= "
                    f"{binarisation['threshold']:g}, components of more than "
                    f"{binarisation['min_size']} voxels"
                ),
            }
        ],
        "SourceDatasets": [{"URL": f"bids:{_RAW}:"}],
        "DatasetLinks": {_RAW: _link(out, data_root)},
    }
    write_json(description, out / BIDS_DESCRIPTION_NAME)
    ignored = [
        CONFIG_NAME,
        f"{LESIONS_NAME}.*",
        f"{SCANS_NAME}.*",
        QC_INDEX_NAME,
        QC_DIR,
        f"{QC_DIR}/**",
    ]
    with atomic_path(out / BIDS_IGNORE_NAME) as tmp:
        tmp.write_text("\n".join(ignored) + "\n")
    for name, units in ((LESIONS_NAME, LESION_UNITS), (SCANS_NAME, SCAN_UNITS)):
        dictionary = {
            column: {"Description": text, **({"Units": unit} if unit else {})}
            for column, (text, unit) in units.items()
        }
        write_json(dictionary, out / f"{name}.json")


def _uri(path: Path, root: Path, dataset: str = "") -> str:
    return f"bids:{dataset}:{path.resolve().relative_to(root.resolve()).as_posix()}"


def write_sidecars(
    outputs: ScanOutputs,
    images: Mapping[str, Path],
    out: Path,
    data_root: Path,
    runs: Sequence[Path],
    binarisation: Mapping[str, Any],
) -> None:
    """Write the JSON sidecars of one scan's probability map and mask.

    Parameters
    ----------
    outputs : ScanOutputs
        The scan's files (``bids`` naming).
    images : mapping of str to Path
        Modality -> input image, FLAIR first.
    out, data_root : Path
        The derivative dataset and the input BIDS dataset.
    runs : sequence of Path
    binarisation : mapping
        ``threshold``, ``min_size``, ``connectivity``.
    """
    assert outputs.prob_sidecar is not None and outputs.seg_sidecar is not None
    sources = [_uri(p, data_root, _RAW) for p in images.values()]
    common = {
        "SpatialReference": sources[0],
        "Model": [str(r.resolve()) for r in runs],
        "mssoftVersion": __version__,
    }
    write_json(
        {"Description": "Lesion probability", "Sources": sources, **common},
        outputs.prob_sidecar,
    )
    write_json(
        {
            "Description": "Lesion segmentation: probability >= Threshold, connected components "
            "of more than MinSize voxels",
            "Type": "Lesion",
            "Sources": [_uri(outputs.prob, out)],
            "Threshold": float(binarisation["threshold"]),
            "MinSize": int(binarisation["min_size"]),
            "Connectivity": int(binarisation["connectivity"]),
            **common,
        },
        outputs.seg_sidecar,
    )
