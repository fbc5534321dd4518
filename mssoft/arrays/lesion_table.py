"""Per-lesion and per-scan measurements of a segmentation: the rows of the lesion tables.

A lesion is a connected component of :func:`mssoft.arrays.lesions.label_lesions` (the one lesion
definition of mssoft). Arrays are in RAS orientation (axis 2 axial, inferior to superior), with
``affine`` the voxel-to-world (scanner RAS, mm) matrix of that RAS array. Pure NumPy/SciPy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY, label_lesions

__all__ = [
    "LesionRow",
    "ScanRow",
    "LESION_COLUMNS",
    "SCAN_COLUMNS",
    "LESION_UNITS",
    "SCAN_UNITS",
    "lesion_rows",
    "scan_row",
    "voxel_volume_ml",
]


@dataclass(frozen=True)
class LesionRow:
    """One lesion of one scan.

    Attributes
    ----------
    scan : str
    lesion : int
        Lesion id, 1..n in the order of :func:`~mssoft.arrays.lesions.label_lesions` labels.
    voxels : int
    volume_ml : float
        ``voxels`` times the voxel volume, in mL.
    centroid_x_mm, centroid_y_mm, centroid_z_mm : float
        Centre of mass in scanner RAS millimetres (world coordinates of the image's affine).
    centroid_i, centroid_j, centroid_k : float
        Centre of mass in voxel indices of the RAS array (k is the axial slice).
    bbox_i_min, bbox_i_max, bbox_j_min, bbox_j_max, bbox_k_min, bbox_k_max : int
        Inclusive bounding box in RAS voxel indices.
    first_slice, last_slice : int
        First and last axial slice (RAS axis 2 index, inferior to superior) holding the lesion.
    mean_prob, max_prob : float
        Mean and maximum lesion probability over the lesion's voxels (NaN without probabilities).
    """

    scan: str
    lesion: int
    voxels: int
    volume_ml: float
    centroid_x_mm: float
    centroid_y_mm: float
    centroid_z_mm: float
    centroid_i: float
    centroid_j: float
    centroid_k: float
    bbox_i_min: int
    bbox_i_max: int
    bbox_j_min: int
    bbox_j_max: int
    bbox_k_min: int
    bbox_k_max: int
    first_slice: int
    last_slice: int
    mean_prob: float
    max_prob: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScanRow:
    """The lesion burden of one scan.

    Attributes
    ----------
    scan : str
    lesions : int
        Number of lesions.
    lesion_volume_ml : float
        Total segmented volume in mL.
    brain_volume_ml : float
        Volume of the brain (non-zero voxels of the FLAIR image of a skull-stripped scan), mL.
    lesion_load : float
        ``lesion_volume_ml / brain_volume_ml`` (a share, 0..1; NaN without a brain).
    threshold : float
        Probability threshold of the segmentation.
    min_size : int
        Lesions kept had more than ``min_size`` voxels.
    model : str
        The run (or runs of an ensemble, ``;``-separated) that predicted it.
    """

    scan: str
    lesions: int
    lesion_volume_ml: float
    brain_volume_ml: float
    lesion_load: float
    threshold: float
    min_size: int
    model: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LESION_COLUMNS = tuple(LesionRow.__dataclass_fields__)
SCAN_COLUMNS = tuple(ScanRow.__dataclass_fields__)

#: Column -> (description, unit) of ``lesions.csv``: the docs and the BIDS data dictionary.
LESION_UNITS: dict[str, tuple[str, str]] = {
    "scan": ("Scan id", ""),
    "lesion": ("Lesion id within the scan (1..n)", ""),
    "voxels": ("Voxels of the lesion", "voxel"),
    "volume_ml": ("Lesion volume", "mL"),
    "centroid_x_mm": ("Centre of mass, scanner RAS x (towards the Right)", "mm"),
    "centroid_y_mm": ("Centre of mass, scanner RAS y (towards Anterior)", "mm"),
    "centroid_z_mm": ("Centre of mass, scanner RAS z (towards Superior)", "mm"),
    "centroid_i": ("Centre of mass, voxel index along the RAS x axis", "voxel"),
    "centroid_j": ("Centre of mass, voxel index along the RAS y axis", "voxel"),
    "centroid_k": ("Centre of mass, voxel index along the RAS z (axial) axis", "voxel"),
    "bbox_i_min": ("Bounding box, first RAS x index (inclusive)", "voxel"),
    "bbox_i_max": ("Bounding box, last RAS x index (inclusive)", "voxel"),
    "bbox_j_min": ("Bounding box, first RAS y index (inclusive)", "voxel"),
    "bbox_j_max": ("Bounding box, last RAS y index (inclusive)", "voxel"),
    "bbox_k_min": ("Bounding box, first RAS z index (inclusive)", "voxel"),
    "bbox_k_max": ("Bounding box, last RAS z index (inclusive)", "voxel"),
    "first_slice": ("First axial slice with the lesion (RAS z index, from inferior)", "voxel"),
    "last_slice": ("Last axial slice with the lesion (RAS z index, from inferior)", "voxel"),
    "mean_prob": ("Mean lesion probability over the lesion's voxels", ""),
    "max_prob": ("Maximum lesion probability over the lesion's voxels", ""),
}
SCAN_UNITS: dict[str, tuple[str, str]] = {
    "scan": ("Scan id", ""),
    "lesions": ("Number of lesions", ""),
    "lesion_volume_ml": ("Total lesion volume", "mL"),
    "brain_volume_ml": ("Brain volume (non-zero voxels of the skull-stripped FLAIR)", "mL"),
    "lesion_load": ("Lesion volume as a share of the brain volume (0..1)", ""),
    "threshold": ("Probability threshold of the segmentation", ""),
    "min_size": ("Lesions kept have more than min_size voxels", "voxel"),
    "model": ("Run folder(s) of the model, ';'-separated for an ensemble", ""),
}
if tuple(LESION_UNITS) != LESION_COLUMNS or tuple(SCAN_UNITS) != SCAN_COLUMNS:
    raise AssertionError("every column of the lesion tables needs its description and unit")


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL from a (4, 4) voxel-to-world affine in mm."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def lesion_rows(
    scan: str,
    seg: np.ndarray,
    affine: np.ndarray,
    prob: np.ndarray | None = None,
    *,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> list[LesionRow]:
    """Measure every lesion of a segmentation.

    Parameters
    ----------
    scan : str
        Scan id written into each row.
    seg : ndarray of shape (X, Y, Z)
        Binary segmentation in RAS orientation; non-zero voxels are lesion.
    affine : ndarray of shape (4, 4)
        Voxel-to-world (scanner RAS mm) affine of the RAS array.
    prob : ndarray of shape (X, Y, Z), optional
        Lesion probabilities on the same grid (mean and maximum per lesion).
    connectivity : {6, 18, 26}, optional
        Lesion neighbourhood (the segmentation's post-processing connectivity).

    Returns
    -------
    list of LesionRow
        One per lesion, by lesion id.
    """
    seg = np.asarray(seg)
    if prob is not None and np.shape(prob) != seg.shape:
        raise ValueError(f"prob has shape {np.shape(prob)}, seg {seg.shape}")
    labels, n = label_lesions(seg, connectivity=connectivity)
    if n == 0:
        return []
    flat = np.flatnonzero(labels)
    lesion = labels.ravel()[flat] - 1
    index = np.stack(np.unravel_index(flat, seg.shape), axis=1)  # (V, 3)
    voxels = np.bincount(lesion, minlength=n)
    centroid = np.stack(
        [np.bincount(lesion, weights=index[:, a], minlength=n) for a in range(3)], axis=1
    ) / voxels[:, None]
    world = centroid @ np.asarray(affine, dtype=np.float64)[:3, :3].T + affine[:3, 3]
    low = np.full((n, 3), np.iinfo(np.int64).max)
    high = np.full((n, 3), -1)
    for a in range(3):
        np.minimum.at(low[:, a], lesion, index[:, a])
        np.maximum.at(high[:, a], lesion, index[:, a])
    if prob is None:
        mean = peak = np.full(n, np.nan)
    else:
        values = np.asarray(prob, dtype=np.float64).ravel()[flat]
        mean = np.bincount(lesion, weights=values, minlength=n) / voxels
        peak = np.full(n, -np.inf)
        np.maximum.at(peak, lesion, values)
    unit = voxel_volume_ml(affine)
    return [
        LesionRow(
            scan,
            k + 1,
            int(voxels[k]),
            float(voxels[k] * unit),
            *(float(v) for v in world[k]),
            *(float(v) for v in centroid[k]),
            int(low[k, 0]),
            int(high[k, 0]),
            int(low[k, 1]),
            int(high[k, 1]),
            int(low[k, 2]),
            int(high[k, 2]),
            int(low[k, 2]),
            int(high[k, 2]),
            float(mean[k]),
            float(peak[k]),
        )
        for k in range(n)
    ]


def scan_row(
    scan: str,
    lesions: list[LesionRow],
    brain: np.ndarray,
    affine: np.ndarray,
    *,
    threshold: float,
    min_size: int,
    model: str,
) -> ScanRow:
    """The per-scan summary of :func:`lesion_rows`.

    Parameters
    ----------
    scan : str
    lesions : list of LesionRow
        The scan's lesions.
    brain : ndarray of shape (X, Y, Z)
        Brain mask (for a skull-stripped FLAIR: its non-zero finite voxels).
    affine : ndarray of shape (4, 4)
        Voxel-to-world affine (only the voxel volume is used).
    threshold, min_size, model
        How the segmentation was made.
    """
    volume = float(sum(r.volume_ml for r in lesions))
    brain_ml = float(np.count_nonzero(brain)) * voxel_volume_ml(affine)
    return ScanRow(
        scan,
        len(lesions),
        volume,
        brain_ml,
        volume / brain_ml if brain_ml > 0 else float("nan"),
        float(threshold),
        int(min_size),
        model,
    )
