"""Training slices: target source, lesion-slice loading, where the slices live, and the split.

Per scan (:func:`load_scan_slices`): read the chosen modalities and the rater's binary mask
(:func:`mssoft.files.scans.load_scan`), normalise each modality over the brain (a
:class:`mssoft.arrays.intensity.Normaliser`, z-score by default; :func:`learn_normaliser` learns
histogram landmarks on the training scans), get the target (the rater's binary mask, a soft mask
from a ``build-masks`` folder, or a soft mask built on the fly: :class:`MaskSource`), cut both
into axial slices and keep only the slices where **the rater's binary mask** has a lesion voxel
(docs/design.md §4); with several raters (``MaskConfig.raters``), where any of them has one. A
soft ring can reach into a slice without rater lesion; such a slice is dropped all the same, so
the binary baseline and every soft-mask variant train on exactly the same slices.

The kept slices live (:class:`mssoft.arrays.slices.SliceSet`, one array per scan, no
concatenated copy) in memory, or in an on-disk slice cache (:mod:`mssoft.files.slice_cache`;
:func:`slice_storage` states the rule that chooses).
:func:`mssoft.arrays.slices.split_slices` draws the 80/20 train/validation split (by slice or by
patient) from a seed, and :mod:`mssoft.nn.dataset` turns a :class:`SliceSet` into ``tf.data``
pipelines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mssoft.arrays.intensity import Normaliser, learn_landmarks, scan_landmarks
from mssoft.arrays.slices import (
    SliceSet,
    lesion_slice_indices,
    to_axial_slices,
)
from mssoft.choices import SLICE_CACHES
from mssoft.errors import ConfigError, DataError
from mssoft.files.folders import read_config, soft_mask_files
from mssoft.files.layout import CONFIG_NAME, soft_mask_path
from mssoft.files.memo import active_memo, memo_key
from mssoft.files.nifti import check_same_grid, read_header, read_volume
from mssoft.files.scans import LoadedScan, Scan, check_scan, load_scan, patients_of, read_mask
from mssoft.files.slice_cache import read_cached_slices, scan_cache_key, write_cached_slices
from mssoft.workflows.settings import MaskConfig

__all__ = [
    "MaskSource",
    "resolve_mask_source",
    "training_scans",
    "load_scan_slices",
    "load_slices",
    "learn_normaliser",
    "MEMORY_SHARE",
    "available_memory_bytes",
    "slice_storage",
]

logger = logging.getLogger(__name__)

MaskKind = Literal["binary", "folder", "computed"]

#: ``--slice-cache auto`` keeps the slices in memory when every axial slice of the training scans
#: (an upper bound of the kept ones) takes at most this share of the available memory.
MEMORY_SHARE = 0.5


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

    @property
    def raters(self) -> tuple[int, ...]:
        """Every rater whose mask makes the target (and chooses the kept slices)."""
        return self.config.all_raters if self.config is not None else (self.rater,)

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
        try:
            config = MaskConfig(**record["config"])
        except (KeyError, TypeError, ConfigError) as exc:  # a record edited by hand
            raise DataError(
                f"{Path(masks) / CONFIG_NAME}: not a valid soft-mask record ({exc})"
            ) from None

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


def training_scans(
    scans: Sequence[Scan],
    *,
    rater: int,
    patients: Sequence[str] | None = None,
    raters: Sequence[int] = (),
) -> list[Scan]:
    """The scans that can train: those with a mask of ``rater``, optionally of some patients only.

    With ``raters``, a scan needs a mask of every one of them (a warning names the others).

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
    needed = set(raters) | {rater}
    incomplete = [s.scan_id for s in selected if not needed <= set(s.masks)]
    if incomplete:
        logger.warning(
            "%d scans lack a mask of one of raters %s and are not used: %s",
            len(incomplete),
            ",".join(map(str, sorted(needed))),
            ", ".join(incomplete),
        )
        selected = [s for s in selected if needed <= set(s.masks)]
    if not selected:
        raise DataError(f"no scan has a mask of rater {rater}: nothing to train on")
    return selected


def _rater_masks(loaded: LoadedScan, source: MaskSource) -> list[np.ndarray]:
    """The binary masks of ``source.raters`` (the first one already read), in that order."""
    assert loaded.mask is not None
    masks = [loaded.mask]
    for rater in source.raters[1:]:
        check_scan(loaded.scan, modalities=["flair"], rater=rater)
        masks.append(read_mask(loaded.scan.mask_path(rater), loaded.scan.label_map))
    return masks


def _target(loaded: LoadedScan, source: MaskSource, masks: Sequence[np.ndarray]) -> np.ndarray:
    """The training target of one scan in RAS, float32 (X, Y, Z)."""
    scan, loaded_mask, meta = loaded.scan, loaded.mask, loaded.meta
    assert loaded_mask is not None
    if source.kind == "binary":
        return loaded_mask.astype(np.float32)
    if source.kind == "computed":
        assert source.config is not None
        if "flair" in loaded.modalities:  # the FLAIR already read (NaN read as 0: not brain)
            flair = loaded.image[..., loaded.modalities.index("flair")]
        else:
            flair, _ = read_volume(scan.images["flair"])
        return source.config.soft_mask(
            loaded_mask if len(masks) == 1 else masks,
            flair,
            meta.spacing_mm,
            source=scan.images["flair"],
        )
    assert source.folder is not None
    path = soft_mask_path(source.folder, scan.scan_id)
    check_same_grid([meta, read_header(path)])
    soft, _ = read_volume(path, dtype=np.float32)
    if not np.all(np.isfinite(soft)) or soft.min() < 0.0 or soft.max() > 1.0:
        raise DataError(f"{path}: soft mask values must be finite and in [0, 1]")
    if len(masks) > 1:
        if not np.all(soft[np.any(masks, axis=0)] > 0.0):
            raise DataError(
                f"{path}: soft mask is 0 on a voxel that one of raters "
                f"{','.join(map(str, source.raters))} marked"
            )
    elif not np.all(soft[loaded_mask] == 1.0):
        raise DataError(
            f"{path}: soft mask is not 1 on every lesion voxel of rater {source.rater}'s mask "
            f"{scan.mask_path(source.rater)}"
        )
    return soft


def learn_normaliser(
    scans: Sequence[Scan], *, modalities: Sequence[str], method: str
) -> Normaliser:
    """The normaliser of ``method``; for ``histogram``, landmarks learned on ``scans``.

    Raises
    ------
    ConfigError
        An unknown method.
    DataError
        Unreadable images, or no brain intensities to learn landmarks from.
    """
    if method != "histogram":
        try:
            return Normaliser(method)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    rows = [scan_landmarks(load_scan(s, modalities=modalities).image) for s in scans]
    try:
        return Normaliser("histogram", learn_landmarks(rows))
    except ValueError as exc:
        raise DataError(f"{len(scans)} training scans: {exc}") from None


def load_scan_slices(
    scan: Scan,
    *,
    modalities: Sequence[str],
    source: MaskSource,
    normaliser: Normaliser | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Normalised image slices and target slices of one scan, lesion-free slices dropped.

    Parameters
    ----------
    scan : Scan
    modalities : sequence of str
        Channels, in order.
    source : MaskSource
    normaliser : Normaliser, optional
        Intensity normalisation (default: z-score over the brain).

    Returns
    -------
    images : ndarray of float32, shape (K, X, Y, C)
        Kept axial slices, each modality normalised over the scan's brain voxels.
    targets : ndarray of float32, shape (K, X, Y, 1)
        Binary or soft mask of the same slices, values in [0, 1].
    kept : ndarray of int64, shape (K,)
        Axial index ``z`` of each kept slice (those where the rater's mask, or any of the
        raters' masks, has a lesion voxel).
    n_slices : int
        Number of axial slices of the scan before filtering.

    Raises
    ------
    DataError
        Unreadable or inconsistent files (see :func:`mssoft.files.scans.load_scan`).
    """
    loaded = load_scan(scan, modalities=modalities, rater=source.rater)
    masks = _rater_masks(loaded, source)
    kept = lesion_slice_indices(masks[0] if len(masks) == 1 else np.any(masks, axis=0))
    target = _target(loaded, source, masks)
    image = (normaliser or Normaliser()).apply(loaded.image)
    images = np.ascontiguousarray(to_axial_slices(image)[kept])
    targets = np.ascontiguousarray(to_axial_slices(target)[kept])
    return images, targets, kept.astype(np.int64), int(image.shape[2])


def _pad_to(array: Any, shape: tuple[int, int]) -> Any:
    if hasattr(array, "padded"):  # NpySlices: padded as it is read
        return array.padded(shape) if tuple(array.shape[1:3]) != shape else array
    pad = [(0, 0), (0, shape[0] - array.shape[1]), (0, shape[1] - array.shape[2]), (0, 0)]
    return np.pad(array, pad) if any(p[1] for p in pad) else array


def available_memory_bytes() -> int:
    """Memory the process can still use: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the
    free physical pages (``os.sysconf``), else 0 (unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 0


def slice_storage(
    scans: Sequence[Scan],
    *,
    modalities: Sequence[str],
    mode: str = "auto",
    available: int | None = None,
) -> Literal["memory", "disk"]:
    """Where the training slices are kept: ``"memory"`` or ``"disk"`` (the slice cache).

    ``mode`` ``memory`` or ``disk`` forces it. ``auto`` keeps them in memory (the faster choice
    for a set that fits) when every axial slice of every scan, as float32 images and targets
    (``X * Y * Z * (C + 1) * 4`` bytes per scan, from the FLAIR headers: an upper bound, since
    only lesion slices are kept), takes at most :data:`MEMORY_SHARE` of the available memory
    (:func:`available_memory_bytes`); otherwise on disk.

    Raises
    ------
    ConfigError
        Unknown ``mode``.
    """
    if mode not in SLICE_CACHES:
        raise ConfigError(
            f"Invalid value for `--slice-cache`. Expected one of {', '.join(SLICE_CACHES)}. "
            f"Received: {mode!r}"
        )
    if mode != "auto":
        return mode  # type: ignore[return-value]
    upper = sum(
        int(np.prod(read_header(scan.images["flair"]).shape[:3])) * (len(modalities) + 1) * 4
        for scan in scans
    )
    available = available_memory_bytes() if available is None else available
    storage: Literal["memory", "disk"] = (
        "memory" if available <= 0 or upper <= MEMORY_SHARE * available else "disk"
    )
    logger.info(
        "slices of %d scans: at most %.0f MB, %.0f MB available: kept in %s",
        len(scans),
        upper / 2**20,
        available / 2**20,
        storage,
    )
    return storage


def _cache_key(
    scan: Scan, modalities: Sequence[str], source: MaskSource, normaliser: Normaliser | None
) -> dict[str, Any]:
    files = [scan.images[m] for m in modalities] + [scan.mask_path(r) for r in source.raters]
    if source.kind == "computed" and "flair" not in modalities:
        files.append(scan.images["flair"])
    if source.kind == "folder":
        assert source.folder is not None
        files.append(soft_mask_path(source.folder, scan.scan_id))
    normalise = (normaliser or Normaliser()).describe()
    if normaliser is not None and normaliser.landmarks is not None:
        normalise["landmarks"] = np.asarray(normaliser.landmarks).tolist()
    return scan_cache_key(
        files,
        scan_id=scan.scan_id,
        modalities=list(modalities),
        source=source.to_dict(),
        normalise=normalise,
    )


def _memo_scan_slices(
    scan: Scan,
    *,
    modalities: Sequence[str],
    source: MaskSource,
    normaliser: Normaliser | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`load_scan_slices`, kept in the process's memo inside
    :func:`mssoft.files.memo.keep_in_memory` (the repeats of a cross-validation fold train on
    the same slices: read, normalised and cut once), keyed as the on-disk slice cache is."""
    memo = active_memo()
    if memo is None:
        return load_scan_slices(scan, modalities=modalities, source=source, normaliser=normaliser)
    try:
        key = memo_key("slices", key=_cache_key(scan, modalities, source, normaliser))
    except OSError:  # a missing file: load_scan_slices names it
        return load_scan_slices(scan, modalities=modalities, source=source, normaliser=normaliser)
    return memo.get_or_make(
        key,
        lambda: load_scan_slices(
            scan, modalities=modalities, source=source, normaliser=normaliser
        ),
    )


def _cached_scan_slices(
    scan: Scan,
    *,
    modalities: Sequence[str],
    source: MaskSource,
    cache: Path,
    normaliser: Normaliser | None = None,
) -> tuple[Any, Any, np.ndarray, int]:
    """A scan's slices from the cache, loaded and written there first if missing or stale.

    The cache key holds the input files, the channels, the target source and the normalisation
    (with its landmarks), so a change of any of them rebuilds the scan's slices.
    """
    key = _cache_key(scan, modalities, source, normaliser)
    hit = read_cached_slices(cache, scan.scan_id, key)
    if hit is not None:
        logger.debug("%s: slices read from the cache %s", scan.scan_id, cache)
        return hit
    images, targets, kept, n = load_scan_slices(
        scan, modalities=modalities, source=source, normaliser=normaliser
    )
    write_cached_slices(cache, scan.scan_id, images, targets, kept, n, key)
    hit = read_cached_slices(cache, scan.scan_id, key)
    if hit is None:
        raise DataError(
            f"{cache}: the slice cache of {scan.scan_id} cannot be read back; delete the folder "
            f"{cache} (it is rebuilt) or use --slice-cache memory"
        )
    return hit


def load_slices(
    scans: Sequence[Scan],
    *,
    modalities: Sequence[str],
    source: MaskSource,
    normaliser: Normaliser | None = None,
    cache: str | Path | None = None,
) -> SliceSet:
    """Load the kept slices of every scan (see :func:`load_scan_slices`), normalised alike.

    Scans whose slices differ in size are zero-padded at the end of each axis to the largest
    ``(X, Y)`` so that slices can be batched (0 is background for z-scored images and masks).

    Parameters
    ----------
    scans, modalities, source
        As for :func:`load_scan_slices`.
    normaliser : Normaliser, optional
        Intensity normalisation of every scan (default z-score over the brain).
    cache : path-like, optional
        Keep the slices on disk in this folder (:mod:`mssoft.files.slice_cache`) instead of in
        memory: each scan is loaded, written there and released (or read from there if it was
        cached from the same files and settings), so memory does not grow with the number of
        scans. Default: in memory.

    Raises
    ------
    DataError
        A file is unreadable or inconsistent, a soft mask is missing from the ``build-masks``
        folder, or no scan has a lesion slice.
    """
    if source.kind == "folder":
        assert source.folder is not None
        # every soft mask exists, before any heavy loading
        soft_mask_files(source.folder, [s.scan_id for s in scans])
    images, targets, kept_all, n_slices = [], [], [], []
    for scan in scans:
        if cache is None:
            image, target, kept, n = _memo_scan_slices(
                scan, modalities=modalities, source=source, normaliser=normaliser
            )
        else:
            image, target, kept, n = _cached_scan_slices(
                scan, modalities=modalities, source=source, cache=Path(cache), normaliser=normaliser
            )
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
        "%d lesion slices of %d scans %s (%.0f MB)",
        len(slices),
        len(scans),
        "in memory" if cache is None else f"in the slice cache {cache}",
        slices.nbytes / 2**20,
    )
    return slices
