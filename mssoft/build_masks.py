"""Soft masks for scans on disk: read a scan's rater mask and FLAIR, build, write.

This is the file-level layer above :func:`mssoft.masks.soft_mask`; the ``mssoft build-masks``
command and ``mssoft fit`` (when it builds masks on the fly) call it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mssoft.cases import Scan, check_scan, read_mask
from mssoft.errors import ConfigError, DataError
from mssoft.io import VolumeMeta, read_header, read_volume, write_volume
from mssoft.masks import parse_flair_threshold, soft_mask, validate_soft_mask_params
from mssoft.provenance import read_config, write_config

__all__ = [
    "MaskConfig",
    "MaskSummary",
    "SOFTMASK_SUFFIX",
    "soft_mask_path",
    "soft_mask_for_scan",
    "build_soft_masks",
    "read_soft_mask_folder",
]

logger = logging.getLogger(__name__)

SOFTMASK_SUFFIX = "_softmask.nii.gz"


@dataclass(frozen=True)
class MaskConfig:
    """How soft masks are built (design.md §1.2).

    Attributes
    ----------
    rater : int
        Whose binary mask is softened.
    ratio : float
        Dilated volume relative to the mask (>= 1; 1.2 is "120 %").
    gamma : float
        Soft label of the ring, in [0, 1).
    flair_threshold : str, float or None
        ``"pNN"`` (percentile of brain FLAIR), an absolute intensity, or None (no exclusion).
    per_lesion : bool
        Grow each lesion to ``ratio`` times its own volume.
    """

    rater: int = 1
    ratio: float = 1.2
    gamma: float = 0.3
    flair_threshold: str | float | None = "p50"
    per_lesion: bool = False

    def __post_init__(self) -> None:
        if int(self.rater) != self.rater or self.rater < 1:
            raise ConfigError(
                f"Invalid value for `--rater`. Expected an integer >= 1. Received: {self.rater}"
            )
        try:
            validate_soft_mask_params(float(self.ratio), float(self.gamma))
            threshold = parse_flair_threshold(self.flair_threshold)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        object.__setattr__(self, "flair_threshold", threshold)

    @property
    def is_binary(self) -> bool:
        """True when the soft mask equals the binary mask (``ratio == 1`` or ``gamma == 0``)."""
        return self.ratio == 1.0 or self.gamma == 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dictionary of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class MaskSummary:
    """What one soft mask holds.

    Attributes
    ----------
    scan_id : str
    lesion_voxels : int
        ``|M|``, voxels of the rater's mask.
    ring_voxels : int
        ``|D|``, voxels with the soft label gamma (after the FLAIR exclusion).
    dilated_voxels : int
        ``|D0|``, voxels the dilation added before the FLAIR exclusion.
    path : Path or None
        Where the soft mask was written, if it was.
    """

    scan_id: str
    lesion_voxels: int
    ring_voxels: int
    dilated_voxels: int
    path: Path | None = None

    @property
    def achieved_ratio(self) -> float:
        """``(|M| + |D|) / |M|``; NaN for an empty mask."""
        if self.lesion_voxels == 0:
            return float("nan")
        return (self.lesion_voxels + self.ring_voxels) / self.lesion_voxels


def soft_mask_path(folder: str | Path, scan_id: str) -> Path:
    """Where ``build-masks`` writes the soft mask of ``scan_id`` in ``folder``."""
    return Path(folder) / f"{scan_id}{SOFTMASK_SUFFIX}"


def soft_mask_for_scan(
    scan: Scan, config: MaskConfig
) -> tuple[np.ndarray, VolumeMeta, MaskSummary]:
    """Build the soft mask of one scan.

    Parameters
    ----------
    scan : Scan
        Needs its FLAIR image and the mask of ``config.rater``.
    config : MaskConfig

    Returns
    -------
    soft : ndarray of float32, shape (X, Y, Z)
        The soft mask in RAS orientation.
    meta : VolumeMeta
        Grid of the rater's mask (write ``soft`` back with it).
    summary : MaskSummary

    Raises
    ------
    DataError
        Missing rater mask, mismatched grids, non-binary or all-NaN mask, or (with a percentile
        threshold) a FLAIR image with no non-zero voxel.
    """
    check_scan(scan, modalities=["flair"], rater=config.rater)
    mask_path = scan.mask_path(config.rater)
    mask = read_mask(mask_path)
    flair, _ = read_volume(scan.images["flair"])
    meta = read_header(mask_path)
    try:
        soft = soft_mask(
            mask,
            flair,
            spacing=meta.spacing_mm,
            ratio=config.ratio,
            gamma=config.gamma,
            flair_threshold=config.flair_threshold,
            per_lesion=config.per_lesion,
        )
    except ValueError as exc:
        raise DataError(f"{scan.images['flair']}: {exc}") from None
    lesion = int(np.count_nonzero(mask))
    ring = int(np.count_nonzero(soft == np.float32(config.gamma))) if not config.is_binary else 0
    dilated = round((config.ratio - 1.0) * lesion) if not config.is_binary else 0
    return soft, meta, MaskSummary(scan.scan_id, lesion, ring, dilated)


def build_soft_masks(
    scans: Sequence[Scan], out: str | Path, config: MaskConfig
) -> Iterator[MaskSummary]:
    """Build and write the soft mask of every scan, then ``out/config.json``.

    All scans' headers are checked before anything is written. Each mask is written atomically
    to :func:`soft_mask_path` as float32 with the rater mask's affine, header and orientation.

    Parameters
    ----------
    scans : sequence of Scan
    out : path-like
        Existing output folder (see :func:`mssoft.outputs.prepare_output_folder`).
    config : MaskConfig

    Yields
    ------
    MaskSummary
        One per scan, after its file is written.
    """
    out = Path(out)
    for scan in scans:
        check_scan(scan, modalities=["flair"], rater=config.rater)
    summaries = []
    for scan in scans:
        soft, meta, summary = soft_mask_for_scan(scan, config)
        path = write_volume(soft, meta, soft_mask_path(out, scan.scan_id), dtype=np.float32)
        summary = MaskSummary(**{**asdict(summary), "path": path})
        logger.info(
            "%s: %d lesion voxels, %d soft voxels",
            scan.scan_id,
            summary.lesion_voxels,
            summary.ring_voxels,
        )
        summaries.append(summary)
        yield summary
    write_config(
        out,
        "build-masks",
        config.to_dict(),
        scans={s.scan_id: s.path.name for s in summaries if s.path is not None},
    )


def read_soft_mask_folder(
    folder: str | Path, scans: Sequence[Scan]
) -> tuple[MaskConfig, dict[str, Path]]:
    """The configuration and per-scan files of a ``build-masks`` output folder.

    Parameters
    ----------
    folder : path-like
        Output folder of ``mssoft build-masks``.
    scans : sequence of Scan
        Scans that need a soft mask.

    Returns
    -------
    config : MaskConfig
    paths : dict of str to Path
        Scan id to soft-mask file.

    Raises
    ------
    DataError
        The folder is not a build-masks output, or lacks a scan's soft mask.
    """
    record = read_config(folder, command="build-masks")
    config = MaskConfig(**record["config"])
    paths = {}
    for scan in scans:
        path = soft_mask_path(folder, scan.scan_id)
        if not path.is_file():
            raise DataError(f"{path}: soft mask of scan {scan.scan_id} not found in {folder}")
        paths[scan.scan_id] = path
    return config, paths
