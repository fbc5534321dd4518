"""Finding scans on disk: ISBI 2015, nnU-Net v2 raw or BIDS layouts (detected automatically), or a
CSV manifest. This module dispatches over the registry :data:`LAYOUTS`; each layout is read by
its own module (:mod:`mssoft.files.isbi_layout`, :mod:`mssoft.files.nnunet_layout`,
:mod:`mssoft.files.bids_layout`, :mod:`mssoft.files.manifest_layout`), and a new layout is a
module with a :class:`~mssoft.files.scan_files.ScanLayout` and one entry in :data:`LAYOUTS`.

A *scan* is one time point of one patient: co-registered modality images plus zero or more rater
masks. Discovery only lists files and checks they exist; :func:`check_scan` reads the headers and
checks that all files of a scan share one grid, and :func:`load_scan` reads the voxels.

The layouts are described in their modules; :func:`discover_scans` names them all when none
matches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mssoft.errors import ConfigError, DataError
from mssoft.files import bids_layout, isbi_layout, manifest_layout, nnunet_layout
from mssoft.files.memo import active_memo, file_stamps, memo_key
from mssoft.files.nifti import VolumeMeta, check_same_grid, read_header, read_volume
from mssoft.files.scan_files import LabelMap, ScanFiles, ScanLayout, normalise_modality
from mssoft.files.nnunet_layout import discover_nnunet_images, is_nnunet_images_folder

__all__ = [
    "Scan",
    "data_kind",
    "discover_run_scans",
    "LabelMap",
    "LoadedScan",
    "LAYOUTS",
    "discover_scans",
    "normalise_modality",
    "resolve_modalities",
    "check_scan",
    "check_image",
    "load_scan",
    "patients_of",
    "raters_of",
    "read_mask",
    "binary_mask",
    "select_scans",
]

logger = logging.getLogger(__name__)

#: The data layouts, in the order :func:`discover_scans` tries them: the first whose ``detect``
#: accepts the path reads it. A new layout is one module and one entry here.
LAYOUTS: tuple[ScanLayout, ...] = (
    manifest_layout.LAYOUT,
    nnunet_layout.LAYOUT,
    isbi_layout.LAYOUT,
    bids_layout.LAYOUT,
)


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
        None: the mask files are binary (0 and 1). Otherwise they are label maps (nnU-Net's
        ``labelsTr``), read to a binary mask by this coding.
    """

    scan_id: str
    patient_id: str
    images: dict[str, Path]
    masks: dict[int, Path] = field(default_factory=dict)
    label_map: LabelMap | None = None

    @classmethod
    def from_files(cls, found: ScanFiles) -> Scan:
        """The scan a layout reader found (:class:`~mssoft.files.scan_files.ScanFiles`)."""
        return cls(found.scan_id, found.patient_id, found.images, found.masks, found.label_map)

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


@dataclass
class LoadedScan:
    """A scan's voxels in canonical RAS orientation.

    Attributes
    ----------
    scan : Scan
        Where the data came from.
    image : ndarray of float32, shape (X, Y, Z, C)
        Raw (not normalised) intensities, one channel per modality in ``modalities`` order.
    modalities : tuple of str
        Channel names.
    mask : ndarray of bool, shape (X, Y, Z), or None
        The requested rater's binary mask.
    meta : VolumeMeta
        Grid of the scan (from its FLAIR file), for writing outputs back.
    """

    scan: Scan
    image: np.ndarray
    modalities: tuple[str, ...]
    mask: np.ndarray | None
    meta: VolumeMeta


def discover_scans(data: str | Path, *, label: str | int | None = None) -> list[Scan]:
    """List the scans of a data folder (ISBI 2015, nnU-Net v2 raw, BIDS) or a CSV manifest.

    Parameters
    ----------
    data : path-like
        A folder in the ISBI 2015 layout (patient folders directly below it, or one level deeper
        as in the challenge's ``training/trainingNN``), an nnU-Net v2 raw dataset
        (:mod:`mssoft.files.nnunet_layout`), a BIDS dataset with lesion masks in its derivatives
        (:mod:`mssoft.files.bids_layout`), or a ``.csv`` manifest.
    label : str or int, optional
        nnU-Net datasets only: the entry of ``labels`` that is the lesion (default: every label
        above 0).

    Returns
    -------
    list of Scan
        Sorted by scan id (ISBI) or in manifest order.

    Raises
    ------
    DataError
        ``data`` does not exist, is neither layout, or lists missing files.
    """
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such file or folder")
    layout = next((lay for lay in LAYOUTS if lay.detect(data)), None)
    if layout is None and data.is_file():
        raise DataError(f"{data}: expected an ISBI 2015 data folder or a .csv manifest")
    if layout is None:
        folders = [lay.description for lay in LAYOUTS if not lay.is_file]
        raise DataError(
            f"{data}: no {', '.join(folders[:-1])} nor {folders[-1]} found; "
            "give a CSV manifest for other layouts"
        )
    scans = [Scan.from_files(f) for f in layout.discover(data, label=label)]
    if not scans:
        raise DataError(f"{data}: no scans found")
    logger.info("found %d scans (%d patients) in %s", len(scans), len(patients_of(scans)), data)
    return scans


def discover_run_scans(data: str | Path, modalities: Sequence[str]) -> list[Scan]:
    """:func:`discover_scans`, or for a bare nnU-Net images folder its cases with channel ``i``
    as ``modalities[i]`` (the channel order of the run that reads them)."""
    if data_kind(data) == "nnunet_images":
        scans = [Scan.from_files(f) for f in discover_nnunet_images(Path(data), list(modalities))]
        logger.info("found %d cases in %s (channels: %s)", len(scans), data, ", ".join(modalities))
        return scans
    return discover_scans(data)


def data_kind(data: str | Path) -> str:
    """The layout of ``data``, as :func:`discover_scans` would read it.

    Returns
    -------
    str
        ``"manifest"``, ``"nnunet"`` (a dataset with ``dataset.json``), ``"isbi"``, ``"bids"``,
        ``"nnunet_images"`` (a bare folder of ``<case>_XXXX.nii.gz`` files, which only a run's
        modalities can map to channels) or ``"unknown"``.
    """
    data = Path(data)
    if not data.exists():
        return "unknown"
    layout = next((lay for lay in LAYOUTS if lay.detect(data)), None)
    if layout is not None:
        return layout.name
    if is_nnunet_images_folder(data):
        return "nnunet_images"
    return "unknown"


def patients_of(scans: Sequence[Scan]) -> list[str]:
    """Patient ids in order of first appearance."""
    return list(dict.fromkeys(s.patient_id for s in scans))


def raters_of(scans: Sequence[Scan]) -> list[int]:
    """Raters that every scan has a mask for."""
    if not scans:
        return []
    common = set(scans[0].masks)
    for scan in scans[1:]:
        common &= set(scan.masks)
    return sorted(common)


def resolve_modalities(
    scans: Sequence[Scan], requested: Sequence[str] | str | None = None
) -> tuple[str, ...]:
    """The modalities a model uses.

    Parameters
    ----------
    scans : sequence of Scan
        Scans that must all provide the modalities.
    requested : sequence of str, comma-separated str, or None
        Names (aliases such as ``mprage`` accepted). None means every modality that every scan
        has, FLAIR first.

    Returns
    -------
    tuple of str
        Canonical names, in the requested order (FLAIR first when not requested).

    Raises
    ------
    ConfigError
        A requested modality is unknown or missing from a scan (the error names the scan).
    """
    if isinstance(requested, str):
        requested = [r for r in requested.split(",") if r.strip()]
    if requested:
        names = tuple(normalise_modality(r) for r in requested)
        if len(set(names)) != len(names):
            raise ConfigError(
                f"Invalid value for `--modalities`: duplicate names in {','.join(requested)}"
            )
        for scan in scans:
            missing = [m for m in names if m not in scan.images]
            if missing:
                raise ConfigError(
                    f"Invalid value for `--modalities`: scan {scan.scan_id} has no "
                    f"{', '.join(missing)} "
                    f"(it has {', '.join(scan.images)})"
                )
        return names
    common = list(scans[0].images)
    for scan in scans[1:]:
        common = [m for m in common if m in scan.images]
    return tuple(common)


def check_scan(
    scan: Scan, *, modalities: Sequence[str] | None = None, rater: int | None = None
) -> VolumeMeta:
    """Read the headers of a scan's files and check they share one 3D grid.

    Parameters
    ----------
    scan : Scan
        The scan.
    modalities : sequence of str, optional
        Images to check (default: all).
    rater : int, optional
        Also require and check this rater's mask.

    Returns
    -------
    VolumeMeta
        The FLAIR image's header.

    Raises
    ------
    DataError
        A file is unreadable or not 3D, or its shape or affine differs from the FLAIR image's
        (the message names both files); the rater's mask is missing.
    """
    names = list(modalities) if modalities is not None else list(scan.images)
    if "flair" not in names:
        names = ["flair", *names]
    paths = [scan.images[m] for m in names]
    if rater is not None:
        paths.append(scan.mask_path(rater))
    metas = [read_header(p) for p in paths]
    check_same_grid(metas)
    return metas[0]


def load_scan(
    scan: Scan, *, modalities: Sequence[str] | None = None, rater: int | None = None
) -> LoadedScan:
    """Read a scan's images (and one rater's mask) in RAS orientation.

    Parameters
    ----------
    scan : Scan
        The scan.
    modalities : sequence of str, optional
        Channels, in order (default: all of the scan's, FLAIR first).
    rater : int, optional
        Read this rater's binary mask too.

    Returns
    -------
    LoadedScan

    Raises
    ------
    DataError
        As :func:`check_scan`; also an image without a finite non-zero voxel
        (:func:`check_image`), or a mask that is all NaN or not binary (values other than 0 and 1).
    """
    names = tuple(modalities) if modalities is not None else tuple(scan.images)
    memo = active_memo()
    if memo is not None:  # inside keep_in_memory: read each scan once (mssoft.files.memo)
        files = [scan.images[n] for n in names if n in scan.images]
        if rater is not None and rater in scan.masks:
            files.append(scan.mask_path(rater))
        key = memo_key(
            "scan", scan=scan.scan_id, files=file_stamps(files), modalities=names, rater=rater
        )
        return memo.get_or_make(key, lambda: _read_scan(scan, names, rater))
    return _read_scan(scan, names, rater)


def _read_scan(scan: Scan, names: tuple[str, ...], rater: int | None) -> LoadedScan:
    """:func:`load_scan` without the memo."""
    meta = check_scan(scan, modalities=names, rater=rater)
    channels = []
    for name in names:
        array, _ = read_volume(scan.images[name])
        check_image(array, scan.images[name])
        channels.append(np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0))
    image = np.stack(channels, axis=-1)
    mask = None
    if rater is not None:
        mask = read_mask(scan.mask_path(rater), scan.label_map)
    return LoadedScan(scan=scan, image=image, modalities=names, mask=mask, meta=meta)


def check_image(array: np.ndarray, path: str | Path) -> None:
    """Refuse an image no command can use: one without a finite non-zero voxel.

    Every command applies this check to every image it reads (``build-masks`` to the FLAIR,
    ``fit``, ``calibrate`` and ``predict`` to each modality), so one file is accepted or refused
    alike everywhere. Non-zero finite voxels are the brain (z-scoring, FLAIR percentiles).

    Parameters
    ----------
    array : ndarray of shape (X, Y, Z)
        Voxel values as read.
    path : path-like
        The file, named in the error message.

    Raises
    ------
    DataError
        The image has no finite voxel, or no non-zero finite voxel. (Infinite and absurd
        values are refused when the file is read: :func:`mssoft.files.nifti.read_volume`.)
    """
    finite = np.isfinite(array)
    if not finite.any():
        raise DataError(f"{path}: image has no finite voxel")
    if not np.any(array[finite] != 0):
        raise DataError(f"{path}: image has no non-zero voxel (an empty image)")


def read_mask(path: Path, label_map: LabelMap | None = None) -> np.ndarray:
    """Read a rater mask as a bool RAS array: a binary file, or a label map coded by ``label_map``.

    Parameters
    ----------
    path : Path
        The mask file.
    label_map : LabelMap, optional
        None: the file must be binary: 0 and 1, or 0 and one other positive value (e.g.
        0/255, read as binary with an info log line). Otherwise the file is an integer label
        map and its ``label_map.foreground`` values are the lesion. A NaN voxel is an error.

    Raises
    ------
    DataError
        The mask holds a NaN, is not binary (without ``label_map``), or holds a value that is not an
        integer or not one of ``label_map.known``.
    """
    array, _ = read_volume(path, dtype=np.float32)
    return binary_mask(array, path, label_map)


def binary_mask(
    array: np.ndarray, path: str | Path, label_map: LabelMap | None = None
) -> np.ndarray:
    """Check a mask's voxel values and return the lesion as bool.

    Parameters
    ----------
    array : ndarray of shape (X, Y, Z)
        Voxel values as read.
    path : path-like
        The file, named in the error message.
    label_map : LabelMap, optional
        None: values must be 0 and 1, or 0 and one positive value k (read as lesion, with an
        info log line); NaN is refused. Otherwise integer labels, the lesion
        being the voxels whose value is in ``label_map.foreground``.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)

    Raises
    ------
    DataError
        The mask holds a NaN or values it may not hold (the message shows them).
    """
    finite = np.isfinite(array)
    if not finite.all():
        raise DataError(
            f"{path}: mask holds {int(np.count_nonzero(~finite))} NaN or infinite voxel(s); "
            "a mask must be 0 and 1"
        )
    values = np.unique(array)
    if label_map is None:
        if values.size == 2 and values[0] == 0 and values[1] != 1:  # {0, k}, k > 0
            logger.info(
                "%s: mask stored as %s; read as binary (%g = lesion)",
                path,
                "/".join(f"{v:g}" for v in values),
                values.max(),
            )
            return array > 0
        bad = values[~np.isin(values, (0.0, 1.0))]
        if bad.size:
            raise DataError(f"{path}: mask is not binary (values {_values(values)})")
        return array > 0.5
    allowed = label_map.known
    bad = values[(values != np.round(values)) | ~np.isin(values, allowed)]
    if bad.size:
        where = f" {label_map.source}" if label_map.source else ""
        raise DataError(
            f"{path}: label map holds values {_values(bad)} that are not labels of{where} "
            f"(labels {', '.join(str(v) for v in allowed)})"
        )
    return finite & np.isin(array, np.asarray(label_map.foreground, dtype=array.dtype))


def _values(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:6])
    return shown + (", ..." if values.size > 6 else "")


def select_scans(
    scans: Sequence[Scan], ids: str | Sequence[str] | None, *, source: str = "DATA"
) -> list[Scan]:
    """The scans named by ``ids`` (in that order), or all of ``scans`` when ``ids`` is None.

    Parameters
    ----------
    scans : sequence of Scan
    ids : str, sequence of str, or None
        Scan ids, or one comma-separated string of them (``--scans a,b``).
    source : str
        Where ``scans`` came from, for the error message.

    Raises
    ------
    DataError
        Some ids are not scans of ``source`` (all of them are named), or ``ids`` is empty.
    """
    if ids is None:
        return list(scans)
    if isinstance(ids, str):
        ids = [i.strip() for i in ids.split(",") if i.strip()]
    if not ids:
        raise DataError(f"{source}: empty list of scans to use")
    by_id = {s.scan_id: s for s in scans}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DataError(
            f"{source}: no scan {', '.join(missing)} (scans found: {_preview(list(by_id))})"
        )
    return [by_id[i] for i in dict.fromkeys(ids)]


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
