"""Plain records of what a data-layout reader found on disk (no file is read here).

A data layout is a :class:`ScanLayout`: how to recognise it and its reader. Readers
(:mod:`mssoft.files.isbi_layout`, :mod:`mssoft.files.nnunet_layout`,
:mod:`mssoft.files.bids_layout`, :mod:`mssoft.files.manifest_layout`) return :class:`ScanFiles`;
the dispatcher :func:`mssoft.files.scans.discover_scans` tries the layouts of its registry
:data:`mssoft.files.scans.LAYOUTS` in order and turns what the first one finds into
:class:`~mssoft.files.scans.Scan`. :class:`LabelMap` says how a rater mask file is coded when it
is a label map rather than a binary mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LabelMap", "ScanFiles", "ScanLayout", "normalise_modality"]

_ALIASES = {"mprage": "t1", "t1w": "t1", "t2w": "t2", "pdw": "pd", "t2flair": "flair"}


def normalise_modality(name: str) -> str:
    """Canonical lower-case modality name (``mprage`` and ``t1w`` become ``t1``)."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


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


@dataclass(frozen=True)
class ScanLayout:
    """A data layout: how to recognise it and how to read it.

    Attributes
    ----------
    name : str
        Short name (``isbi``, ``nnunet``, ...).
    description : str
        What it looks like, for the error naming every layout when none matches (e.g.
        ``"BIDS dataset (sub-*/anat/)"``).
    detect : callable
        ``detect(path) -> bool``: whether ``path`` (a folder, or a file for ``is_file``
        layouts) is in this layout; cheap, reads no image.
    discover : callable
        ``discover(path, *, label=None) -> list[ScanFiles]``: the scans. ``label`` is the entry
        of a label-map mask that is the lesion (``--label``); layouts with binary masks ignore
        it. Raises :class:`mssoft.errors.DataError` naming the file at fault.
    is_file : bool
        The layout is one file (a manifest) rather than a folder.
    """

    name: str
    description: str
    detect: Callable[[Path], bool]
    discover: Callable[..., list[ScanFiles]]
    is_file: bool = False
