"""From probabilities to a lesion segmentation: one threshold, then small-lesion removal.

A voxel is lesion when its probability is **greater than or equal to** the threshold
(``prob >= threshold``, compared in the probabilities' own floating-point type), and it belongs to
a lesion (:mod:`mssoft.arrays.lesions`: an 18-connected component by default) of strictly more than
``min_size`` voxels. The paper's post-processing is ``threshold`` chosen on the training scans
(``mssoft calibrate``) and ``min_size = 18``.

Connected components are labelled only inside the bounding box of the thresholded voxels; the
result is identical to labelling the whole volume (no component reaches outside that box) and
several times faster for the sparse masks of lesion segmentation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mssoft.arrays.lesions import (
    DEFAULT_CONNECTIVITY,
    DEFAULT_MIN_SIZE,
    LesionDefinition,
    remove_small_lesions,
)
from mssoft.errors import ConfigError

__all__ = [
    "DEFAULT_THRESHOLD",
    "THRESHOLD_RULE",
    "Binarisation",
    "bounding_box",
    "binarise",
    "keep_large_lesions",
    "postprocess",
]

DEFAULT_THRESHOLD = 0.5
#: How a probability is compared with the threshold, stated in every output that records one.
THRESHOLD_RULE = "prob >= threshold"


@dataclass(frozen=True)
class Binarisation:
    """How probabilities become a segmentation (recorded by ``calibrate`` and ``predict``).

    Attributes
    ----------
    threshold : float
        Probability threshold in (0, 1]; lesion where ``prob >= threshold``.
    min_size : int
        Keep lesions of strictly more than ``min_size`` voxels.
    connectivity : {6, 18, 26}
        Voxel neighbourhood of a lesion (18 is the ISBI 2015 definition).
    """

    threshold: float = DEFAULT_THRESHOLD
    min_size: int = DEFAULT_MIN_SIZE
    connectivity: int = DEFAULT_CONNECTIVITY

    def __post_init__(self) -> None:
        threshold = self.threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float, np.floating))
            or not (math.isfinite(float(threshold)) and 0.0 < float(threshold) <= 1.0)
        ):
            raise ConfigError(
                "Invalid value for `--threshold`. Expected a float in (0, 1]. "
                f"Received: {threshold!r}"
            )
        object.__setattr__(self, "threshold", float(threshold))
        try:
            LesionDefinition(self.connectivity, self.min_size)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        object.__setattr__(self, "min_size", int(self.min_size))
        object.__setattr__(self, "connectivity", int(self.connectivity))

    @property
    def lesion_definition(self) -> LesionDefinition:
        """The lesion definition used for small-lesion removal."""
        return LesionDefinition(self.connectivity, self.min_size)

    def describe(self) -> str:
        """One line for reports: ``"prob >= 0.5, then 18-connected components of > 18 voxels"``."""
        return f"prob >= {self.threshold:g}, then {self.lesion_definition.describe()}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields plus the threshold rule and the lesion definition in words."""
        return {
            **asdict(self),
            "rule": THRESHOLD_RULE,
            "lesion_definition": self.lesion_definition.describe(),
        }

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """Segment ``prob`` (see :func:`postprocess`)."""
        return postprocess(
            prob, self.threshold, min_size=self.min_size, connectivity=self.connectivity
        )


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every non-zero voxel of ``mask``.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)

    Returns
    -------
    tuple of slice, or None
        Index of the box (``mask[box]``); None when ``mask`` has no non-zero voxel.
    """
    mask = np.asarray(mask)
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=others))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def binarise(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels whose probability is at least ``threshold``.

    Parameters
    ----------
    prob : ndarray of shape (X, Y, Z)
        Probabilities (any floating type; integer arrays are compared as float64).
    threshold : float
        Compared after conversion to ``prob``'s floating type, so the same threshold gives the
        same mask whether the comparison is done here or on a sorted or quantised copy of
        ``prob`` (as :mod:`mssoft.workflows.calibrate` does).

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        ``prob >= threshold``; NaN voxels are not lesion.
    """
    prob = np.asarray(prob)
    if prob.dtype.kind != "f":
        prob = prob.astype(np.float64)
    return prob >= prob.dtype.type(threshold)


def postprocess(
    prob: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """Threshold probabilities and keep the lesions of more than ``min_size`` voxels.

    Parameters
    ----------
    prob : ndarray of shape (X, Y, Z)
        Lesion probabilities in [0, 1].
    threshold : float, optional
        Lesion where ``prob >= threshold``.
    min_size : int, optional
        Lesions (connected components) of ``<= min_size`` voxels are removed: with 18, a component
        of 18 voxels goes and one of 19 stays.
    connectivity : {6, 18, 26}, optional
        Neighbourhood of a component (:func:`mssoft.arrays.lesions.remove_small_lesions`).

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The segmentation.

    Examples
    --------
    >>> prob = np.zeros((5, 5, 5), np.float32)
    >>> prob[1:4, 1:4, 1:4] = 0.9          # 27 voxels: kept
    >>> prob[0, 0, 0] = 0.9                # 1 voxel: removed
    >>> int(postprocess(prob, 0.5).sum())
    27
    """
    mask = binarise(prob, threshold)
    return keep_large_lesions(mask, min_size=min_size, connectivity=connectivity)


def keep_large_lesions(
    mask: np.ndarray, *, min_size: int = DEFAULT_MIN_SIZE, connectivity: int = DEFAULT_CONNECTIVITY
) -> np.ndarray:
    """:func:`mssoft.arrays.lesions.remove_small_lesions` computed inside the mask's bounding box.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    min_size, connectivity : int
        As :func:`postprocess`.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        Identical to ``remove_small_lesions(mask, ...)``.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        LesionDefinition(connectivity, min_size)  # still validate the arguments
        return out
    out[box] = remove_small_lesions(mask[box], min_size=min_size, connectivity=connectivity)
    return out
