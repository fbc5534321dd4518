"""Training slices in memory: target source, lesion-slice loading and the train/validation split.

Per scan (:func:`load_scan_slices`): read the chosen modalities and the rater's binary mask
(:func:`mssoft.cases.load_scan`), z-score each modality over the brain
(:func:`mssoft.intensity.zscore_brain`), get the target (the rater's binary mask, a soft mask from
a ``build-masks`` folder, or a soft mask built on the fly: :class:`MaskSource`), cut both into
axial slices and keep only the slices where **the rater's binary mask** has a lesion voxel
(design.md §1.5). A soft ring can reach into a slice without rater lesion; such a slice is dropped
all the same, so the binary baseline and every soft-mask variant train on exactly the same slices.

Only the kept slices stay in memory (:class:`SliceSet`, one array per scan, no concatenated
copy). :func:`split_slices` draws the 80/20 train/validation split (by slice or by patient) from a
seed. Pure NumPy: :mod:`mssoft.data` turns a :class:`SliceSet` into ``tf.data`` pipelines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mssoft.build_masks import MaskConfig, read_soft_mask_folder, soft_mask_for_scan, soft_mask_path
from mssoft.cases import Scan, load_scan, patients_of
from mssoft.errors import ConfigError, DataError
from mssoft.intensity import zscore_brain
from mssoft.io import check_same_grid, read_header, read_volume
from mssoft.provenance import read_config
from mssoft.slices import lesion_slice_indices, to_axial_slices

__all__ = [
    "MaskSource",
    "SliceSet",
    "Split",
    "resolve_mask_source",
    "select_scans",
    "load_scan_slices",
    "load_slices",
    "split_slices",
]

logger = logging.getLogger(__name__)

MaskKind = Literal["binary", "folder", "computed"]


@dataclass(frozen=True)
class MaskSource:
    """Where the training targets come from.

    Attributes
    ----------
    kind : {"binary", "folder", "computed"}
        ``binary``: the rater's mask itself (the paper's baseline); ``folder``: soft masks written
        by ``mssoft build-masks``; ``computed``: soft masks built while loading, from ``config``.
    rater : int
        Whose binary mask defines the lesions (and the kept slices).
    folder : Path or None
        The ``build-masks`` output folder (``kind == "folder"``).
    config : MaskConfig or None
        How the soft masks were (or are) built; None for ``binary``.
    """

    kind: MaskKind = "binary"
    rater: int = 1
    folder: Path | None = None
    config: MaskConfig | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("binary", "folder", "computed"):
            raise ConfigError(
                f"Invalid mask source {self.kind!r}: expected binary, folder or computed"
            )
        if (self.kind == "folder") != (self.folder is not None):
            raise ConfigError("a `folder` mask source needs a folder, and only it")
        if (self.kind == "binary") != (self.config is None):
            raise ConfigError("a `binary` mask source has no MaskConfig; the others need one")
        if self.config is not None and self.config.rater != self.rater:
            raise ConfigError(
                f"mask source rater {self.rater} differs from MaskConfig rater {self.config.rater}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: ``{"source", "rater", "folder", "config"}``."""
        return {
            "source": self.kind,
            "rater": self.rater,
            "folder": str(self.folder) if self.folder is not None else None,
            "config": self.config.to_dict() if self.config is not None else None,
        }


def resolve_mask_source(
    *,
    masks: str | Path | None = None,
    mask_config: MaskConfig | None = None,
    rater: int | None = None,
) -> MaskSource:
    """Choose the training targets from the ``fit`` options.

    Parameters
    ----------
    masks : path-like, optional
        A ``build-masks`` output folder (its ``config.json`` gives the rater and the MaskConfig).
    mask_config : MaskConfig, optional
        Build soft masks on the fly; a binary one (``ratio == 1`` or ``gamma == 0``) means the
        rater's binary mask. Cannot be combined with ``masks``.
    rater : int, optional
        Whose mask; default 1, or the rater of ``masks`` / ``mask_config``, which it must match.

    Returns
    -------
    MaskSource

    Raises
    ------
    ConfigError
        ``masks`` combined with ``mask_config``, or a rater that contradicts them.
    DataError
        ``masks`` is not a ``build-masks`` output folder.
    """
    if masks is not None and mask_config is not None:
        raise ConfigError(
            "Invalid value for `--masks`: soft masks from a folder cannot be combined with "
            "--ratio/--gamma/--flair-threshold/--per-lesion (those build masks on the fly)"
        )
    if masks is not None:
        record = read_config(masks, command="build-masks")
        config = MaskConfig(**record["config"])
        if rater is not None and rater != config.rater:
            raise ConfigError(
                f"Invalid value for `--rater`: {rater}, but the soft masks in {masks} were "
                f"built from rater {config.rater}"
            )
        return MaskSource("folder", config.rater, Path(masks).resolve(), config)
    if mask_config is not None and rater is not None and rater != mask_config.rater:
        raise ConfigError(
            f"Invalid value for `--rater`: {rater} differs from the mask configuration's "
            f"rater {mask_config.rater}"
        )
    if mask_config is None or mask_config.is_binary:
        return MaskSource("binary", rater or (mask_config.rater if mask_config else 1))
    return MaskSource("computed", mask_config.rater, None, mask_config)


def select_scans(
    scans: Sequence[Scan], *, rater: int, patients: Sequence[str] | None = None
) -> list[Scan]:
    """The scans that can train: those with a mask of ``rater``, optionally of some patients only.

    Scans without any mask (e.g. the ISBI 2015 test scans) are left out silently (logged); scans
    that have masks but none of ``rater`` too, with a warning.

    Raises
    ------
    ConfigError
        A requested patient is unknown.
    DataError
        No scan is left.
    """
    if patients is not None:
        known = patients_of(scans)
        unknown = [p for p in patients if p not in known]
        if unknown:
            raise ConfigError(
                f"Invalid value for `--patients`: unknown patient(s) {', '.join(unknown)} "
                f"(known: {', '.join(known)})"
            )
        wanted = set(patients)
        scans = [s for s in scans if s.patient_id in wanted]
    unlabelled = [s.scan_id for s in scans if not s.masks]
    other_rater = [s.scan_id for s in scans if s.masks and rater not in s.masks]
    if unlabelled:
        logger.info(
            "%d scans without masks are not used for training: %s",
            len(unlabelled),
            ", ".join(unlabelled),
        )
    if other_rater:
        logger.warning(
            "%d scans have no mask of rater %d and are not used: %s",
            len(other_rater),
            rater,
            ", ".join(other_rater),
        )
    selected = [s for s in scans if rater in s.masks]
    if not selected:
        raise DataError(f"no scan has a mask of rater {rater}: nothing to train on")
    return selected


def _target(scan: Scan, loaded_mask: np.ndarray, meta: Any, source: MaskSource) -> np.ndarray:
    """The training target of one scan in RAS, float32 (X, Y, Z)."""
    if source.kind == "binary":
        return loaded_mask.astype(np.float32)
    if source.kind == "computed":
        assert source.config is not None
        soft, _, _ = soft_mask_for_scan(scan, source.config)
        return soft.astype(np.float32, copy=False)
    assert source.folder is not None
    path = soft_mask_path(source.folder, scan.scan_id)
    check_same_grid([meta, read_header(path)])
    soft, _ = read_volume(path, dtype=np.float32)
    if not np.all(np.isfinite(soft)) or soft.min() < 0.0 or soft.max() > 1.0:
        raise DataError(f"{path}: soft mask values must be finite and in [0, 1]")
    if not np.all(soft[loaded_mask] == 1.0):
        raise DataError(
            f"{path}: soft mask is not 1 on every lesion voxel of rater {source.rater}'s mask "
            f"{scan.mask_path(source.rater)}"
        )
    return soft


def load_scan_slices(
    scan: Scan, *, modalities: Sequence[str], source: MaskSource
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Z-scored image slices and target slices of one scan, lesion-free slices dropped.

    Parameters
    ----------
    scan : Scan
    modalities : sequence of str
        Channels, in order.
    source : MaskSource

    Returns
    -------
    images : ndarray of float32, shape (K, X, Y, C)
        Kept axial slices, each modality z-scored over the scan's brain voxels.
    targets : ndarray of float32, shape (K, X, Y, 1)
        Binary or soft mask of the same slices, values in [0, 1].
    kept : ndarray of int64, shape (K,)
        Axial index ``z`` of each kept slice (those where the rater's mask has a lesion voxel).
    n_slices : int
        Number of axial slices of the scan before filtering.

    Raises
    ------
    DataError
        Unreadable or inconsistent files (see :func:`mssoft.cases.load_scan`).
    """
    loaded = load_scan(scan, modalities=modalities, rater=source.rater)
    assert loaded.mask is not None
    kept = lesion_slice_indices(loaded.mask)
    target = _target(scan, loaded.mask, loaded.meta, source)
    image = zscore_brain(loaded.image)
    images = np.ascontiguousarray(to_axial_slices(image)[kept])
    targets = np.ascontiguousarray(to_axial_slices(target)[kept])
    return images, targets, kept.astype(np.int64), int(image.shape[2])


@dataclass
class SliceSet:
    """The kept slices of several scans, in memory, one array per scan.

    Attributes
    ----------
    images : list of ndarray of float32, shape (K_s, X, Y, C)
    targets : list of ndarray of float32, shape (K_s, X, Y, 1)
    slice_indices : list of ndarray of int64, shape (K_s,)
        Axial index ``z`` of each kept slice in its scan.
    scan_ids, patient_ids : list of str
        One per scan.
    n_slices : list of int
        Axial slices of each scan before the lesion-free ones were dropped.
    modalities : tuple of str
        Channel names, in order.
    source : MaskSource
        Where the targets came from.
    """

    images: list[np.ndarray]
    targets: list[np.ndarray]
    slice_indices: list[np.ndarray]
    scan_ids: list[str]
    patient_ids: list[str]
    n_slices: list[int]
    modalities: tuple[str, ...]
    source: MaskSource
    _rows: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rows = np.array(
            [(s, k) for s, kept in enumerate(self.slice_indices) for k in range(len(kept))],
            dtype=np.int64,
        ).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> np.ndarray:
        """``(N, 2)`` int64: slice ``i`` is ``images[rows[i, 0]][rows[i, 1]]``."""
        return self._rows

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(X, Y)`` of every slice."""
        height, width = self.images[0].shape[1:3]
        return int(height), int(width)

    @property
    def nbytes(self) -> int:
        """Memory held by the slices."""
        return sum(a.nbytes for a in self.images) + sum(a.nbytes for a in self.targets)

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stack the slices ``index`` (positions into :attr:`rows`).

        Returns
        -------
        images : ndarray of float32, shape (n, X, Y, C)
        targets : ndarray of float32, shape (n, X, Y, 1)
        """
        rows = self._rows[np.asarray(index, dtype=np.int64).reshape(-1)]
        images = np.stack([self.images[s][k] for s, k in rows])
        targets = np.stack([self.targets[s][k] for s, k in rows])
        return images, targets


def _pad_to(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pad = [(0, 0), (0, shape[0] - array.shape[1]), (0, shape[1] - array.shape[2]), (0, 0)]
    return np.pad(array, pad) if any(p[1] for p in pad) else array


def load_slices(
    scans: Sequence[Scan], *, modalities: Sequence[str], source: MaskSource
) -> SliceSet:
    """Load the kept slices of every scan (see :func:`load_scan_slices`).

    Scans whose slices differ in size are zero-padded at the end of each axis to the largest
    ``(X, Y)`` so that slices can be batched (0 is background for z-scored images and masks).

    Raises
    ------
    DataError
        A file is unreadable or inconsistent, a soft mask is missing from the ``build-masks``
        folder, or no scan has a lesion slice.
    """
    if source.kind == "folder":
        assert source.folder is not None
        read_soft_mask_folder(
            source.folder, scans
        )  # every soft mask exists, before any heavy loading
    images, targets, kept_all, n_slices = [], [], [], []
    for scan in scans:
        image, target, kept, n = load_scan_slices(scan, modalities=modalities, source=source)
        logger.info("%s: %d of %d axial slices have a lesion", scan.scan_id, len(kept), n)
        images.append(image)
        targets.append(target)
        kept_all.append(kept)
        n_slices.append(n)
    if not sum(len(k) for k in kept_all):
        raise DataError(
            f"no slice of the {len(scans)} training scans has a lesion of rater {source.rater}"
        )
    shape = (max(a.shape[1] for a in images), max(a.shape[2] for a in images))
    if any(a.shape[1:3] != shape for a in images):
        logger.info("slices of different sizes are zero-padded to %dx%d", *shape)
        images = [_pad_to(a, shape) for a in images]
        targets = [_pad_to(a, shape) for a in targets]
    slices = SliceSet(
        images,
        targets,
        kept_all,
        [s.scan_id for s in scans],
        [s.patient_id for s in scans],
        n_slices,
        tuple(modalities),
        source,
    )
    logger.info(
        "%d lesion slices of %d scans in memory (%.0f MB)",
        len(slices),
        len(scans),
        slices.nbytes / 2**20,
    )
    return slices


@dataclass(frozen=True)
class Split:
    """Positions (into :attr:`SliceSet.rows`) of the training and validation slices, sorted."""

    train: np.ndarray
    val: np.ndarray
    by: str

    def record(self, slices: SliceSet) -> dict[str, Any]:
        """JSON-ready description: scans, patients and axial indices of each part.

        Returns
        -------
        dict
            ``train_scans``, ``val_scans`` (scan ids with at least one slice in the part, in scan
            order), ``train_patients``, ``val_patients``, ``train_slices``, ``val_slices`` (counts)
            and ``slices``: ``{scan_id: {"train": [z, ...], "val": [z, ...]}}``.
        """
        parts: dict[str, dict[str, list[int]]] = {
            sid: {"train": [], "val": []} for sid in slices.scan_ids
        }
        for name, positions in (("train", self.train), ("val", self.val)):
            for s, k in slices.rows[positions]:
                parts[slices.scan_ids[s]][name].append(int(slices.slice_indices[s][k]))
        out: dict[str, Any] = {}
        for name in ("train", "val"):
            scan_pos = [i for i, sid in enumerate(slices.scan_ids) if parts[sid][name]]
            out[f"{name}_scans"] = [slices.scan_ids[i] for i in scan_pos]
            out[f"{name}_patients"] = list(dict.fromkeys(slices.patient_ids[i] for i in scan_pos))
            out[f"{name}_slices"] = int(len(getattr(self, name)))
        out["slices"] = parts
        return out


def split_slices(
    slices: SliceSet, *, val_fraction: float = 0.2, by: str = "slices", seed: int = 0
) -> Split:
    """Split the kept slices into training and validation parts.

    Parameters
    ----------
    slices : SliceSet
    val_fraction : float
        In [0, 1). ``by="slices"``: ``round(val_fraction * N)`` slices drawn at random (at least
        1 when ``val_fraction > 0`` and N >= 2). ``by="patients"``: ``round(val_fraction * P)``
        of the P patients (at least 1, at most P - 1) with all their slices.
    by : {"slices", "patients"}
        ``slices`` follows the paper (slices of one scan land on both sides); ``patients`` keeps
        every scan of a patient on one side.
    seed : int
        Seed of the draw.

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        Bad ``val_fraction`` or ``by``, or ``by="patients"`` with a single patient.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(
            f"Invalid value for `--val-fraction`. Expected a float in [0, 1). "
            f"Received: {val_fraction}"
        )
    rng = np.random.default_rng(seed)
    n = len(slices)
    if by == "slices":
        n_val = 0 if val_fraction == 0 or n < 2 else min(max(1, round(val_fraction * n)), n - 1)
        order = rng.permutation(n)
        val, train = order[:n_val], order[n_val:]
    elif by == "patients":
        patients = list(dict.fromkeys(slices.patient_ids))
        if val_fraction == 0:
            val_patients: set[str] = set()
        elif len(patients) < 2:
            raise ConfigError(
                f"Invalid value for `--split`: 'patients' needs at least 2 patients, "
                f"found {len(patients)} ({patients[0]}); use --split slices"
            )
        else:
            n_val = min(max(1, round(val_fraction * len(patients))), len(patients) - 1)
            val_patients = {patients[i] for i in rng.permutation(len(patients))[:n_val]}
        in_val = np.array(
            [slices.patient_ids[s] in val_patients for s in slices.rows[:, 0]], dtype=bool
        )
        val, train = np.flatnonzero(in_val), np.flatnonzero(~in_val)
    else:
        raise ConfigError(
            f"Invalid value for `--split`. Expected 'slices' or 'patients'. Received: {by!r}"
        )
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64), by)
