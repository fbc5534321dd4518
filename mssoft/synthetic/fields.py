"""Building blocks of the synthetic phantom: seeded random streams, smooth noise, soft shapes.

Everything here works in voxel units on the array grid (axis 0 = x, towards the patient's Right;
axis 1 = y, Anterior; axis 2 = z, Superior; the RAS order of :mod:`mssoft.files.nifti`). Shapes are
described by an approximate *signed distance* in voxels (positive inside), and turned into
partial-volume fractions by :func:`partial_volume`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "Seed",
    "Vector",
    "stream",
    "partial_volume",
    "smooth_noise",
    "rotation_matrix",
    "ellipsoid_distance",
    "crop_box",
]

Seed = int | Sequence[int]
Vector = Sequence[float] | np.ndarray

# Independent random streams of one patient, so that changing one part (say the number of
# lesions) does not change the anatomy drawn with the same seed.
_STREAMS = {
    "anatomy": 1,
    "lesions": 2,
    "evolution": 3,
    "new_lesions": 4,
    "contrast": 5,
    "noise": 6,
    "rater": 7,
    "roughness": 8,
    "mimics": 9,
}


def stream(seed: Seed, name: str, *extra: int) -> np.random.Generator:
    """An independent, reproducible generator for one part of one patient.

    Parameters
    ----------
    seed : int or sequence of int
        The patient's seed (non-negative integers).
    name : str
        Which part: ``anatomy``, ``lesions``, ``evolution``, ``new_lesions``, ``contrast``,
        ``noise``, ``rater``, ``roughness`` or ``mimics``.
    *extra : int
        Further keys, e.g. the time point or the rater number.

    Returns
    -------
    numpy.random.Generator
        ``numpy.random.default_rng`` seeded with ``(*seed, stream id, *extra)``.
    """
    base = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    return np.random.default_rng([*base, _STREAMS[name], *(int(e) for e in extra)])


def partial_volume(distance: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Fraction of a voxel inside a shape, from the signed distance of its centre to the border.

    Parameters
    ----------
    distance : ndarray
        Signed distance in voxels, positive inside.
    width : float, optional
        Width of the ramp in voxels; 1 is a sharp border sampled by unit voxels, larger values
        make a blurred (uncertain) border.

    Returns
    -------
    ndarray of float32, same shape
        ``clip(0.5 + distance / width, 0, 1)``.
    """
    return np.clip(0.5 + np.asarray(distance, dtype=np.float32) / np.float32(width), 0.0, 1.0)


def smooth_noise(shape: Sequence[int], rng: np.random.Generator, scale: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``scale``.

    Scales below 4 voxels filter white noise at full resolution. Larger ones sum Gaussian bumps of
    width ``scale`` centred on a lattice of spacing ``scale / 2`` with random weights: a separable
    product of three small matrices, so a 96 x 112 x 80 field takes milliseconds.

    Parameters
    ----------
    shape : sequence of 3 int
        Output shape.
    rng : numpy.random.Generator
        Source of the white noise.
    scale : float
        Standard deviation of the Gaussian kernel, in voxels (> 0).

    Returns
    -------
    ndarray of float32, shape ``shape``
        Zero mean, unit standard deviation (over the volume).
    """
    shape = tuple(int(s) for s in shape)
    if scale < 4.0:
        noise = rng.standard_normal(shape, dtype=np.float32)
        field = ndimage.gaussian_filter(noise, scale, mode="wrap", truncate=3.0)
    else:
        step = scale / 2.0
        pad = 3.0 * scale
        counts = [int(np.ceil((n - 1 + 2 * pad) / step)) + 1 for n in shape]
        field = rng.standard_normal(counts, dtype=np.float32)
        for axis, (n, count) in enumerate(zip(shape, counts, strict=True)):
            nodes = np.arange(count) * step - pad
            weights = np.exp(-0.5 * ((np.arange(n)[:, None] - nodes[None, :]) / scale) ** 2)
            field = np.moveaxis(
                np.tensordot(weights.astype(np.float32), field, axes=(1, axis)), 0, axis
            )
    field = np.ascontiguousarray(field, dtype=np.float32)
    field -= field.mean()
    std = float(field.std())
    if std > 0:
        field /= std
    return field


def rotation_matrix(
    rng: np.random.Generator | None = None, *, angles: Sequence[float] | None = None
) -> np.ndarray:
    """A 3x3 rotation: uniformly random (from ``rng``) or from Euler angles (radians; x, y, z).

    Parameters
    ----------
    rng : numpy.random.Generator, optional
        Draws a uniformly distributed rotation (QR of a Gaussian matrix) when ``angles`` is None.
    angles : sequence of 3 float, optional
        Rotation about x, y and z, in radians.

    Returns
    -------
    ndarray of float64, shape (3, 3)
        Orthonormal, determinant +1. Rows are the shape's own axes in array coordinates.
    """
    if angles is not None:
        ax, ay, az = angles
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        return rz @ ry @ rx
    if rng is None:
        raise ValueError("rotation_matrix needs `rng` or `angles`")
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def ellipsoid_distance(
    coords: Sequence[np.ndarray],
    centre: Vector,
    axes: Vector,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Approximate signed distance (voxels, positive inside) to an ellipsoid's surface.

    One Newton step on the normalised radius ``q = |R (x - c) / a|``: ``d = (1 - q) / |grad q|``,
    exact for a sphere and within a fraction of a voxel near the surface of an ellipsoid.

    Parameters
    ----------
    coords : sequence of 3 ndarray
        Voxel coordinates along each axis, broadcastable to the output (``np.ogrid`` style).
    centre : sequence of 3 float
        Centre in voxel coordinates.
    axes : sequence of 3 float
        Semi-axes in voxels (along the rotated axes).
    rotation : ndarray of shape (3, 3), optional
        Rows are the ellipsoid's axes in array coordinates (identity by default).

    Returns
    -------
    ndarray of float32
        Broadcast shape of ``coords``.
    """
    rel = [
        np.asarray(c, dtype=np.float32) - np.float32(o) for c, o in zip(coords, centre, strict=True)
    ]
    if rotation is None:
        local = rel
    else:
        rot = np.asarray(rotation, dtype=np.float32)
        local = [rot[i, 0] * rel[0] + rot[i, 1] * rel[1] + rot[i, 2] * rel[2] for i in range(3)]
    a = [np.float32(max(float(x), 1e-3)) for x in axes]
    q2 = sum((loc / ai) ** 2 for loc, ai in zip(local, a, strict=True))
    g2 = sum(loc**2 / ai**4 for loc, ai in zip(local, a, strict=True))
    q = np.sqrt(q2)
    # |grad q| = sqrt(sum x_i^2 / a_i^4) / q; at the centre use the smallest axis.
    grad = np.sqrt(g2) / np.maximum(q, np.float32(1e-6))
    grad = np.where(q > 1e-6, grad, np.float32(1.0 / min(a)))
    return ((1.0 - q) / np.maximum(grad, np.float32(1e-6))).astype(np.float32)


def crop_box(
    shape: Sequence[int], centre: Vector, radius: float
) -> tuple[tuple[slice, ...], list[np.ndarray]]:
    """The part of the grid within ``radius`` voxels of ``centre``, and its coordinates.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid shape.
    centre : sequence of 3 float
        Box centre in voxel coordinates.
    radius : float
        Half-size of the box in voxels.

    Returns
    -------
    box : tuple of slice
        Index of the box in the full grid (possibly empty if outside).
    coords : list of 3 ndarray
        Open-grid voxel coordinates of the box (``np.ogrid`` style, float32).
    """
    lo = [max(int(np.floor(c - radius)), 0) for c in centre]
    hi = [min(int(np.ceil(c + radius)) + 1, int(s)) for c, s in zip(centre, shape, strict=True)]
    hi = [max(h, l_) for h, l_ in zip(hi, lo, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    coords = [c.astype(np.float32) for c in np.ogrid[box]]
    return box, coords
