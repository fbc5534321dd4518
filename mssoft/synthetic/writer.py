"""Writing synthetic patients in the ISBI 2015 layout read by :func:`mssoft.files.scans.discover_scans`.

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
from mssoft.files.layout import SYNTHETIC_NAME
from mssoft.files.nifti import grid_meta, write_volume
from mssoft.synthetic.raters import DEFAULT_RATERS
from mssoft.synthetic.scan import DEFAULT_SHAPE, SyntheticScan, make_patient
from mssoft.synthetic.sites import Site

__all__ = ["write_isbi_dataset", "write_site_dataset", "isbi_affine", "ISBI_FILE_NAMES"]

logger = logging.getLogger(__name__)

# mssoft modality name -> ISBI 2015 file name part.
ISBI_FILE_NAMES = {"flair": "flair", "t1": "mprage", "t2": "t2", "pd": "pd"}
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
        files += [
            root / name / "preprocessed" / f"{scan}_{isbi}_pp.nii.gz"
            for isbi in ISBI_FILE_NAMES.values()
        ]
        files += [root / name / "masks" / f"{scan}_mask{r}.nii.gz" for r in masks]
        if truth:
            files.append(root / name / "truth" / f"{scan}_truth.nii.gz")
    files.append(root / name / SYNTHETIC_NAME)
    return files


def _write_scan(
    scan: SyntheticScan, root: Path, name: str, t: int, meta: Any, test: bool, truth: bool
) -> None:
    scan_id = f"{name}_{t:02d}"
    for modality, image in scan.images.items():
        path = root / name / "preprocessed" / f"{scan_id}_{ISBI_FILE_NAMES[modality]}_pp.nii.gz"
        write_volume(image, meta, path, dtype=np.float32)
    if not test:
        for rater, mask in scan.masks.items():
            write_volume(
                mask.astype(np.uint8),
                meta,
                root / name / "masks" / f"{scan_id}_mask{rater}.nii.gz",
                dtype=np.uint8,
            )
    if truth:
        write_volume(
            scan.truth, meta, root / name / "truth" / f"{scan_id}_truth.nii.gz", dtype=np.float32
        )


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
