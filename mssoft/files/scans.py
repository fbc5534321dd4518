"""Finding scans on disk: ISBI 2015, nnU-Net v2 raw or BIDS layouts (detected automatically), or a
CSV manifest. This module dispatches; the nnU-Net and BIDS layouts are read by
:mod:`mssoft.files.nnunet_layout` and :mod:`mssoft.files.bids_layout`.

A *scan* is one time point of one patient: co-registered modality images plus zero or more rater
masks. Discovery only lists files and checks they exist; :func:`check_scan` reads the headers and
checks that all files of a scan share one grid, and :func:`load_scan` reads the voxels.

ISBI 2015 layout under a data root::

    trainingNN/preprocessed/trainingNN_TT_{flair,mprage,t2,pd}_pp.nii[.gz]
    trainingNN/masks/trainingNN_TT_mask{1,2}.nii[.gz]
    testNN/preprocessed/testNN_TT_{flair,mprage,t2,pd}_pp.nii[.gz]        (no masks)

The scan id is ``trainingNN_TT`` and the patient id ``trainingNN``. ISBI's ``mprage`` is the T1
modality and is called ``t1`` throughout mssoft (``mprage`` is accepted as an alias).

CSV manifest: columns ``scan``, ``patient`` (optional; defaults to the scan id), one column per
modality (``flair`` required, any others such as ``t1``, ``t2``, ``pd``) and ``mask1``, ``mask2``,
... (optional). Relative paths are relative to the manifest's folder. Empty cells mean "absent".
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mssoft.errors import ConfigError, DataError
from mssoft.files.bids_layout import discover_bids, is_bids_dataset
from mssoft.files.memo import active_memo, file_stamps, memo_key
from mssoft.files.nifti import VolumeMeta, check_same_grid, read_header, read_volume
from mssoft.files.nnunet_layout import discover_nnunet, is_nnunet_dataset
from mssoft.files.scan_files import LabelMap, ScanFiles

__all__ = [
    "Scan",
    "LabelMap",
    "LoadedScan",
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

_ISBI_IMAGE = re.compile(
    r"^(?P<patient>(?:training|test)\d+)_(?P<tp>\d+)_(?P<mod>flair|mprage|t2|pd)_pp\.nii(?:\.gz)?$"
)
_ISBI_MASK = re.compile(r"^(?P<patient>training\d+)_(?P<tp>\d+)_mask(?P<rater>\d+)\.nii(?:\.gz)?$")
_MASK_COLUMN = re.compile(r"^mask(\d+)$")
_ALIASES = {"mprage": "t1", "t1w": "t1", "t2w": "t2", "pdw": "pd", "t2flair": "flair"}
_ISBI_ORDER = ("flair", "t1", "t2", "pd")


def normalise_modality(name: str) -> str:
    """Canonical lower-case modality name (``mprage`` and ``t1w`` become ``t1``)."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


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


def _isbi_depth(root: Path) -> str | None:
    """Glob prefix of the patient folders: ``*`` or ``*/*`` (e.g. ``training/training01``)."""
    for prefix in ("*", "*/*"):
        if any(root.glob(f"{prefix}/preprocessed/*_pp.nii*")):
            return prefix
    return None


def _discover_isbi(root: Path, prefix: str) -> list[Scan]:
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
            Scan(scan_id, patients[scan_id], ordered, dict(sorted(masks.get(scan_id, {}).items())))
        )
    return scans


def _discover_manifest(manifest: Path) -> list[Scan]:
    base = manifest.parent
    try:
        # utf-8-sig: also reads the byte-order mark of Excel's "CSV UTF-8"
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: cannot read CSV manifest ({exc})") from None
    if not rows:
        raise DataError(f"{manifest}: manifest has no rows")
    columns = [c.strip().lower() for c in rows[0].keys() if c is not None]
    for required in ("scan", "flair"):
        if required not in columns:
            raise DataError(
                f"{manifest}: manifest has no '{required}' column (columns: {', '.join(columns)})"
            )
    scans: list[Scan] = []
    seen: set[str] = set()
    for line, raw in enumerate(rows, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        scan_id = row["scan"]
        if not scan_id:
            raise DataError(f"{manifest}:{line}: empty 'scan' value")
        if scan_id in seen:
            raise DataError(f"{manifest}:{line}: duplicate scan '{scan_id}'")
        seen.add(scan_id)
        images: dict[str, Path] = {}
        masks: dict[int, Path] = {}
        for column, value in row.items():
            if column in ("scan", "patient") or not value:
                continue
            path = Path(value) if Path(value).is_absolute() else base / value
            if not path.is_file():
                raise DataError(f"{manifest}:{line}: {column} file not found: {path}")
            mask_match = _MASK_COLUMN.match(column)
            if mask_match:
                masks[int(mask_match.group(1))] = path
            else:
                modality = normalise_modality(column)
                if modality in images:
                    raise DataError(f"{manifest}:{line}: two columns name modality {modality}")
                images[modality] = path
        if "flair" not in images:
            raise DataError(f"{manifest}:{line}: scan '{scan_id}' has no flair file")
        ordered = {"flair": images.pop("flair"), **images}
        scans.append(
            Scan(scan_id, row.get("patient") or scan_id, ordered, dict(sorted(masks.items())))
        )
    return scans


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
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"{data}: expected an ISBI 2015 data folder or a .csv manifest")
        scans = _discover_manifest(data)
    elif is_nnunet_dataset(data):
        scans = [Scan.from_files(f) for f in discover_nnunet(data, label=label)]
    elif (prefix := _isbi_depth(data)) is not None:
        scans = _discover_isbi(data, prefix)
    elif is_bids_dataset(data):
        scans = [Scan.from_files(f) for f in discover_bids(data)]
    else:
        raise DataError(
            f"{data}: no ISBI 2015 layout (*/preprocessed/*_pp.nii[.gz]), nnU-Net dataset "
            "(dataset.json with imagesTr/ or imagesTs/) nor BIDS dataset (sub-*/anat/) found; "
            "give a CSV manifest for other layouts"
        )
    if not scans:
        raise DataError(f"{data}: no scans found")
    logger.info("found %d scans (%d patients) in %s", len(scans), len(patients_of(scans)), data)
    return scans


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
        The image has no finite voxel, or no non-zero finite voxel.
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
        None: the file must be binary (0 and 1; NaN counts as 0). Otherwise the file is an
        integer label map and its ``label_map.foreground`` values are the lesion.

    Raises
    ------
    DataError
        The mask is all NaN, not binary (without ``label_map``), or holds a value that is not an
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
        None: values must be 0 and 1 (NaN counts as 0). Otherwise integer labels, the lesion
        being the voxels whose value is in ``label_map.foreground``.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)

    Raises
    ------
    DataError
        The mask is all NaN or holds values it may not hold (the message shows them).
    """
    finite = np.isfinite(array)
    if not finite.any():
        raise DataError(f"{path}: mask is all NaN")
    values = np.unique(array[finite])
    if label_map is None:
        bad = values[~np.isin(values, (0.0, 1.0))]
        if bad.size:
            raise DataError(f"{path}: mask is not binary (values {_values(values)})")
        return np.where(finite, array, 0.0) > 0.5
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
