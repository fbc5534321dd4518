"""Reading a BIDS dataset (anatomical images) with lesion masks from its derivatives as mssoft data.

Layout::

    sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>][_<key>-<value>...]_{FLAIR,T1w,T2w,PDw}.nii[.gz]
    derivatives/<pipeline>/sub-<s>/[ses-<t>/]anat/
        sub-<s>[_ses-<t>][_<key>-<value>...]_label-lesion[_desc-rater<N>]_mask.nii[.gz]

One scan per subject and session: the scan id is ``sub-<s>_ses-<t>`` (``sub-<s>`` without
sessions) and the patient id ``sub-<s>``. ``FLAIR`` is required; ``T1w``, ``T2w`` and ``PDw``
become ``t1``, ``t2`` and ``pd``; other suffixes (``T2starw``, JSON sidecars, ...) are ignored.
Lesion masks are binary ``_mask`` files with the entity ``label-lesion`` in any pipeline folder
under ``derivatives/``; ``desc-rater<N>`` makes a mask rater N's (rater 1 without it). Two images
of one modality in a session (e.g. ``acq-`` or ``run-`` variants), or two masks of one rater,
are an error naming both files: mssoft reads one image per modality. Derivative datasets written
by ``mssoft predict`` (``GeneratedBy`` mssoft) are skipped: their masks are predictions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mssoft.errors import DataError
from mssoft.files.scan_files import ScanFiles, ScanLayout

__all__ = [
    "LAYOUT",
    "BIDS_SUFFIXES",
    "GENERATOR_NAME",
    "is_bids_dataset",
    "is_mssoft_derivative",
    "discover_bids",
]

#: BIDS suffix -> mssoft modality.
BIDS_SUFFIXES = {"FLAIR": "flair", "T1w": "t1", "T2w": "t2", "PDw": "pd"}
_ORDER = ("flair", "t1", "t2", "pd")
_NAME = re.compile(
    r"^(?P<entities>sub-[A-Za-z0-9]+(?:_[A-Za-z]+-[A-Za-z0-9]+)*)_(?P<suffix>[A-Za-z0-9]+)\.nii(?:\.gz)?$"
)
#: ``GeneratedBy`` name of the derivative datasets mssoft writes.
GENERATOR_NAME = "mssoft"
_RATER = re.compile(r"^rater(\d+)$", re.IGNORECASE)


def _anat_files(root: Path, prefix: str = "") -> list[Path]:
    """``[prefix/]sub-*/[ses-*/]anat/*.nii[.gz]`` under ``root`` (``prefix`` may hold a ``*``)."""
    return sorted(root.glob(f"{prefix}sub-*/anat/*.nii*")) + sorted(
        root.glob(f"{prefix}sub-*/ses-*/anat/*.nii*")
    )


def is_bids_dataset(root: Path) -> bool:
    """Whether ``root`` has ``sub-*/[ses-*/]anat/`` NIfTI files."""
    return bool(_anat_files(root))


def _parse(path: Path) -> tuple[dict[str, str], str] | None:
    """(entities, suffix) of a BIDS file name, None if it is not one."""
    match = _NAME.match(path.name)
    if not match:
        return None
    entities = dict(part.split("-", 1) for part in match["entities"].split("_"))
    return entities, match["suffix"]


def _scan_id(entities: dict[str, str]) -> str:
    return f"sub-{entities['sub']}" + (f"_ses-{entities['ses']}" if "ses" in entities else "")


def _masks(root: Path) -> dict[str, dict[int, Path]]:
    """Scan id -> {rater: mask} from every pipeline under ``derivatives/``."""
    found: dict[str, dict[int, Path]] = {}
    for path in _anat_files(root, "derivatives/*/"):
        pipeline = root / "derivatives" / path.relative_to(root / "derivatives").parts[0]
        if is_mssoft_derivative(pipeline):
            continue  # mssoft's own predictions are no rater's masks
        parsed = _parse(path)
        if parsed is None:
            continue
        entities, suffix = parsed
        if suffix != "mask" or entities.get("label", "").lower() not in ("lesion", "lesions"):
            continue
        desc = _RATER.match(entities.get("desc", ""))
        rater = int(desc.group(1)) if desc else 1
        scan = found.setdefault(_scan_id(entities), {})
        if rater in scan:
            raise DataError(f"{path}: a second rater-{rater} lesion mask (first: {scan[rater]})")
        scan[rater] = path
    return found


def discover_bids(root: Path, *, label: str | int | None = None) -> list[ScanFiles]:
    """The scans (subject and session) of a BIDS dataset, sorted by scan id.

    Parameters
    ----------
    root : Path
        The BIDS root (holding ``sub-*`` folders).
    label : ignored
        BIDS lesion masks are binary (the argument of every layout reader,
        :class:`~mssoft.files.scan_files.ScanLayout`).

    Returns
    -------
    list of ScanFiles
        Images FLAIR first; masks from ``derivatives/*/`` as documented in the module.

    Raises
    ------
    DataError
        Two images of one modality or two masks of one rater for a scan, a session without a
        FLAIR image, or a lesion mask with no images.
    """
    images: dict[str, dict[str, Path]] = {}
    for path in _anat_files(root):
        parsed = _parse(path)
        if parsed is None or parsed[1] not in BIDS_SUFFIXES:
            continue
        entities, suffix = parsed
        scan_id = _scan_id(entities)
        modality = BIDS_SUFFIXES[suffix]
        scan = images.setdefault(scan_id, {})
        if modality in scan:
            raise DataError(
                f"{path}: a second {suffix} image for {scan_id} (first: {scan[modality]}); "
                "mssoft reads one image per modality: move the other out of DATA"
            )
        scan[modality] = path
    masks = _masks(root)
    orphans = sorted(set(masks) - set(images))
    if orphans:
        first = next(iter(masks[orphans[0]].values()))
        raise DataError(f"{first}: lesion mask without images ({orphans[0]} has no anat image)")
    scans = []
    for scan_id, found in sorted(images.items()):
        if "flair" not in found:
            folder = next(iter(found.values())).parent
            raise DataError(f"{folder}: {scan_id} has no *_FLAIR.nii[.gz] image")
        ordered = {m: found[m] for m in _ORDER if m in found}
        patient = scan_id.split("_ses-")[0]
        scans.append(
            ScanFiles(scan_id, patient, ordered, dict(sorted(masks.get(scan_id, {}).items())))
        )
    return scans


def is_mssoft_derivative(folder: Path) -> bool:
    """Whether ``folder`` is a derivative dataset written by mssoft (its ``GeneratedBy``)."""
    try:
        record = json.loads((folder / "dataset_description.json").read_text())
        return any(g.get("Name") == GENERATOR_NAME for g in record.get("GeneratedBy", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


#: The BIDS layout in the registry :data:`mssoft.files.scans.LAYOUTS`.
LAYOUT = ScanLayout(
    name="bids",
    description="BIDS dataset (sub-*/anat/)",
    detect=is_bids_dataset,
    discover=discover_bids,
)
