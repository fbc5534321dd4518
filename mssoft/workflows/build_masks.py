"""``mssoft build-masks``: soft masks for scans on disk, in three layers.

* arrays: :func:`soft_mask_from_arrays` (a scan's mask and FLAIR → soft mask and its summary);
* files: :func:`soft_mask_for_scan` reads a scan's rater mask and FLAIR once and builds its mask;
  :func:`build_soft_masks` writes every scan's mask, then ``config.json``;
* folder: :func:`build_masks_folder` finds the scans, guards the output folder and builds.

``mssoft fit`` builds masks on the fly with :meth:`mssoft.workflows.settings.MaskConfig.soft_mask`
from the arrays it has already read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mssoft.errors import DataError
from mssoft.files.folders import (
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    open_output_folder,
    write_config,
)
from mssoft.files.layout import soft_mask_path
from mssoft.files.nifti import VolumeMeta, read_volume, write_volume
from mssoft.files.scans import Scan, binary_mask, check_image, check_scan, discover_scans
from mssoft.workflows.progress import Progress, no_progress
from mssoft.workflows.settings import MaskConfig

__all__ = [
    "MaskSummary",
    "soft_mask_from_arrays",
    "soft_mask_for_scan",
    "build_soft_masks",
    "build_masks_folder",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskSummary:
    """What one soft mask holds.

    Attributes
    ----------
    scan_id : str
    lesion_voxels : int
        ``|M|``, voxels of the rater's mask (of the union of the raters' masks with several).
    ring_voxels : int
        ``|D|``, voxels of the soft ring (after the FLAIR exclusion).
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


def soft_mask_from_arrays(
    scan_id: str,
    mask: np.ndarray | Sequence[np.ndarray],
    flair: np.ndarray,
    spacing: Sequence[float],
    config: MaskConfig,
    *,
    source: Path | str = "FLAIR",
) -> tuple[np.ndarray, MaskSummary]:
    """The soft mask of one scan from its arrays.

    Parameters
    ----------
    scan_id : str
    mask : ndarray of bool, shape (X, Y, Z), or a sequence of them
        The rater's binary mask (RAS), or the masks of ``config.all_raters`` in that order.
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities on the same grid.
    spacing : sequence of 3 float
        Voxel size in mm along each array axis.
    config : MaskConfig
    source : path-like
        Named in the error message (the FLAIR file).

    Returns
    -------
    soft : ndarray of float32, shape (X, Y, Z)
    summary : MaskSummary

    Raises
    ------
    DataError
        The soft mask cannot be built (e.g. a percentile threshold on an all-zero FLAIR).
    """
    soft = config.soft_mask(mask, flair, spacing, source=source)
    union = (
        np.asarray(mask) != 0
        if isinstance(mask, np.ndarray)
        else np.any([np.asarray(m) != 0 for m in mask], axis=0)
    )
    lesion = int(np.count_nonzero(union))
    no_ring = config.params.is_binary  # ratio 1 or gamma 0: no ring (also for a share)
    ring = 0 if no_ring else int(np.count_nonzero((soft > 0) & ~union))
    dilated = 0 if no_ring else round((config.params.ratio - 1.0) * lesion)
    return soft, MaskSummary(scan_id, lesion, ring, dilated)


def soft_mask_for_scan(
    scan: Scan, config: MaskConfig
) -> tuple[np.ndarray, VolumeMeta, MaskSummary]:
    """Read a scan's rater mask and FLAIR (once each) and build its soft mask.

    The grids are not compared here: :func:`build_soft_masks` checks every scan's headers before
    it reads any volume.

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
        Missing or non-binary rater mask, unreadable FLAIR, or a FLAIR image with no non-zero
        voxel (:func:`mssoft.files.scans.check_image`, as every command checks its images).
    """
    masks, meta = [], None
    for rater in config.all_raters:
        mask_path = scan.mask_path(rater)
        raw, rater_meta = read_volume(mask_path)
        meta = meta or rater_meta
        masks.append(binary_mask(raw, mask_path, scan.label_map))
    assert meta is not None
    flair, _ = read_volume(scan.images["flair"])
    check_image(flair, scan.images["flair"])
    soft, summary = soft_mask_from_arrays(
        scan.scan_id,
        masks[0] if len(masks) == 1 else masks,
        flair,
        meta.spacing_mm,
        config,
        source=scan.images["flair"],
    )
    return soft, meta, summary


def build_soft_masks(
    scans: Sequence[Scan],
    out: str | Path,
    config: MaskConfig,
    *,
    progress: Progress = no_progress,
) -> list[MaskSummary]:
    """Build and write the soft mask of every scan, then ``out/config.json``.

    All scans' headers are checked before anything is written. Each mask is written atomically
    to :func:`mssoft.files.layout.soft_mask_path` as float32 with the rater mask's affine, header
    and orientation. ``config.json`` is written before the first mask with ``"status":
    "incomplete"`` and the planned files, and again with ``"status": "complete"`` once every
    mask is there.

    Parameters
    ----------
    scans : sequence of Scan
    out : path-like
        Existing output folder (see :func:`mssoft.files.folders.prepare_output_folder`).
    config : MaskConfig
    progress : callable, optional
        ``progress(items, label)`` wraps the iteration over scans (a progress bar).

    Returns
    -------
    list of MaskSummary
        One per scan, in order.
    """
    out = Path(out)
    for scan in scans:
        for rater in config.all_raters:
            check_scan(scan, modalities=["flair"], rater=rater)
    planned = {s.scan_id: soft_mask_path(out, s.scan_id).name for s in scans}
    # first: marks the folder as this command's and lists what it is about to write
    write_config(out, "build-masks", config.to_dict(), status=STATUS_INCOMPLETE, scans=planned)
    summaries = []
    for scan in progress(scans, "build-masks"):
        soft, meta, summary = soft_mask_for_scan(scan, config)
        path = write_volume(soft, meta, soft_mask_path(out, scan.scan_id), dtype=np.float32)
        summary = replace(summary, path=path)
        logger.info(
            "%s: %d lesion voxels, %d soft voxels",
            scan.scan_id,
            summary.lesion_voxels,
            summary.ring_voxels,
        )
        summaries.append(summary)
    write_config(
        out,
        "build-masks",
        config.to_dict(),
        status=STATUS_COMPLETE,
        scans={s.scan_id: s.path.name for s in summaries if s.path is not None},
    )
    return summaries


def build_masks_folder(
    data: str | Path,
    out: str | Path,
    config: MaskConfig,
    *,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> tuple[Path, list[MaskSummary]]:
    """``mssoft build-masks``: the soft masks of every scan of ``data`` in the folder ``out``.

    Parameters
    ----------
    data : path-like
        Data folder (ISBI 2015, nnU-Net v2 raw) or CSV manifest. Scans without a mask of
        ``config.rater`` (test scans) are skipped with a warning.
    out : path-like
        Output folder; may not be inside ``data`` nor hold an input file.
    config : MaskConfig
    overwrite : bool
        Replace an earlier ``build-masks`` output in ``out``: its soft masks are removed first,
        so ``out`` ends up holding the masks of this run's scans only.
    progress : callable, optional
        ``progress(items, label)`` wraps the iteration over scans.

    Returns
    -------
    out : Path
        The resolved output folder.
    summaries : list of MaskSummary
    """
    found = discover_scans(data)
    raters = tuple(config.all_raters)
    who = f"rater {raters[0]}" if len(raters) == 1 else f"raters {','.join(map(str, raters))}"
    scans = [s for s in found if all(r in s.masks for r in raters)]
    if not scans:
        raise DataError(f"{data}: no mask for {who} in any scan")
    skipped = [s.scan_id for s in found if not all(r in s.masks for r in raters)]
    if skipped:  # e.g. test scans (ISBI testNN, nnU-Net imagesTs)
        logger.warning(
            "%d scans have no mask of %s and get no soft mask: %s",
            len(skipped),
            who,
            ", ".join(skipped[:8]) + (", ..." if len(skipped) > 8 else ""),
        )
    inputs = [path for scan in found for path in scan.files()]
    with open_output_folder(
        out, command="build-masks", data=data, input_files=inputs, overwrite=overwrite
    ) as folder:
        return folder, build_soft_masks(scans, folder, config, progress=progress)
