"""Soft lesion masks from a binary expert mask (Kats et al., ISBI 2019), in pure NumPy/SciPy.

The binary mask ``M`` is grown by 3D dilation to ``ratio`` times its volume: the dilated region
``D0`` is the ``round((ratio - 1) * |M|)`` voxels outside ``M`` that are nearest to ``M`` by
Euclidean distance in millimetres (a growing ball, stopped exactly at the target count). Voxels at
equal distance are taken in a fixed scrambled order of their RAS array index (a multiplicative
hash), so a partly used distance shell is spread evenly over all lesions rather than given to the
lesions nearest the array origin; the result is deterministic and does not depend on the file's
orientation. Dilated voxels darker than a FLAIR
threshold are dropped, ``D = D0 ∩ {FLAIR >= t}``, and the soft mask is ``S = M + gamma * D``.

Distances are computed only in the lesions' neighbourhood (a bounding box grown until it provably
holds the target count), so a whole brain scan takes a fraction of a second.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mssoft.lesions import DEFAULT_CONNECTIVITY, label_lesions

__all__ = [
    "FlairThreshold",
    "parse_flair_threshold",
    "resolve_flair_threshold",
    "dilation_region",
    "soft_mask",
    "validate_soft_mask_params",
]

FlairThreshold = str | float | None
_BAD_THRESHOLD = "Invalid value for `flair_threshold` (--flair-threshold) {!r}: "
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d*)?)$")


def parse_flair_threshold(value: str | float | None) -> FlairThreshold:
    """Parse a FLAIR threshold given as ``"pNN"``, a number, or ``"none"``.

    Parameters
    ----------
    value : str, float or None
        ``"p50"`` is the 50th percentile of the brain's (non-zero) FLAIR intensities; a number is
        an absolute intensity; ``"none"`` or None disables the exclusion.

    Returns
    -------
    str, float or None
        ``"pNN"`` (normalised, e.g. ``"p50"``), a float, or None.

    Raises
    ------
    ValueError
        The value is none of the above, or a percentile outside [0, 100].
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise ValueError(_BAD_THRESHOLD.format(value) + "expected a finite number")
        return float(value)
    text = str(value).strip().lower()
    if text in ("none", "off", ""):
        return None
    match = _PERCENTILE.match(text)
    if match:
        pct = float(match.group(1))
        if not 0.0 <= pct <= 100.0:
            raise ValueError(_BAD_THRESHOLD.format(value) + "percentile must be in [0, 100]")
        return f"p{pct:g}"
    try:
        number = float(text)
    except ValueError:
        raise ValueError(
            _BAD_THRESHOLD.format(value) + "expected 'pNN' (percentile of brain FLAIR), "
            "a number (absolute intensity) or 'none'"
        ) from None
    return parse_flair_threshold(number)


def resolve_flair_threshold(flair: np.ndarray, threshold: FlairThreshold) -> float | None:
    """Turn a FLAIR threshold into an absolute intensity.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        FLAIR intensities; non-zero finite voxels are the brain.
    threshold : str, float or None
        As returned by :func:`parse_flair_threshold`.

    Returns
    -------
    float or None
        The intensity ``t``; voxels with ``FLAIR < t`` are excluded from the soft ring. None when
        the exclusion is disabled.
    """
    threshold = parse_flair_threshold(threshold)
    if threshold is None or isinstance(threshold, float):
        return threshold
    brain = flair[(flair != 0) & np.isfinite(flair)]
    if brain.size == 0:
        raise ValueError("FLAIR has no non-zero voxel: cannot compute a percentile threshold")
    return float(np.percentile(brain, float(threshold[1:])))


def validate_soft_mask_params(ratio: float, gamma: float) -> None:
    """Raise ValueError unless ``ratio >= 1`` and ``0 <= gamma < 1`` (both finite)."""
    if not (math.isfinite(ratio) and ratio >= 1.0):
        raise ValueError(
            f"Invalid value for `ratio` (--ratio). Expected a number >= 1. Received: {ratio}"
        )
    if not (math.isfinite(gamma) and 0.0 <= gamma < 1.0):
        raise ValueError(
            f"Invalid value for `gamma` (--gamma). Expected a number in [0, 1). Received: {gamma}"
        )


@dataclass(frozen=True)
class _Box:
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.lo, self.hi, strict=True))


def _tie_break_key(flat: np.ndarray) -> np.ndarray:
    """A fixed scrambling of voxel indices that orders voxels at equal distance.

    Knuth's multiplicative hash (a bijection on 32-bit integers) spreads the voxels of a partly
    filled distance shell evenly over the whole mask, where plain index order would give the whole
    shell to the lesions with the lowest indices.
    """
    return (flat.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)


def _nearest_outside(
    seed: np.ndarray,
    exclude: np.ndarray,
    count: int,
    spacing: np.ndarray,
    box_lo: np.ndarray,
    box_hi: np.ndarray,
) -> np.ndarray:
    """Flat indices of the ``count`` voxels not in ``exclude`` nearest to ``seed``.

    ``box_lo``/``box_hi`` bound the seed voxels. The search box is padded until every voxel left
    outside it is provably farther than the ``count``-th nearest voxel inside it.
    """
    shape = np.array(seed.shape)
    available = int(exclude.size - np.count_nonzero(exclude))
    count = min(count, available)
    if count <= 0:
        return np.empty(0, dtype=np.intp)
    n_seed = max(
        int(
            np.count_nonzero(seed[tuple(slice(a, b) for a, b in zip(box_lo, box_hi, strict=True))])
        ),
        1,
    )
    # First guess: the shell of a ball holding n_seed + count voxels, plus one voxel.
    radius_mm = (3.0 * (n_seed + count) * float(np.prod(spacing)) / (4.0 * math.pi)) ** (1 / 3)
    radius_mm = max(
        radius_mm - (3.0 * n_seed * float(np.prod(spacing)) / (4.0 * math.pi)) ** (1 / 3), 0.0
    )
    pad = np.ceil((radius_mm + spacing.max()) / spacing).astype(int) + 1
    while True:
        lo = np.maximum(box_lo - pad, 0)
        hi = np.minimum(box_hi + pad, shape)
        box = _Box(tuple(lo), tuple(hi))
        crop_seed = seed[box.slices]
        dist = ndimage.distance_transform_edt(~crop_seed, sampling=spacing)
        # Voxels outside the box differ from every seed voxel by more than pad[a] voxels along a
        # truncated axis a, hence lie farther than pad[a] * spacing[a] mm.
        truncated = [(lo[a] > 0, hi[a] < shape[a]) for a in range(3)]
        bounds = [pad[a] * spacing[a] for a in range(3) if any(truncated[a])]
        safe_mm = min(bounds) if bounds else math.inf
        eligible = ~exclude[box.slices]
        within = eligible & (dist <= safe_mm)
        if np.count_nonzero(within) >= count or not bounds:
            local = np.flatnonzero(within if bounds else eligible)
            local_dist = dist.ravel()[local]
            # Equal distances: scrambled RAS index order (see _tie_break_key).
            coords = np.unravel_index(local, crop_seed.shape)
            global_flat = np.ravel_multi_index(
                tuple(c + o for c, o in zip(coords, lo, strict=True)), tuple(shape)
            )
            order = np.lexsort((_tie_break_key(global_flat), local_dist))[:count]
            return global_flat[order]
        pad = pad * 2


def dilation_region(
    mask: np.ndarray,
    *,
    spacing: tuple[float, float, float] | np.ndarray,
    ratio: float = 1.2,
    per_lesion: bool = False,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """The region ``D0`` that grows a binary mask to ``ratio`` times its volume.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary lesion mask (non-zero is lesion). Not modified.
    spacing : sequence of 3 floats
        Voxel size in millimetres along each array axis.
    ratio : float, optional
        Target volume of ``mask | D0`` relative to ``mask`` (1.2 is "120 %").
    per_lesion : bool, optional
        Grow each lesion (connected component) to ``ratio`` times its own volume, from its own
        voxels. Rings of neighbouring lesions may overlap, so their union can hold fewer voxels
        than the sum of the targets.
    connectivity : {6, 18, 26}, optional
        Lesion definition for ``per_lesion``.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        ``D0``: the ``round((ratio - 1) * |M|)`` voxels outside ``M`` nearest to ``M`` in mm
        (fewer only if the volume has fewer voxels outside ``M``).
    """
    validate_soft_mask_params(ratio, 0.0)
    binary = np.asarray(mask) != 0
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    if spacing_arr.shape != (3,) or not np.all(spacing_arr > 0):
        raise ValueError(
            f"Invalid value for `spacing`. Expected 3 positive numbers. Received: {spacing}"
        )
    if binary.ndim != 3:
        raise ValueError(f"`mask` must be 3D, got shape {binary.shape}")
    region = np.zeros(binary.shape, dtype=bool)
    n_lesion = int(np.count_nonzero(binary))
    if n_lesion == 0 or ratio == 1.0:
        return region
    if per_lesion:
        labels, _ = label_lesions(binary, connectivity=connectivity)
        objects = ndimage.find_objects(labels)
        for index, box in enumerate(objects, start=1):
            if box is None:
                continue
            lesion = _component(labels, index, box)
            count = round((ratio - 1.0) * int(np.count_nonzero(lesion)))
            lo = np.array([s.start for s in box])
            hi = np.array([s.stop for s in box])
            flat = _nearest_outside(lesion, binary, count, spacing_arr, lo, hi)
            region.ravel()[flat] = True
        return region
    count = round((ratio - 1.0) * n_lesion)
    where = np.nonzero(binary)
    lo = np.array([w.min() for w in where])
    hi = np.array([w.max() + 1 for w in where])
    flat = _nearest_outside(binary, binary, count, spacing_arr, lo, hi)
    region.ravel()[flat] = True
    return region


def _component(labels: np.ndarray, index: int, box: tuple[slice, ...]) -> np.ndarray:
    out = np.zeros(labels.shape, dtype=bool)
    out[box] = labels[box] == index
    return out


def soft_mask(
    mask: np.ndarray,
    flair: np.ndarray | None = None,
    *,
    spacing: tuple[float, float, float] | np.ndarray,
    ratio: float = 1.2,
    gamma: float = 0.3,
    flair_threshold: FlairThreshold = "p50",
    per_lesion: bool = False,
) -> np.ndarray:
    """Soft lesion mask ``S = M + gamma * D`` (Kats et al., ISBI 2019).

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary expert mask ``M`` (non-zero is lesion). Not modified.
    flair : ndarray of shape (X, Y, Z) or None
        FLAIR intensities on the same grid; needed unless ``flair_threshold`` is None.
    spacing : sequence of 3 floats
        Voxel size in millimetres along each array axis.
    ratio : float, optional
        Dilate ``M`` to ``ratio * |M|`` voxels (>= 1; 1 gives the binary mask).
    gamma : float, optional
        Soft label of the ring, in [0, 1) (0 gives the binary mask).
    flair_threshold : str, float or None, optional
        Ring voxels with ``FLAIR < t`` get 0: ``"pNN"`` is the NN-th percentile of the non-zero
        FLAIR voxels, a number is an absolute intensity, None (or ``"none"``) keeps every ring
        voxel.
    per_lesion : bool, optional
        Grow each lesion to ``ratio`` times its own volume (see :func:`dilation_region`).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        1 inside ``M``, ``gamma`` on the kept ring ``D``, 0 elsewhere.

    Raises
    ------
    ValueError
        Invalid ``ratio``, ``gamma``, ``spacing`` or threshold, or ``flair`` of another shape.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((9, 9, 9), bool); m[3:6, 3:6, 3:6] = True
    >>> s = soft_mask(m, spacing=(1, 1, 1), ratio=1.2, gamma=0.3, flair_threshold=None)
    >>> int((s == 1).sum()), int((s == np.float32(0.3)).sum())
    (27, 5)
    """
    validate_soft_mask_params(ratio, gamma)
    threshold = parse_flair_threshold(flair_threshold)
    binary = np.asarray(mask) != 0
    out = binary.astype(np.float32)
    if gamma == 0.0 or ratio == 1.0 or not binary.any():
        return out
    region = dilation_region(binary, spacing=spacing, ratio=ratio, per_lesion=per_lesion)
    if threshold is not None:
        if flair is None:
            raise ValueError("`flair` is required unless flair_threshold is None")
        if np.shape(flair) != binary.shape:
            raise ValueError(
                f"`flair` shape {np.shape(flair)} differs from mask shape {binary.shape}"
            )
        t = resolve_flair_threshold(np.asarray(flair), threshold)
        region &= np.asarray(flair) >= t
    out[region] = np.float32(gamma)
    return out
