"""What a scan on disk is: :class:`Scan`, modality names, and how a rater mask file is coded.

Shared by every data layout (:mod:`mssoft.files.scans` for ISBI 2015 and CSV manifests,
:mod:`mssoft.files.nnunet_layout`, :mod:`mssoft.files.bids_layout`), so that the layout modules
do not import the dispatcher that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mssoft.errors import DataError

__all__ = ["Scan", "LabelMap", "normalise_modality", "MODALITY_ALIASES"]

#: Other names of a modality (lower case) -> mssoft's canonical name.
MODALITY_ALIASES = {
    "mprage": "t1",
    "t1w": "t1",
    "t2w": "t2",
    "pdw": "pd",
    "t2flair": "flair",
}


def normalise_modality(name: str) -> str:
    """Canonical lower-case modality name (``mprage`` and ``t1w`` become ``t1``)."""
    key = name.strip().lower()
    return MODALITY_ALIASES.get(key, key)


@dataclass(frozen=True)
class LabelMap:
    """How to read rater masks stored as integer label maps (nnU-Net's ``labelsTr``).

    Attributes
    ----------
    foreground : tuple of int
        Voxel values that count as lesion (all others are background).
    known : tuple of int or None
        Every value a file may hold (0 included); another value is an error naming the file.
        None accepts any integer.
    source : str
        Where the coding comes from (e.g. the ``dataset.json`` path), for messages.
    """

    foreground: tuple[int, ...]
    known: tuple[int, ...] | None = None
    source: str = ""


@dataclass(frozen=True)
class Scan:
    """One scan (time point) on disk.

    Attributes
    ----------
    scan_id : str
        Unique name, used for output file names (``<scan_id>_softmask.nii.gz``).
    patient_id : str
        Patient the scan belongs to; all scans of a patient stay in one fold.
    images : dict of str to Path
        Modality name (``flair``, ``t1``, ...) to image file, FLAIR first.
    masks : dict of int to Path
        Rater number (1, 2, ...) to lesion mask file.
    label_map : LabelMap or None
        None: the mask files are binary (0 and 1). Otherwise they are label maps, read to a
        binary mask by this coding.
    """

    scan_id: str
    patient_id: str
    images: dict[str, Path]
    masks: dict[int, Path] = field(default_factory=dict)
    label_map: LabelMap | None = None

    def mask_path(self, rater: int) -> Path:
        """The mask of ``rater``; :class:`DataError` naming the scan if it has none."""
        if rater not in self.masks:
            have = ", ".join(str(r) for r in sorted(self.masks)) or "none"
            raise DataError(
                f"scan {self.scan_id} ({self.images['flair'].parent}): no mask for rater {rater} "
                f"(raters available: {have})"
            )
        return self.masks[rater]

    def files(self) -> list[Path]:
        """Every file of the scan, images first."""
        return list(self.images.values()) + [self.masks[r] for r in sorted(self.masks)]
