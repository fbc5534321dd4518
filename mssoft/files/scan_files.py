"""Plain records of what a data-layout reader found on disk (no file is read here).

Layout readers (:mod:`mssoft.files.nnunet_layout`, :mod:`mssoft.files.bids_layout`) return
:class:`ScanFiles`; the dispatcher :func:`mssoft.files.scans.discover_scans` turns them into
:class:`~mssoft.files.scans.Scan`. :class:`LabelMap` says how a rater mask file is coded when it
is a label map rather than a binary mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LabelMap", "ScanFiles"]


@dataclass(frozen=True)
class LabelMap:
    """How to read rater masks stored as integer label maps (nnU-Net's ``labelsTr``).

    Attributes
    ----------
    foreground : tuple of int
        Voxel values that count as lesion (every other value is background).
    known : tuple of int
        Every value a file may hold (0 included); another value is an error naming the file.
    source : str
        Where the coding comes from (e.g. the ``dataset.json`` path), for messages.
    """

    foreground: tuple[int, ...]
    known: tuple[int, ...]
    source: str = ""


@dataclass(frozen=True)
class ScanFiles:
    """The files of one scan as a layout reader found them.

    Attributes
    ----------
    scan_id, patient_id : str
    images : dict of str to Path
        Canonical modality name (``flair``, ``t1``, ``t2``, ``pd``) to image, FLAIR first.
    masks : dict of int to Path
        Rater number to mask file.
    label_map : LabelMap or None
        Coding of the mask files (None: binary files).
    """

    scan_id: str
    patient_id: str
    images: dict[str, Path]
    masks: dict[int, Path] = field(default_factory=dict)
    label_map: LabelMap | None = None
