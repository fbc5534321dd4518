"""Reading and writing NIfTI volumes: the only module of mssoft that uses nibabel.

Arrays are handed to the rest of the package in the closest canonical orientation (RAS+: array
axis 0 increases towards the patient's Right, axis 1 towards Anterior, axis 2 towards Superior), so
axis 2 is always the axial axis. :func:`write_volume` puts an array back
into the orientation, affine and header of the file it came from, so outputs overlay their inputs
in any viewer.

Writes are atomic (:func:`mssoft.files.atomic.atomic_path`): the volume is written to a hidden
temporary file in the destination folder and renamed over the destination only when complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from mssoft.errors import DataError
from mssoft.files.atomic import atomic_path

__all__ = [
    "MAX_INTENSITY",
    "VolumeMeta",
    "read_header",
    "read_volume",
    "write_volume",
    "check_same_grid",
    "grid_meta",
    "NIFTI_SUFFIXES",
    "AFFINE_TOLERANCE_MM",
]

logger = logging.getLogger(__name__)

#: Largest voxel value accepted (absolute); anything beyond, or infinite, marks a broken file.
MAX_INTENSITY = 1e30

NIFTI_SUFFIXES = (".nii.gz", ".nii")
AFFINE_TOLERANCE_MM = 1e-3
_RAS = axcodes2ornt("RAS")


@dataclass(frozen=True)
class VolumeMeta:
    """Where a volume came from and how to write an array back in its place.

    Attributes
    ----------
    path : Path
        The file the volume was read from.
    shape : tuple of int
        Shape of the array *in the file's own orientation* (3 axes).
    affine : ndarray of shape (4, 4)
        The file's voxel-to-world (mm) affine.
    header : nibabel.Nifti1Header
        A copy of the file's header.
    ras_shape : tuple of int
        Shape of the array in canonical RAS orientation (as returned by :func:`read_volume`).
    spacing_mm : tuple of float
        Voxel size in millimetres along the three RAS array axes.
    axcodes : tuple of str
        The file's orientation codes, e.g. ``('L', 'A', 'S')``.
    """

    path: Path
    shape: tuple[int, int, int]
    affine: np.ndarray
    header: Any
    ras_shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    axcodes: tuple[str, str, str]

    @property
    def to_ras(self) -> np.ndarray:
        """Orientation transform (nibabel ``ornt``) from the file's axes to RAS."""
        return ornt_transform(io_orientation(self.affine), _RAS)

    @property
    def ras_affine(self) -> np.ndarray:
        """Voxel-to-world (scanner RAS mm) affine of the RAS array of :func:`read_volume`."""
        return self.affine @ inv_ornt_aff(self.to_ras, self.shape)

    @property
    def from_ras(self) -> np.ndarray:
        """Orientation transform (nibabel ``ornt``) from RAS back to the file's axes."""
        return ornt_transform(_RAS, io_orientation(self.affine))

    def same_grid(self, other: VolumeMeta, *, tolerance_mm: float = AFFINE_TOLERANCE_MM) -> bool:
        """Whether ``other`` has the same shape and (within ``tolerance_mm``) the same affine."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, rtol=0.0, atol=tolerance_mm)
        )


def _load(path: Path) -> nib.Nifti1Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if not str(path).endswith(NIFTI_SUFFIXES):
        raise DataError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(f"{path}: not a NIfTI image ({type(img).__name__})")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        return img.slicer[..., 0]
    if len(shape) != 3:
        raise DataError(f"{path}: expected a 3D volume, got shape {tuple(shape)}")
    return img


def read_header(path: str | os.PathLike[str]) -> VolumeMeta:
    """Read a NIfTI file's header only (no voxel data).

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file holding a 3D volume (a 4D volume with one frame is accepted).

    Returns
    -------
    VolumeMeta
        Shape, affine, header, RAS shape and spacing of the volume.

    Raises
    ------
    DataError
        The file is missing, unreadable, not NIfTI or not 3D.
    """
    path = Path(path)
    img = _load(path)
    return _meta(img, path)


def _meta(img: nib.Nifti1Image, path: Path) -> VolumeMeta:
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path}: invalid affine (singular or not finite)")
    ornt = ornt_transform(io_orientation(affine), _RAS)
    shape = tuple(int(s) for s in img.shape[:3])
    ras_shape = tuple(shape[int(ax)] for ax in np.argsort(ornt[:, 0]))
    spacing_file = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing_ras = tuple(float(spacing_file[int(ax)]) for ax in np.argsort(ornt[:, 0]))
    axcodes = tuple(str(c) for c in nib.aff2axcodes(affine))
    return VolumeMeta(
        path=path,
        shape=shape,  # type: ignore[arg-type]
        affine=affine,
        header=img.header.copy(),
        ras_shape=ras_shape,  # type: ignore[arg-type]
        spacing_mm=spacing_ras,  # type: ignore[arg-type]
        axcodes=axcodes,  # type: ignore[arg-type]
    )


def read_volume(
    path: str | os.PathLike[str], *, dtype: np.dtype | type = np.float32
) -> tuple[np.ndarray, VolumeMeta]:
    """Read a 3D NIfTI volume in canonical RAS orientation.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file holding a 3D volume.
    dtype : numpy dtype, optional
        Data type of the returned array (scaling from the header is applied first).

    Returns
    -------
    array : ndarray of shape ``meta.ras_shape``
        Voxel values, axes ordered and flipped to RAS+ (axis 2 is axial, inferior to superior).
    meta : VolumeMeta
        What is needed to write an array back in the file's own orientation.

    Raises
    ------
    DataError
        The file is missing, unreadable, not NIfTI, not 3D, its data cannot be decoded, or it
        holds an infinite voxel or one beyond +-:data:`MAX_INTENSITY` (e.g. a float64 file with
        values near 1e300, which float32 cannot hold).
    """
    path = Path(path)
    img = _load(path)
    meta = _meta(img, path)
    try:
        data = np.asarray(img.dataobj, dtype=np.float64 if np.dtype(dtype).kind == "f" else None)
    except Exception as exc:
        raise DataError(f"{path}: cannot read voxel data ({type(exc).__name__}: {exc})") from None
    _check_intensities(data, path)
    data = apply_orientation(data, meta.to_ras)
    return np.ascontiguousarray(data.astype(dtype, copy=False)), meta


def _check_intensities(data: np.ndarray, path: Path) -> None:
    """Refuse infinite voxels and any beyond +-:data:`MAX_INTENSITY` (NaN is left to callers)."""
    if data.dtype.kind != "f" or data.size == 0:
        return
    low, high = float(data.min()), float(data.max())  # NaN if any voxel is NaN
    if -MAX_INTENSITY <= low and high <= MAX_INTENSITY:
        return  # every voxel is finite and in range: two reductions, no temporary arrays
    with np.errstate(invalid="ignore"):
        bad = np.count_nonzero(np.isinf(data) | (np.abs(data) > MAX_INTENSITY))
    if bad:
        raise DataError(
            f"{path}: {bad} voxel(s) hold infinite or absurd intensities (beyond +-"
            f"{MAX_INTENSITY:g}); check the file's data type and scaling (scl_slope)"
        )


def write_volume(
    array: np.ndarray,
    meta: VolumeMeta,
    path: str | os.PathLike[str],
    *,
    dtype: np.dtype | type = np.float32,
) -> Path:
    """Write a RAS array back in the orientation, affine and header of ``meta``'s file.

    Parameters
    ----------
    array : ndarray of shape ``meta.ras_shape``
        Voxel values in canonical RAS orientation, as returned by :func:`read_volume`.
    meta : VolumeMeta
        Metadata of the volume whose grid ``array`` lives on.
    path : path-like
        Destination ``.nii`` or ``.nii.gz``; written atomically (never left half-written).
    dtype : numpy dtype, optional
        On-disk data type (``float32`` for probabilities and soft masks, ``uint8`` for
        segmentations). No intensity scaling is stored.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        ``array`` does not have the RAS shape of ``meta``.
    """
    path = Path(path)
    if tuple(array.shape) != tuple(meta.ras_shape):
        raise ValueError(
            f"{path}: array shape {tuple(array.shape)} does not match the RAS shape "
            f"{meta.ras_shape} of {meta.path}"
        )
    if not str(path).endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: output must end with .nii or .nii.gz")
    data = apply_orientation(np.asarray(array), meta.from_ras).astype(dtype, copy=False)
    header = meta.header.copy()
    header.set_data_dtype(dtype)
    img = nib.Nifti1Image(np.ascontiguousarray(data), meta.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)
    if np.dtype(dtype).kind in "ui":
        img.header["cal_min"], img.header["cal_max"] = 0, max(int(data.max(initial=0)), 1)
    else:
        img.header["cal_min"], img.header["cal_max"] = 0.0, 0.0
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    logger.debug("wrote %s", path)
    return path


def grid_meta(
    shape: Sequence[int], affine: np.ndarray, *, path: str | os.PathLike[str] | None = None
) -> VolumeMeta:
    """Metadata of a new 3D grid (no file), so arrays made in memory can go to :func:`write_volume`.

    Parameters
    ----------
    shape : sequence of 3 int
        Array shape *in the file's own orientation* (the orientation ``affine`` describes).
    affine : ndarray of shape (4, 4)
        Voxel-to-world (mm) affine; stored as both qform and sform (code 1, scanner).
    path : path-like, optional
        Name used in messages (default ``"(new grid)"``).

    Returns
    -------
    VolumeMeta
        As :func:`read_header` would return for a file written on this grid.

    Raises
    ------
    DataError
        ``shape`` is not 3 positive sizes, or ``affine`` is singular or not finite.
    """
    where = Path(path) if path is not None else Path("(new grid)")
    dims = tuple(int(s) for s in shape)
    if len(dims) != 3 or min(dims) < 1:
        raise DataError(f"{where}: expected 3 positive sizes, got shape {tuple(shape)}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise DataError(f"{where}: expected a 4x4 affine, got shape {affine.shape}")
    # A zero-stride array: nibabel reads only its shape, nothing is allocated.
    img = nib.Nifti1Image(np.broadcast_to(np.zeros((), np.uint8), dims), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return _meta(img, where)


def check_same_grid(metas: Sequence[VolumeMeta]) -> None:
    """Raise :class:`DataError` unless all volumes share shape and affine (within 1e-3 mm).

    Parameters
    ----------
    metas : sequence of VolumeMeta
        Headers of the files of one scan; the first is the reference.

    Raises
    ------
    DataError
        Naming the first file and the first file that differs from it.
    """
    if not metas:
        return
    ref = metas[0]
    for other in metas[1:]:
        if other.shape != ref.shape:
            raise DataError(
                f"{other.path}: shape {other.shape} differs from {ref.path} shape {ref.shape}"
            )
        if not ref.same_grid(other):
            delta = float(np.abs(other.affine - ref.affine).max())
            raise DataError(
                f"{other.path}: affine differs from {ref.path} by {delta:.4g} mm "
                f"(tolerance {AFFINE_TOLERANCE_MM} mm)"
            )
