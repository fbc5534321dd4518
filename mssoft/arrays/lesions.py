"""The one lesion definition of mssoft: 3D connected components of a binary mask.

A lesion is a 3D connected component with 18-connectivity (the ISBI 2015 convention: voxels that
share a face or an edge are connected, voxels that share only a corner are not). Post-processing
keeps components with strictly more than ``min_size`` voxels. Soft-mask construction
(``per_lesion``), post-processing and every lesion-wise metric call these functions, so they all
agree on what a lesion is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_CONNECTIVITY",
    "DEFAULT_MIN_SIZE",
    "LesionDefinition",
    "connectivity_structure",
    "label_lesions",
    "remove_small_lesions",
]

DEFAULT_CONNECTIVITY = 18
DEFAULT_MIN_SIZE = 18
_RANK = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class LesionDefinition:
    """Connectivity and minimum size that define a lesion; stated in every report.

    Attributes
    ----------
    connectivity : {6, 18, 26}
        Voxel neighbourhood of a connected component.
    min_size : int
        Post-processing keeps components of strictly more than ``min_size`` voxels.
    """

    connectivity: int = DEFAULT_CONNECTIVITY
    min_size: int = DEFAULT_MIN_SIZE

    def __post_init__(self) -> None:
        connectivity_structure(self.connectivity)
        if int(self.min_size) != self.min_size or self.min_size < 0:
            raise ValueError(
                f"Invalid value for `min_size`. Expected an integer >= 0. Received: {self.min_size}"
            )

    def describe(self) -> str:
        """One line for reports, e.g. ``"18-connected components of > 18 voxels"``."""
        return f"{self.connectivity}-connected components of > {self.min_size} voxels"


def connectivity_structure(connectivity: int) -> np.ndarray:
    """Structuring element of a 3D neighbourhood.

    Parameters
    ----------
    connectivity : {6, 18, 26}
        Number of neighbours of a voxel.

    Returns
    -------
    ndarray of bool, shape (3, 3, 3)

    Raises
    ------
    ValueError
        ``connectivity`` is not 6, 18 or 26.
    """
    if connectivity not in _RANK:
        raise ValueError(
            f"Invalid value for `connectivity`. Expected one of 6, 18, 26. Received: {connectivity}"
        )
    return ndimage.generate_binary_structure(3, _RANK[connectivity])


def label_lesions(
    mask: np.ndarray, *, connectivity: int = DEFAULT_CONNECTIVITY
) -> tuple[np.ndarray, int]:
    """Label the lesions (connected components) of a binary mask.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary mask; non-zero voxels are lesion.
    connectivity : {6, 18, 26}, optional
        Neighbourhood; 18 is the ISBI 2015 definition.

    Returns
    -------
    labels : ndarray of int32, shape (X, Y, Z)
        0 for background, 1..n for the lesions.
    n : int
        Number of lesions.
    """
    binary = np.asarray(mask) != 0
    structure = connectivity_structure(connectivity)
    if binary.ndim != 3 or np.count_nonzero(binary) > _SPARSE_FRACTION * binary.size:
        labels, n = ndimage.label(binary, structure=structure)
        return labels.astype(np.int32, copy=False), int(n)
    return _label_sparse(binary, structure)


#: Masks with at most this fraction of lesion voxels are labelled through their voxel graph.
_SPARSE_FRACTION = 0.02


def _label_sparse(binary: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label`` for a sparse 3D mask: same labels, in time proportional to the lesions.

    The lesion voxels are the nodes of a graph whose edges join neighbours (found by binary search
    of each voxel's forward neighbours among the sorted flat indices); its connected components
    (``scipy.sparse.csgraph``) are numbered in the order of their first voxel in the array, as
    ``ndimage.label`` numbers them. A whole 181 x 217 x 181 scan takes ~10 ms instead of ~50 ms.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    shape = binary.shape
    labels = np.zeros(shape, dtype=np.int32)
    flat = np.flatnonzero(binary)
    n = flat.size
    if n == 0:
        return labels, 0
    coords = np.unravel_index(flat, shape)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    rows, cols = [], []
    for offset in np.argwhere(structure) - 1:
        if tuple(offset) <= (0, 0, 0):  # each pair once, from its first voxel
            continue
        inside = np.ones(n, dtype=bool)
        for axis, step in enumerate(offset):
            if step:
                inside &= (coords[axis] + step >= 0) & (coords[axis] + step < shape[axis])
        source = np.flatnonzero(inside)
        target = flat[source] + int(offset @ strides)
        position = np.minimum(np.searchsorted(flat, target), n - 1)
        hit = flat[position] == target
        rows.append(source[hit])
        cols.append(position[hit])
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    row, col = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(row.size, dtype=np.int8), (row, col)), shape=(n, n))
    count, component = connected_components(graph.tocsr(), directed=False)
    labels.ravel()[flat] = component + 1
    return labels, int(count)


def remove_small_lesions(
    mask: np.ndarray,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """Keep only the lesions of strictly more than ``min_size`` voxels.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary mask; non-zero voxels are lesion. Not modified.
    min_size : int, optional
        Components with ``size <= min_size`` voxels are removed (so 18 removes an 18-voxel
        component and keeps a 19-voxel one).
    connectivity : {6, 18, 26}, optional
        Neighbourhood defining a component.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
    """
    LesionDefinition(connectivity, min_size)
    labels, n = label_lesions(mask, connectivity=connectivity)
    out = np.zeros(labels.shape, dtype=bool)
    # Sizes and the rule on the lesion voxels only (not a keep flag looked up for every voxel).
    voxels = np.flatnonzero(labels)
    lesion = labels.ravel()[voxels]
    out.ravel()[voxels[np.bincount(lesion, minlength=n + 1)[lesion] > min_size]] = True
    return out
