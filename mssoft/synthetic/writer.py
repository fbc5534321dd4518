"""Writing synthetic patients in the ISBI 2015 layout or as an nnU-Net v2 raw dataset, both read
by :func:`mssoft.files.scans.discover_scans`.

Files under ``root`` (``NN`` the patient, ``TT`` the time point, both from 01)::

    trainingNN/preprocessed/trainingNN_TT_{flair,mprage,t2,pd}_pp.nii.gz   float32 images
    trainingNN/masks/trainingNN_TT_mask{1,2}.nii.gz                         uint8 rater masks
    trainingNN/truth/trainingNN_TT_truth.nii.gz                             float32 lesion fraction
    trainingNN/synthetic.json                                               how it was generated

Test-style patients (``test=True``) are named ``testNN`` and have no ``masks`` folder. The
``truth`` folder is not part of ISBI 2015; discovery ignores it.

The grid is 1 mm isotropic by default. The affine is LAS (``orientation="LAS"``, as FSL writes
MNI-space images such as ISBI 2015's: the first file axis runs towards the patient's Left) or RAS,
with the world origin at the centre of the volume. Arrays are generated in RAS order and flipped
on writing by :func:`mssoft.files.nifti.write_volume`.

:func:`write_nnunet_dataset` writes an nnU-Net v2 raw dataset instead. Files under ``root``::

    dataset.json                                   channel_names, labels, numTraining, file_ending
    imagesTr/caseNNN_{0000,0001,...}.nii.gz        float32 images, one file per channel
    labelsTr/caseNNN.nii.gz                        uint8 label map of rater 1
    imagesTs/testNNN_{0000,...}.nii.gz             test cases, no labels

Every case is the first time point of its own synthetic patient. Rater 1's lesions get the value
``lesion_label``; with ``other_label`` the voxels that rater 2 marks and rater 1 does not get that
value, so the label files are real multi-label maps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mssoft._version import __version__
from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import write_json
from mssoft.files.bids_layout import BIDS_SUFFIXES
from mssoft.files.isbi_layout import ISBI_FILE_NAMES, isbi_image_path, isbi_mask_path
from mssoft.files.layout import SYNTHETIC_NAME, truth_path
from mssoft.files.nifti import grid_meta, write_volume
from mssoft.files.nnunet_layout import DATASET_JSON
from mssoft.synthetic.raters import DEFAULT_RATERS
from mssoft.synthetic.scan import DEFAULT_SHAPE, SyntheticScan, make_patient, make_scan
from mssoft.synthetic.sites import Site

__all__ = [
    "write_isbi_dataset",
    "write_nnunet_dataset",
    "write_bids_dataset",
    "write_site_dataset",
    "isbi_affine",
    "NNUNET_CHANNEL_NAMES",
]

logger = logging.getLogger(__name__)

_KIND = {"training": 0, "test": 1}


def isbi_affine(
    shape: Sequence[int], spacing: Sequence[float] = (1.0, 1.0, 1.0), orientation: str = "LAS"
) -> np.ndarray:
    """Voxel-to-world affine of a synthetic grid, world origin at the volume centre.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid shape (identical in RAS and LAS order: only the first axis is flipped).
    spacing : sequence of 3 float, optional
        Voxel size in millimetres.
    orientation : {"LAS", "RAS"}, optional
        Direction of the file axes.

    Returns
    -------
    ndarray of float64, shape (4, 4)
    """
    if orientation not in ("LAS", "RAS"):
        raise ConfigError(
            f"Invalid value for `orientation`. Expected 'LAS' or 'RAS'. Received: {orientation!r}"
        )
    sizes = np.asarray(shape, dtype=np.float64)
    steps = np.asarray(spacing, dtype=np.float64)
    if orientation == "LAS":
        steps = steps * np.array([-1.0, 1.0, 1.0])
    affine = np.diag([*steps, 1.0])
    affine[:3, 3] = -steps * (sizes - 1) / 2.0
    return affine


def _planned(
    root: Path, kind: str, patient: int, timepoints: int, masks: Sequence[int], truth: bool
) -> list[Path]:
    name = f"{kind}{patient:02d}"
    files = []
    for t in range(1, timepoints + 1):
        scan = f"{name}_{t:02d}"
        files += [isbi_image_path(root, scan, modality) for modality in ISBI_FILE_NAMES]
        files += [isbi_mask_path(root, scan, r) for r in masks]
        if truth:
            files.append(truth_path(isbi_image_path(root, scan, "flair"), scan))
    files.append(root / name / SYNTHETIC_NAME)
    return files


def _write_scan(
    scan: SyntheticScan, root: Path, name: str, t: int, meta: Any, test: bool, truth: bool
) -> None:
    scan_id = f"{name}_{t:02d}"
    for modality, image in scan.images.items():
        write_volume(image, meta, isbi_image_path(root, scan_id, modality), dtype=np.float32)
    if not test:
        for rater, mask in scan.masks.items():
            write_volume(
                mask.astype(np.uint8),
                meta,
                isbi_mask_path(root, scan_id, rater),
                dtype=np.uint8,
            )
    if truth:
        truth_file = truth_path(isbi_image_path(root, scan_id, "flair"), scan_id)
        write_volume(scan.truth, meta, truth_file, dtype=np.float32)


def write_isbi_dataset(
    root: str | os.PathLike[str],
    *,
    n_patients: int = 3,
    timepoints: int = 2,
    shape: Sequence[int] = DEFAULT_SHAPE,
    seed: int = 0,
    test: bool = False,
    first_patient: int = 1,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    orientation: str = "LAS",
    write_truth: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> list[str]:
    """Generate synthetic patients and write them in the ISBI 2015 layout.

    Parameters
    ----------
    root : path-like
        Data root (created if needed).
    n_patients : int, optional
        Number of patients (>= 1).
    timepoints : int, optional
        Time points per patient (>= 1).
    shape : sequence of 3 int, optional
        Grid (X, Y, Z) in RAS order; every size at least 16.
    seed : int, optional
        Dataset seed (>= 0). Patient ``NN`` uses the seed ``(seed, 0 or 1 for test, NN)``, so
        adding patients does not change the others.
    test : bool, optional
        Write test-style patients ``testNN`` without rater masks (default: ``trainingNN``).
    first_patient : int, optional
        Number ``NN`` of the first patient (to add patients to an existing root).
    spacing : sequence of 3 float, optional
        Voxel size in millimetres (default 1 mm isotropic, as ISBI 2015).
    orientation : {"LAS", "RAS"}, optional
        Orientation of the files' affine (see :func:`isbi_affine`).
    write_truth : bool, optional
        Also write the true partial-volume lesion map under ``<patient>/truth/``.
    overwrite : bool, optional
        Replace existing files; otherwise any existing target file is an error.
    **options
        Phantom options passed to :func:`~mssoft.synthetic.make_patient`: ``n_lesions``,
        ``new_lesions``, ``lesion_size``, ``noise``, ``bias``, ``raters``.

    Returns
    -------
    list of str
        Scan ids written (``trainingNN_TT`` or ``testNN_TT``), sorted.

    Raises
    ------
    ConfigError
        An invalid count, seed or option.
    DataError
        A target file exists and ``overwrite`` is false (nothing is written then).
    """
    for label, value, low in (
        ("n_patients", n_patients, 1),
        ("timepoints", timepoints, 1),
        ("seed", seed, 0),
        ("first_patient", first_patient, 1),
    ):
        if int(value) != value or value < low:
            raise ConfigError(
                f"Invalid value for `{label}`. Expected an integer >= {low}. Received: {value}"
            )
    if "modalities" in options:
        raise ConfigError(
            "Invalid option `modalities`: the ISBI 2015 layout always has flair, mprage, t2 and pd"
        )
    dims = tuple(shape)
    if len(dims) != 3 or any(int(d) != d or d < 16 for d in dims):
        raise ConfigError(f"Invalid value for `shape`. Expected 3 sizes >= 16. Received: {shape}")
    sizes = tuple(spacing)
    if len(sizes) != 3 or not all(float(v) > 0 for v in sizes):
        raise ConfigError(
            f"Invalid value for `spacing`. Expected 3 positive numbers. Received: {spacing}"
        )
    root = Path(root)
    kind = "test" if test else "training"
    patients = range(int(first_patient), int(first_patient) + int(n_patients))
    if first_patient + n_patients - 1 > 99:
        raise ConfigError(
            f"Invalid value for `n_patients`: patients {first_patient} to "
            f"{first_patient + n_patients - 1} do not fit in two digits (at most 99)"
        )
    affine = isbi_affine(shape, spacing, orientation)
    raters = [] if test else sorted(options.get("raters", DEFAULT_RATERS))
    if not overwrite:
        for patient in patients:
            for path in _planned(root, kind, patient, int(timepoints), raters, write_truth):
                if path.exists():
                    raise DataError(
                        f"{path}: file exists (pass overwrite=True, or --overwrite, to replace it)"
                    )
    meta = grid_meta(shape, affine, path=root)
    if test:
        options = {**options, "raters": {}}
    written: list[str] = []
    for patient in patients:
        name = f"{kind}{patient:02d}"
        try:  # make_patient checks every option before generating anything
            scans = make_patient(
                shape,
                seed=(int(seed), _KIND[kind], patient),
                timepoints=int(timepoints),
                spacing=spacing,
                **options,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        for t, scan in enumerate(scans, start=1):
            _write_scan(scan, root, name, t, meta, test, write_truth)
            written.append(f"{name}_{t:02d}")
            logger.info("wrote %s", written[-1])
        record = {
            "generator": "mssoft.synthetic.make_patient",
            "mssoft": __version__,
            "patient_seed": [int(seed), _KIND[kind], patient],
            "timepoints": int(timepoints),
            "shape": [int(d) for d in dims],
            "spacing_mm": [float(v) for v in sizes],
            "orientation": orientation,
            "options": {k: v for k, v in options.items() if k != "raters"},
            "raters": {str(r): asdict(m) for r, m in options.get("raters", DEFAULT_RATERS).items()},
        }
        write_json(record, root / name / SYNTHETIC_NAME)
    return sorted(written)


#: mssoft modality -> the name written into ``channel_names``.
NNUNET_CHANNEL_NAMES = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w", "pd": "PDw"}


def write_nnunet_dataset(
    root: str | os.PathLike[str],
    *,
    n_train: int = 4,
    n_test: int = 0,
    shape: Sequence[int] = (48, 56, 40),
    seed: int = 0,
    modalities: Sequence[str] = ("flair", "t1", "t2"),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    orientation: str = "LAS",
    lesion_label: int = 1,
    other_label: int | None = None,
    **options: Any,
) -> list[str]:
    """Generate synthetic cases and write them as an nnU-Net v2 raw dataset.

    Parameters
    ----------
    root : path-like
        Dataset folder (created; it must not hold a dataset yet).
    n_train, n_test : int, optional
        Cases with labels (``imagesTr``/``labelsTr``) and without (``imagesTs``).
    shape : sequence of 3 int, optional
        Grid (X, Y, Z) in RAS order.
    seed : int, optional
        Case ``k`` is patient ``(seed, k)`` (test cases ``(seed, 1000 + k)``).
    modalities : sequence of str, optional
        Channels in order (``flair`` first is not required); written with the names of
        :data:`NNUNET_CHANNEL_NAMES`.
    spacing : sequence of 3 float, optional
        Voxel size in mm.
    orientation : {"LAS", "RAS"}, optional
        Orientation of the affine.
    lesion_label : int, optional
        Label value of rater 1's lesions (>= 1).
    other_label : int, optional
        If given, the label of voxels marked by rater 2 only (a second foreground class).
    **options
        Phantom options of :func:`~mssoft.synthetic.make_scan` (``n_lesions``, ``noise``, ...).

    Returns
    -------
    list of str
        Case ids written, training cases first.

    Raises
    ------
    ConfigError
        Invalid counts, modalities or labels.
    DataError
        ``root`` holds a ``dataset.json`` or files in ``imagesTr``, ``imagesTs`` or ``labelsTr``
        (nothing is written then).
    """
    if n_train < 0 or n_test < 0 or n_train + n_test < 1:
        raise ConfigError(
            f"Invalid values for `n_train`/`n_test`: {n_train}, {n_test} (need >= 1 case)"
        )
    unknown = [m for m in modalities if m not in NNUNET_CHANNEL_NAMES]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise ConfigError(f"Invalid value for `modalities`: {list(modalities)}")
    labels = {"background": 0, "lesion": int(lesion_label)}
    if other_label is not None:
        labels["rater2_only"] = int(other_label)
    foreground = [v for name, v in labels.items() if name != "background"]
    if min(foreground) < 1 or max(foreground) > 255 or len(set(foreground)) < len(foreground):
        raise ConfigError(f"Invalid label values: {labels} (distinct lesion labels in 1..255)")
    root = Path(root)
    for existing in [root / DATASET_JSON] + [
        min((root / sub).iterdir(), default=None)
        for sub in ("imagesTr", "imagesTs", "labelsTr")
        if (root / sub).is_dir()
    ]:
        if existing is not None and existing.exists():
            raise DataError(f"{existing}: exists; write the dataset into a new folder")
    meta = grid_meta(shape, isbi_affine(shape, spacing, orientation), path=root)
    written = []
    for folder, count, offset in (("imagesTr", n_train, 0), ("imagesTs", n_test, 1000)):
        for k in range(1, count + 1):
            case = f"{'case' if offset == 0 else 'test'}{k:03d}"
            scan = make_scan(
                shape,
                seed=(int(seed), offset + k),
                spacing=spacing,
                modalities=list(modalities),
                **options,
            )
            for channel, modality in enumerate(modalities):
                path = root / folder / f"{case}_{channel:04d}.nii.gz"
                write_volume(scan.images[modality], meta, path, dtype=np.float32)
            if offset == 0:
                label_map = np.where(scan.masks[1], labels["lesion"], 0).astype(np.uint8)
                if other_label is not None and 2 in scan.masks:
                    label_map[scan.masks[2] & ~scan.masks[1]] = labels["rater2_only"]
                write_volume(label_map, meta, root / "labelsTr" / f"{case}.nii.gz", dtype=np.uint8)
            written.append(case)
    write_json(
        {
            "channel_names": {str(c): NNUNET_CHANNEL_NAMES[m] for c, m in enumerate(modalities)},
            "labels": labels,
            "numTraining": int(n_train),
            "file_ending": ".nii.gz",
            "name": "mssoft synthetic MS lesions",
        },
        root / DATASET_JSON,
    )
    return written


def write_site_dataset(
    root: str | os.PathLike[str],
    site: Site,
    *,
    shape_mm: Sequence[int],
    n_patients: int,
    timepoints: int = 2,
    seed: int = 0,
    first_patient: int = 1,
    overwrite: bool = False,
) -> list[str]:
    """Write ``n_patients`` of ``site`` in the ISBI 2015 layout (:func:`write_isbi_dataset`).

    Parameters
    ----------
    root : path-like
    site : Site
    shape_mm : sequence of 3 int
        Field of view in mm; the grid is :meth:`Site.grid` of it.
    n_patients, timepoints, seed, first_patient, overwrite
        As in :func:`~mssoft.synthetic.write_isbi_dataset`. Give each site its own seed so that
        the sites' patients differ.

    Returns
    -------
    list of str
        Scan ids written.
    """
    options = site.options()
    return write_isbi_dataset(
        root,
        n_patients=n_patients,
        timepoints=timepoints,
        shape=site.grid(shape_mm),
        seed=seed,
        first_patient=first_patient,
        spacing=options.pop("spacing"),
        overwrite=overwrite,
        **options,
    )


#: mssoft modality -> BIDS suffix of the anatomical image (the inverse of what the reader maps).
BIDS_IMAGE_SUFFIXES = {modality: suffix for suffix, modality in BIDS_SUFFIXES.items()}


def write_bids_dataset(
    root: str | os.PathLike[str],
    *,
    n_subjects: int = 2,
    sessions: int = 1,
    shape: Sequence[int] = (48, 56, 40),
    seed: int = 0,
    modalities: Sequence[str] = ("flair", "t1"),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    orientation: str = "LAS",
    masks: bool = True,
    **options: Any,
) -> list[str]:
    """Generate synthetic scans and write them as a BIDS raw dataset (read by
    :mod:`mssoft.files.bids_layout`).

    Files under ``root``::

        dataset_description.json, participants.tsv, README
        sub-NN/[ses-TT/]anat/sub-NN[_ses-TT]_{FLAIR,T1w,T2w,PDw}.nii.gz
        derivatives/manual/dataset_description.json
        derivatives/manual/sub-NN/[ses-TT/]anat/sub-NN[_ses-TT]_label-lesion_mask.nii.gz

    Sessions (``ses-TT``) only with ``sessions > 1``. The masks are rater 1's (``masks=False``:
    none). Images carry millimetre units in their NIfTI header.

    Parameters
    ----------
    root : path-like
        Dataset folder (created; it must not hold a ``dataset_description.json`` yet).
    n_subjects, sessions : int, optional
    shape, seed, modalities, spacing, orientation
        As :func:`write_nnunet_dataset` (subject ``k``, session ``t`` is patient
        ``(seed, 2000 + 100 * k + t)``).
    masks : bool, optional
    **options
        Phantom options of :func:`~mssoft.synthetic.make_scan`.

    Returns
    -------
    list of str
        Scan ids written (``sub-NN`` or ``sub-NN_ses-TT``).

    Raises
    ------
    ConfigError
        Invalid counts or modalities.
    DataError
        ``root`` already holds a dataset.
    """
    if n_subjects < 1 or sessions < 1:
        raise ConfigError(
            f"Invalid values for `n_subjects`/`sessions`: {n_subjects}, {sessions} (need >= 1)"
        )
    if "flair" not in modalities or any(m not in BIDS_IMAGE_SUFFIXES for m in modalities):
        raise ConfigError(f"Invalid value for `modalities`: {list(modalities)} (FLAIR required)")
    root = Path(root)
    if (root / "dataset_description.json").exists():
        raise DataError(f"{root / 'dataset_description.json'}: exists; write into a new folder")
    meta = grid_meta(shape, isbi_affine(shape, spacing, orientation), path=root)
    meta.header.set_xyzt_units("mm")
    written = []
    for k in range(1, n_subjects + 1):
        for t in range(1, sessions + 1):
            scan = make_scan(
                shape,
                seed=(int(seed), 2000 + 100 * k + t),
                spacing=spacing,
                modalities=list(modalities),
                **options,
            )
            parts = [f"sub-{k:02d}"] + ([f"ses-{t:02d}"] if sessions > 1 else [])
            stem, folder = "_".join(parts), Path(*parts) / "anat"
            for modality in modalities:
                path = root / folder / f"{stem}_{BIDS_IMAGE_SUFFIXES[modality]}.nii.gz"
                write_volume(scan.images[modality], meta, path, dtype=np.float32)
            if masks:
                mask = scan.masks[1].astype(np.uint8)
                path = root / "derivatives" / "manual" / folder / f"{stem}_label-lesion_mask.nii.gz"
                write_volume(mask, meta, path, dtype=np.uint8)
            written.append(stem)
    description = {"Name": "mssoft synthetic MS lesions", "BIDSVersion": "1.10.0"}
    raw = {**description, "DatasetType": "raw", "Authors": ["mssoft"]}
    write_json(raw, root / "dataset_description.json")
    (root / "README").write_text("Synthetic MS lesion scans generated by mssoft.synthetic.\n")
    subjects = "".join(f"sub-{k:02d}\n" for k in range(1, n_subjects + 1))
    (root / "participants.tsv").write_text("participant_id\n" + subjects)
    if masks:
        write_json(
            {
                **description,
                "Name": "Lesion masks (synthetic rater 1)",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "mssoft.synthetic", "Version": __version__}],
            },
            root / "derivatives" / "manual" / "dataset_description.json",
        )
    return written
