"""The training geometry of a run (voxel size, orientation) and the check of scans against it.

``mssoft fit`` records in the run's ``config.json`` the median voxel size of its training scans
(``voxel_size_mm``: mm along the RAS array axes, from the FLAIR headers) and the orientation of
their FLAIR files (``orientation``: axis codes such as ``LAS``, the most common one if they
differ). ``mssoft predict`` and ``mssoft calibrate`` compare each scan's voxel size with it
(:func:`voxel_size_warnings`): a scan whose voxel size differs by more than 20 % on any axis is
named in a warning, and ``--resample`` moves it to the training voxel size for the model.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mssoft.arrays.resample import SPACING_TOLERANCE, spacing_deviation
from mssoft.errors import ConfigError
from mssoft.files.layout import CONFIG_NAME
from mssoft.files.nifti import VolumeMeta, read_header

if TYPE_CHECKING:  # the record is passed in; importing it here would deepen the import graph
    from mssoft.files.run_record import RunRecord

__all__ = [
    "TrainingGeometry",
    "training_geometry",
    "run_geometry",
    "voxel_size_warnings",
    "geometry_record",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingGeometry:
    """Voxel size and orientation of a run's training scans.

    Attributes
    ----------
    voxel_size_mm : tuple of 3 float
        Median voxel size (mm) along the RAS array axes.
    orientation : str
        Axis codes of the training FLAIR files (most common), e.g. ``"LAS"``.
    """

    voxel_size_mm: tuple[float, float, float]
    orientation: str

    def to_dict(self) -> dict[str, Any]:
        """``{"voxel_size_mm": [...], "orientation": ...}`` as recorded in ``config.json``."""
        return {"voxel_size_mm": list(self.voxel_size_mm), "orientation": self.orientation}


class _WithFlair(Protocol):
    """A scan (:class:`mssoft.files.scans.Scan`): its images by modality, FLAIR among them."""

    images: dict[str, Path]


def training_geometry(scans: Sequence[_WithFlair]) -> TrainingGeometry:
    """Median voxel size and most common orientation of the scans' FLAIR files (headers only)."""
    metas = [read_header(scan.images["flair"]) for scan in scans]
    sizes = np.median(np.array([m.spacing_mm for m in metas], dtype=np.float64), axis=0)
    codes = Counter("".join(m.axcodes) for m in metas)
    if len(codes) > 1:
        logger.warning("training FLAIR files have several orientations: %s", dict(codes))
    voxel_size = tuple(round(float(s), 6) for s in sizes)
    return TrainingGeometry(voxel_size, codes.most_common(1)[0][0])  # type: ignore[arg-type]


def run_geometry(run: RunRecord) -> TrainingGeometry | None:
    """The training geometry a run's record holds; None for runs that record none.

    Parameters
    ----------
    run : RunRecord
        The run's validated record (``RunInfo.run_record``; its voxel size is checked there).
    """
    if run.voxel_size_mm is None:
        return None
    return TrainingGeometry(run.voxel_size_mm, run.orientation)


def voxel_size_warnings(
    metas: Mapping[str, VolumeMeta],
    geometry: TrainingGeometry | None,
    *,
    resample: bool,
    run: str | Path,
) -> dict[str, list[float]]:
    """Log a warning for every scan whose voxel size is more than 20 % off the training one.

    Parameters
    ----------
    metas : mapping of scan id to VolumeMeta
        The scans' FLAIR headers.
    geometry : TrainingGeometry or None
        The run's training geometry (None: nothing to compare, nothing logged).
    resample : bool
        Whether the scans will be resampled (changes the advice in the message).
    run : path-like
        The run folder, named in the messages.

    Returns
    -------
    dict of str to list of float
        Voxel size (mm, RAS axes) of each scan that is off.

    Raises
    ------
    ConfigError
        ``resample`` is asked for but the run records no voxel size.
    """
    if geometry is None:
        if resample:
            raise ConfigError(
                f"Invalid value for `--resample`: {Path(run) / CONFIG_NAME} records no training "
                "voxel size (`voxel_size_mm`; runs of older mssoft versions)"
            )
        return {}
    off = {
        scan_id: [float(s) for s in meta.spacing_mm]
        for scan_id, meta in metas.items()
        if np.any(spacing_deviation(meta.spacing_mm, geometry.voxel_size_mm) > SPACING_TOLERANCE)
    }
    training = "x".join(f"{s:g}" for s in geometry.voxel_size_mm)
    for scan_id, sizes in off.items():
        logger.warning(
            "%s: voxel size %s mm differs by more than %d%% from the training voxel size %s mm "
            "of %s; %s",
            scan_id,
            "x".join(f"{s:g}" for s in sizes),
            round(SPACING_TOLERANCE * 100),
            training,
            run,
            "resampling it for the model (--resample)"
            if resample
            else "the model sees lesions at another scale (pass --resample to resample the scan)",
        )
    return off


def geometry_record(
    geometry: TrainingGeometry | None, off: Mapping[str, list[float]], *, resample: bool
) -> dict[str, Any]:
    """What an output's ``config.json`` records about voxel sizes (the ``geometry`` entry)."""
    return {
        "training_voxel_size_mm": list(geometry.voxel_size_mm) if geometry else None,
        "training_orientation": geometry.orientation if geometry else None,
        "tolerance": SPACING_TOLERANCE,
        "resample": bool(resample),
        "voxel_size_differs": dict(off),
    }
