"""Reading the ISBI 2015 challenge layout as mssoft data.

Layout under a data root (patient folders directly below it, or one level deeper as in the
challenge's ``training/trainingNN``)::

    trainingNN/preprocessed/trainingNN_TT_{flair,mprage,t2,pd}_pp.nii[.gz]
    trainingNN/masks/trainingNN_TT_mask{1,2}.nii[.gz]
    testNN/preprocessed/testNN_TT_{flair,mprage,t2,pd}_pp.nii[.gz]        (no masks)

The scan id is ``trainingNN_TT`` and the patient id ``trainingNN``. ISBI's ``mprage`` is the T1
modality and is called ``t1`` throughout mssoft (``mprage`` is accepted as an alias).
"""

from __future__ import annotations

import re
from pathlib import Path

from mssoft.errors import DataError
from mssoft.files.scan_files import ScanFiles, ScanLayout, normalise_modality

__all__ = [
    "LAYOUT",
    "ISBI_FILE_NAMES",
    "is_isbi_dataset",
    "discover_isbi",
    "isbi_image_path",
    "isbi_mask_path",
]

#: mssoft modality -> its name in ISBI 2015 file names (ISBI's ``mprage`` is T1).
ISBI_FILE_NAMES = {"flair": "flair", "t1": "mprage", "t2": "t2", "pd": "pd"}

_ISBI_IMAGE = re.compile(
    r"^(?P<patient>(?:training|test)\d+)_(?P<tp>\d+)_(?P<mod>flair|mprage|t2|pd)_pp\.nii(?:\.gz)?$"
)
_ISBI_MASK = re.compile(r"^(?P<patient>training\d+)_(?P<tp>\d+)_mask(?P<rater>\d+)\.nii(?:\.gz)?$")
_ISBI_ORDER = ("flair", "t1", "t2", "pd")


def isbi_image_path(root: str | Path, scan_id: str, modality: str) -> Path:
    """``root/<patient>/preprocessed/<scan_id>_<name>_pp.nii.gz`` of a scan ``<patient>_TT``.

    ``modality`` is an mssoft modality (``flair``, ``t1``, ``t2``, ``pd``).
    """
    patient = scan_id.rsplit("_", 1)[0]
    name = ISBI_FILE_NAMES[modality]
    return Path(root) / patient / "preprocessed" / f"{scan_id}_{name}_pp.nii.gz"


def isbi_mask_path(root: str | Path, scan_id: str, rater: int) -> Path:
    """``root/<patient>/masks/<scan_id>_mask<rater>.nii.gz`` of a scan ``<patient>_TT``."""
    patient = scan_id.rsplit("_", 1)[0]
    return Path(root) / patient / "masks" / f"{scan_id}_mask{rater}.nii.gz"


def is_isbi_dataset(root: Path) -> bool:
    """Whether ``root`` (or a folder below it) has ``*/preprocessed/*_pp.nii[.gz]`` files."""
    return _isbi_depth(root) is not None


def _isbi_depth(root: Path) -> str | None:
    """Glob prefix of the patient folders: ``*`` or ``*/*`` (e.g. ``training/training01``)."""
    for prefix in ("*", "*/*"):
        if any(root.glob(f"{prefix}/preprocessed/*_pp.nii*")):
            return prefix
    return None


def discover_isbi(root: Path, *, label: str | int | None = None) -> list[ScanFiles]:
    """The scans of an ISBI 2015 data folder, sorted by scan id.

    Parameters
    ----------
    root : Path
        The data folder (patient folders directly below it, or one level deeper).
    label : ignored
        ISBI masks are binary (the argument of every layout reader, :class:`ScanLayout`).

    Returns
    -------
    list of ScanFiles

    Raises
    ------
    DataError
        Two images of one modality, a mask without images, or a scan without FLAIR.
    """
    prefix = _isbi_depth(root) or "*"
    images: dict[str, dict[str, Path]] = {}
    masks: dict[str, dict[int, Path]] = {}
    patients: dict[str, str] = {}
    for path in sorted(root.glob(f"{prefix}/preprocessed/*.nii*")):
        match = _ISBI_IMAGE.match(path.name)
        if not match:
            continue
        scan_id = f"{match['patient']}_{match['tp']}"
        modality = normalise_modality(match["mod"])
        if match["patient"] != path.parent.parent.name:
            continue  # a file of one patient filed under another: not the ISBI layout
        if modality in images.setdefault(scan_id, {}):
            raise DataError(f"{path}: duplicate {modality} image for scan {scan_id}")
        images[scan_id][modality] = path
        patients[scan_id] = match["patient"]
    for path in sorted(root.glob(f"{prefix}/masks/*.nii*")):
        match = _ISBI_MASK.match(path.name)
        if not match:
            continue
        scan_id = f"{match['patient']}_{match['tp']}"
        if scan_id not in images:
            raise DataError(f"{path}: mask without images (no {scan_id}_*_pp.nii[.gz] found)")
        masks.setdefault(scan_id, {})[int(match["rater"])] = path
    scans = []
    for scan_id in sorted(images):
        found = images[scan_id]
        if "flair" not in found:
            raise DataError(
                f"{next(iter(found.values())).parent}: scan {scan_id} has no FLAIR image"
            )
        ordered = {m: found[m] for m in _ISBI_ORDER if m in found}
        scans.append(
            ScanFiles(
                scan_id, patients[scan_id], ordered, dict(sorted(masks.get(scan_id, {}).items()))
            )
        )
    return scans


#: The ISBI 2015 layout in the registry :data:`mssoft.files.scans.LAYOUTS`.
LAYOUT = ScanLayout(
    name="isbi",
    description="ISBI 2015 layout (*/preprocessed/*_pp.nii[.gz])",
    detect=is_isbi_dataset,
    discover=discover_isbi,
)
