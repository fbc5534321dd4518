"""Soft lesion masks from a binary expert mask (Kats et al., ISBI 2019), in pure NumPy/SciPy.

The binary mask ``M`` is grown by 3D dilation to ``ratio`` times its volume: the dilated region
``D0`` is the ``round((ratio - 1) * |M|)`` voxels outside ``M`` that are nearest to ``M`` by
Euclidean distance in millimetres (a growing ball, stopped exactly at the target count). Voxels at
equal distance are taken in a fixed scrambled order of their RAS array index (a multiplicative
hash), so a partly used distance shell is spread evenly over all lesions rather than given to the
lesions nearest the array origin; the result is deterministic and does not depend on the file's
orientation. Dilated voxels darker than a FLAIR
threshold are dropped, ``D = D0 ∩ {FLAIR >= t}``, and the soft mask is ``S = M + gamma * D``.

Two extensions beyond the paper (both default off):

* several raters (:func:`multi_rater_soft_mask`): inside the union ``U`` of the raters' masks the
  label is the share of raters who marked the voxel (``1/R ... 1``); the ring is grown from ``U``
  exactly as from ``M``;
* graded rings (``ring="linear"`` or ``"gaussian"``, :func:`ring_values`): the ring's voxel set is
  unchanged, its value falls with the Euclidean distance ``d`` (mm) to the lesion, from gamma at
  the nearest shell.

Distances are computed only in the lesions' neighbourhood: in small boxes around the lesion voxels
(one per occupied 16-voxel cube of the grid), each grown by a margin until the voxels provably
within the margin reach the target count. A 181 x 217 x 181 scan with tens of lesions takes about
0.1 s (``make bench``); one distance transform of the whole lesion bounding box took 0.2-0.4 s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY, label_lesions

__all__ = [
    "FlairThreshold",
    "parse_flair_threshold",
    "resolve_flair_threshold",
    "dilation_region",
    "soft_mask",
    "validate_soft_mask_params",
    "is_binary_setting",
    "SoftMaskParams",
    "soft_mask_from_params",
    "RING_MODES",
    "RING_PROFILES",
    "RingProfile",
    "ring_values",
    "rater_share",
    "multi_rater_soft_mask",
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
        ``"pNN"``, a number, ``"none"`` or None (parsed with :func:`parse_flair_threshold`).

    Returns
    -------
    float or None
        The intensity ``t``; voxels with ``FLAIR < t`` are excluded from the soft ring. None when
        the exclusion is disabled.
    """
    return _absolute_threshold(flair, parse_flair_threshold(threshold))


def _absolute_threshold(flair: np.ndarray, threshold: FlairThreshold) -> float | None:
    """:func:`resolve_flair_threshold` of a threshold that is already parsed."""
    if threshold is None or isinstance(threshold, float):
        return threshold
    brain = flair[(flair != 0) & np.isfinite(flair)]
    if brain.size == 0:
        raise ValueError("FLAIR has no non-zero voxel: cannot compute a percentile threshold")
    # `brain` is a fresh copy: the percentile may partition it in place (same value, no copy).
    return float(np.percentile(brain, float(threshold[1:]), overwrite_input=True))


def is_binary_setting(ratio: float, gamma: float) -> bool:
    """True when ``ratio`` and ``gamma`` give the binary mask itself (ratio 1 or gamma 0).

    The one definition of "binary mask settings": masks, training, cv and reports all ask here.
    """
    return float(ratio) == 1.0 or float(gamma) == 0.0


@dataclass(frozen=True)
class SoftMaskParams:
    """Validated soft-mask settings: the one place where ratio, gamma and the threshold are checked.

    Attributes
    ----------
    ratio : float
        Dilated volume relative to the mask (>= 1; 1.2 is "120 %").
    gamma : float
        Soft label of the ring, in [0, 1).
    flair_threshold : str, float or None
        Parsed threshold (:func:`parse_flair_threshold`): ``"pNN"``, an intensity, or None.
    per_lesion : bool
        Grow each lesion to ``ratio`` times its own volume.
    ring : {"constant", "linear", "gaussian"}
        Profile of the ring's values (:func:`ring_values`); ``constant`` is the paper.
    ring_sigma : float
        Width (mm) of the ``gaussian`` profile, > 0.

    Raises
    ------
    ValueError
        On construction, for an invalid ratio, gamma, threshold, ring or ring width.
    """

    ratio: float = 1.2
    gamma: float = 0.3
    flair_threshold: FlairThreshold = "p50"
    per_lesion: bool = False
    ring: str = "constant"
    ring_sigma: float = 2.0

    def __post_init__(self) -> None:
        validate_soft_mask_params(float(self.ratio), float(self.gamma))
        if self.ring not in RING_PROFILES:
            raise ValueError(
                f"Invalid value for `ring` (--ring). Expected one of {', '.join(RING_MODES)}. "
                f"Received: {self.ring!r}"
            )
        sigma = float(self.ring_sigma)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(
                "Invalid value for `ring_sigma` (--ring-sigma). Expected a number of mm > 0. "
                f"Received: {self.ring_sigma}"
            )
        object.__setattr__(self, "ring_sigma", sigma)
        object.__setattr__(self, "ratio", float(self.ratio))
        object.__setattr__(self, "gamma", float(self.gamma))
        object.__setattr__(self, "flair_threshold", parse_flair_threshold(self.flair_threshold))
        object.__setattr__(self, "per_lesion", bool(self.per_lesion))

    @property
    def is_binary(self) -> bool:
        """True when these settings give the binary mask (:func:`is_binary_setting`)."""
        return is_binary_setting(self.ratio, self.gamma)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready settings: ``ring`` only when not ``constant``, and of the ``ring_*``
        parameters only those the ring profile reads (:attr:`RingProfile.parameters`), so the
        record of the paper's settings stays as it was before the graded rings existed."""
        record = asdict(self)
        if self.ring == "constant":
            del record["ring"]
        used = RING_PROFILES[self.ring].parameters
        return {k: v for k, v in record.items() if not k.startswith("ring_") or k in used}


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


def _tie_break_key(flat: np.ndarray) -> np.ndarray:
    """A fixed scrambling of voxel indices that orders voxels at equal distance.

    Knuth's multiplicative hash (a bijection on 32-bit integers) spreads the voxels of a partly
    filled distance shell evenly over the whole mask, where plain index order would give the whole
    shell to the lesions with the lowest indices.
    """
    return (flat.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)


_Box = tuple[np.ndarray, np.ndarray]  # (lo, hi) voxel corners, hi exclusive
#: Side (voxels) of the grid cubes that group lesion voxels into boxes (see _block_boxes).
_BLOCK = 16


def _first_pad(n_seed: int, count: int, spacing: np.ndarray) -> np.ndarray:
    """A first search margin (voxels per axis): the shell of a ball of ``n_seed + count`` voxels."""
    voxel = float(np.prod(spacing))
    radius_mm = (3.0 * (n_seed + count) * voxel / (4.0 * math.pi)) ** (1 / 3)
    radius_mm = max(radius_mm - (3.0 * n_seed * voxel / (4.0 * math.pi)) ** (1 / 3), 0.0)
    return np.ceil((radius_mm + spacing.max()) / spacing).astype(int) + 1


def _candidates(
    seed_in: Callable[[tuple[slice, ...]], np.ndarray],
    boxes: Sequence[_Box],
    exclude: np.ndarray,
    spacing: np.ndarray,
    pad: np.ndarray,
    reach_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and distances (mm) of voxels not in ``exclude`` within ``reach_mm`` of the seed.

    Each box, grown by ``pad`` voxels, gets the distance transform of the seed voxels it holds.
    That value is never below the true distance to the seed, and equals it for every voxel
    within ``reach_mm <= min(pad * spacing)`` of a seed voxel of the box. Every voxel within
    ``reach_mm`` of the seed is in the grown box of its nearest seed voxel, so the smallest value
    over the boxes is the true distance for exactly the voxels that matter.
    """
    shape = np.array(exclude.shape)
    flats, dists = [], []
    for lo, hi in boxes:
        glo, ghi = np.maximum(lo - pad, 0), np.minimum(hi + pad, shape)
        crop = tuple(slice(a, b) for a, b in zip(glo, ghi, strict=True))
        dist = ndimage.distance_transform_edt(~seed_in(crop), sampling=spacing)
        within = ~exclude[crop]
        if math.isfinite(reach_mm):
            within &= dist <= reach_mm
        local = np.flatnonzero(within)
        coords = tuple(c + o for c, o in zip(np.unravel_index(local, dist.shape), glo, strict=True))
        flats.append(np.ravel_multi_index(coords, tuple(shape)))
        dists.append(dist.ravel()[local])
    flat, dist = np.concatenate(flats), np.concatenate(dists)
    if len(boxes) > 1:  # a voxel in several grown boxes keeps its smallest (true) distance
        order = np.lexsort((dist, flat))
        flat, dist = flat[order], dist[order]
        first = np.ones(flat.size, dtype=bool)
        first[1:] = flat[1:] != flat[:-1]
        flat, dist = flat[first], dist[first]
    return flat, dist


def _nearest_outside(
    seed_in: Callable[[tuple[slice, ...]], np.ndarray],
    boxes: Sequence[_Box],
    exclude: np.ndarray,
    count: int,
    spacing: np.ndarray,
    *,
    n_seed: int,
    available: int,
) -> np.ndarray:
    """Flat indices of the ``count`` voxels not in ``exclude`` nearest to the seed.

    ``seed_in(crop)`` gives the seed voxels inside a crop of the volume; ``boxes`` together hold
    every seed voxel (e.g. one box per lesion). The distance transform is computed only in the
    boxes grown by a margin, and the margin doubles until the voxels provably within it number at
    least ``count`` (see :func:`_candidates`). Equal distances: scrambled RAS index order
    (:func:`_tie_break_key`).
    """
    shape = np.array(exclude.shape)
    count = min(count, available)
    if count <= 0:
        return np.empty(0, dtype=np.intp)
    lo_all = np.min([lo for lo, _ in boxes], axis=0)
    hi_all = np.max([hi for _, hi in boxes], axis=0)
    pad = _first_pad(max(n_seed, 1), count, spacing)
    while True:
        # Beyond a grown box along an axis a the volume continues only if pad[a] < shape[a]; a
        # voxel outside every grown box is then farther than pad[a] * spacing[a] from the seed.
        open_axes = [a for a in range(3) if pad[a] < shape[a]]
        reach_mm = min((pad[a] * spacing[a] for a in open_axes), default=math.inf)
        grown = [np.prod(np.minimum(hi + pad, shape) - np.maximum(lo - pad, 0)) for lo, hi in boxes]
        union = np.prod(np.minimum(hi_all + pad, shape) - np.maximum(lo_all - pad, 0))
        # Overlapping grown boxes: one box around everything costs less.
        use = boxes if sum(grown) < union else [(lo_all, hi_all)]
        flat, dist = _candidates(seed_in, use, exclude, spacing, pad, reach_mm)
        if flat.size >= count or not open_axes:
            order = np.lexsort((_tie_break_key(flat), dist))[:count]
            return flat[order]
        pad = pad * 2


def _block_boxes(binary: np.ndarray, block: int = _BLOCK) -> list[_Box]:
    """Tight boxes of the mask voxels of each ``block``-sided cube of the grid that holds any.

    A cheap grouping of the lesion voxels into small boxes (no connected-component labelling of
    the whole volume); :func:`_nearest_outside` gives the same result for any grouping.
    """
    coords = np.stack(np.nonzero(binary), axis=1)
    key = np.ravel_multi_index(
        tuple((coords // block).T), tuple(-(-np.array(binary.shape) // block))
    )
    order = np.argsort(key, kind="stable")
    coords, key = coords[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lo = np.minimum.reduceat(coords, starts, axis=0)
    hi = np.maximum.reduceat(coords, starts, axis=0) + 1
    return list(zip(lo, hi, strict=True))


def _dilation_flat(
    binary: np.ndarray,
    spacing: np.ndarray,
    ratio: float,
    per_lesion: bool,
    connectivity: int,
) -> np.ndarray:
    """Flat indices of ``D0`` (see :func:`dilation_region`); ``binary`` is a non-empty bool mask."""
    n_lesion = int(np.count_nonzero(binary))
    available = binary.size - n_lesion
    if not per_lesion:
        return _nearest_outside(
            lambda crop: binary[crop],
            _block_boxes(binary),
            binary,
            round((ratio - 1.0) * n_lesion),
            spacing,
            n_seed=n_lesion,
            available=available,
        )
    labels, _ = label_lesions(binary, connectivity=connectivity)
    parts = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        size = int(np.count_nonzero(labels[box] == index))
        parts.append(
            _nearest_outside(
                lambda crop, index=index: labels[crop] == index,
                [_corners(box)],
                binary,
                round((ratio - 1.0) * size),
                spacing,
                n_seed=size,
                available=available,
            )
        )
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.intp)


def _corners(box: tuple[slice, ...]) -> _Box:
    return np.array([s.start for s in box]), np.array([s.stop for s in box])


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
    spacing_arr = _check_grid(binary, spacing)
    region = np.zeros(binary.shape, dtype=bool)
    if ratio == 1.0 or not binary.any():
        return region
    region.ravel()[_dilation_flat(binary, spacing_arr, ratio, per_lesion, connectivity)] = True
    return region


def _check_grid(binary: np.ndarray, spacing: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """The spacing as a float64 array; ValueError unless 3 positive numbers and a 3D mask."""
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    if spacing_arr.shape != (3,) or not np.all(spacing_arr > 0):
        raise ValueError(
            f"Invalid value for `spacing`. Expected 3 positive numbers. Received: {spacing}"
        )
    if binary.ndim != 3:
        raise ValueError(f"`mask` must be 3D, got shape {binary.shape}")
    return spacing_arr


def soft_mask(
    mask: np.ndarray,
    flair: np.ndarray | None = None,
    *,
    spacing: tuple[float, float, float] | np.ndarray,
    ratio: float = 1.2,
    gamma: float = 0.3,
    flair_threshold: FlairThreshold = "p50",
    per_lesion: bool = False,
    ring: str = "constant",
    ring_sigma: float = 2.0,
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
    ring : {"constant", "linear", "gaussian"}, optional
        Profile of the ring's values (:func:`ring_values`).
    ring_sigma : float, optional
        Width in mm of the ``gaussian`` profile.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        1 inside ``M``, ``gamma`` (or the graded values) on the kept ring ``D``, 0 elsewhere.

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
    params = SoftMaskParams(ratio, gamma, flair_threshold, per_lesion, ring, ring_sigma)
    return soft_mask_from_params(mask, flair, spacing=spacing, params=params)


def soft_mask_from_params(
    mask: np.ndarray,
    flair: np.ndarray | None,
    *,
    spacing: tuple[float, float, float] | np.ndarray,
    params: SoftMaskParams,
) -> np.ndarray:
    """:func:`soft_mask` with settings validated once (e.g. once per run rather than per scan).

    Parameters and return value as :func:`soft_mask`; ``params`` carries ratio, gamma, the parsed
    FLAIR threshold, the per-lesion flag and the ring profile.
    """
    binary = np.asarray(mask) != 0
    out = binary.astype(np.float32)
    if params.is_binary or not binary.any():
        return out
    ring, values = _ring(binary, flair, spacing, params)
    out.ravel()[ring] = values
    return out


def _ring(
    union: np.ndarray,
    flair: np.ndarray | None,
    spacing: tuple[float, float, float] | np.ndarray,
    params: SoftMaskParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the kept ring ``D`` grown from the non-empty bool mask ``union``, values."""
    spacing_arr = _check_grid(union, spacing)
    threshold = params.flair_threshold
    if threshold is not None:
        if flair is None:
            raise ValueError("`flair` is required unless flair_threshold is None")
        if np.shape(flair) != union.shape:
            raise ValueError(
                f"`flair` shape {np.shape(flair)} differs from mask shape {union.shape}"
            )
    # Flat indices of the ring rather than a second full-size volume: a ring is a few
    # thousand voxels of a scan of millions.
    ring = _dilation_flat(union, spacing_arr, params.ratio, params.per_lesion, DEFAULT_CONNECTIVITY)
    if threshold is not None:
        flair = np.asarray(flair)
        t = _absolute_threshold(flair, threshold)
        ring = ring[flair[np.unravel_index(ring, union.shape)] >= t]
    if params.ring == "constant" or ring.size == 0:
        return ring, np.full(ring.size, params.gamma, dtype=np.float32)
    distance = _ring_distances(union, ring, spacing_arr)
    return ring, _profile_values(distance, params, float(spacing_arr.min()))


def _ring_distances(union: np.ndarray, ring: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) from each ring voxel (flat indices) to the nearest mask voxel.

    Computed in the bounding box of the mask and the ring: it holds every mask voxel, so the
    distance transform there is exact for every ring voxel.
    """
    coords = np.stack(np.unravel_index(ring, union.shape), axis=1)
    lesion = np.stack(np.nonzero(union), axis=1)
    lo = np.minimum(coords.min(axis=0), lesion.min(axis=0))
    hi = np.maximum(coords.max(axis=0), lesion.max(axis=0)) + 1
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    dist = ndimage.distance_transform_edt(~union[crop], sampling=spacing)
    return dist[tuple((coords - lo).T)]


def _constant(offset_mm: np.ndarray, span_mm: float, params: SoftMaskParams) -> np.ndarray:
    return np.full(offset_mm.shape, params.gamma)


def _linear(offset_mm: np.ndarray, span_mm: float, params: SoftMaskParams) -> np.ndarray:
    return params.gamma * (1.0 - offset_mm / span_mm)


def _gaussian(offset_mm: np.ndarray, span_mm: float, params: SoftMaskParams) -> np.ndarray:
    return params.gamma * np.exp(-(offset_mm**2) / (2.0 * params.ring_sigma**2))


@dataclass(frozen=True)
class RingProfile:
    """How a ring profile turns distances into soft labels.

    Attributes
    ----------
    values : callable
        ``values(offset_mm, span_mm, params)``: ``offset_mm`` (ndarray of shape (N,)) is each ring
        voxel's distance to the lesion minus the smallest one (mm), ``span_mm`` is the largest
        offset plus the smallest voxel spacing (mm, > 0) and ``params`` the
        :class:`SoftMaskParams`; returns the N labels, ``params.gamma`` at offset 0.
    parameters : tuple of str
        The :class:`SoftMaskParams` fields (``ring_*``) the profile reads; the others are left
        out of the settings' record (:meth:`SoftMaskParams.to_dict`).
    """

    values: Callable[[np.ndarray, float, SoftMaskParams], np.ndarray]
    parameters: tuple[str, ...] = ()


#: Ring profiles by name (``--ring``); a new profile is one entry (and its function) here.
RING_PROFILES: dict[str, RingProfile] = {
    "constant": RingProfile(_constant),
    "linear": RingProfile(_linear),
    "gaussian": RingProfile(_gaussian, ("ring_sigma",)),
}
#: The ring profile names, ``constant`` (the paper) first: the choices of ``--ring``/``--rings``.
RING_MODES = tuple(RING_PROFILES)


def ring_values(
    distance_mm: np.ndarray,
    *,
    gamma: float,
    mode: str = "constant",
    sigma_mm: float = 2.0,
    spacing_min_mm: float = 1.0,
) -> np.ndarray:
    """Soft labels of ring voxels from their distance to the lesion.

    With ``d`` the distance, ``d_min``/``d_max`` its smallest/largest value over the ring and
    ``h`` the smallest voxel spacing:

    * ``constant`` (the paper): ``gamma``;
    * ``linear``: ``gamma * (1 - (d - d_min) / (d_max - d_min + h))``, so the nearest shell gets
      gamma and every ring voxel stays > 0;
    * ``gaussian``: ``gamma * exp(-(d - d_min)**2 / (2 * sigma**2))``.

    Parameters
    ----------
    distance_mm : ndarray of shape (N,)
        Euclidean distance in mm of each ring voxel to the nearest lesion voxel.
    gamma : float
        Value at the nearest shell, in [0, 1).
    mode : {"constant", "linear", "gaussian"}
        A key of :data:`RING_PROFILES`.
    sigma_mm : float
        Width of the gaussian profile in mm.
    spacing_min_mm : float
        ``h``, the smallest voxel spacing in mm.

    Returns
    -------
    ndarray of float32, shape (N,)
        Values in ``(0, gamma]`` (``gaussian`` may underflow to 0 far away), non-increasing in
        ``distance_mm``.

    Examples
    --------
    >>> values = ring_values(np.array([1.0, 2.0, 3.0]), gamma=0.3, mode="linear")
    >>> [round(float(v), 3) for v in values]
    [0.3, 0.2, 0.1]
    """
    if mode not in RING_PROFILES:
        raise ValueError(f"Invalid value for `ring`: expected one of {RING_MODES}, got {mode!r}")
    params = SoftMaskParams(1.0, gamma, None, ring=mode, ring_sigma=sigma_mm)
    return _profile_values(distance_mm, params, spacing_min_mm)


def _profile_values(
    distance_mm: np.ndarray, params: SoftMaskParams, spacing_min_mm: float
) -> np.ndarray:
    """:func:`ring_values` with validated settings: float32 labels of shape (N,)."""
    d = np.asarray(distance_mm, dtype=np.float64)
    if d.size == 0:
        return np.full(d.shape, params.gamma, dtype=np.float32)
    d_min, d_max = float(d.min()), float(d.max())
    span = d_max - d_min + float(spacing_min_mm)
    return RING_PROFILES[params.ring].values(d - d_min, span, params).astype(np.float32)


def rater_share(masks: Sequence[np.ndarray]) -> np.ndarray:
    """The share of raters who marked each voxel.

    Parameters
    ----------
    masks : sequence of R ndarrays of shape (X, Y, Z)
        Binary masks (non-zero is lesion) of R raters on one grid.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        ``k / R`` where k raters marked the voxel.
    """
    if not masks:
        raise ValueError("`masks` must hold at least one rater's mask")
    shape = np.shape(masks[0])
    if any(np.shape(m) != shape for m in masks):
        raise ValueError(f"rater masks differ in shape: {[np.shape(m) for m in masks]}")
    count = np.zeros(shape, dtype=np.float32)
    for mask in masks:
        count += np.asarray(mask) != 0
    return count / np.float32(len(masks))


def multi_rater_soft_mask(
    masks: Sequence[np.ndarray],
    flair: np.ndarray | None,
    *,
    spacing: tuple[float, float, float] | np.ndarray,
    params: SoftMaskParams,
) -> np.ndarray:
    """Soft mask from several raters: the raters' share inside their union ``U``, plus the ring.

    Inside ``U`` (voxels any rater marked) the label is the share of raters who marked the voxel
    (:func:`rater_share`: 0.5 or 1 for two raters). The ring is grown from ``U`` as
    :func:`soft_mask_from_params` grows it from one mask (nearest-first to ``ratio * |U|``,
    FLAIR exclusion, ``ring`` profile) and gets gamma (or the graded values) where no rater
    marked. With one mask this is :func:`soft_mask_from_params`.

    Parameters
    ----------
    masks : sequence of R ndarrays of shape (X, Y, Z)
        The raters' binary masks, on one grid.
    flair, spacing, params
        As :func:`soft_mask_from_params`.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)

    Examples
    --------
    >>> a = np.zeros((9, 9, 9), bool); a[3:6, 3:6, 3:6] = True
    >>> b = np.zeros_like(a); b[3:6, 3:6, 4:7] = True
    >>> p = SoftMaskParams(1.2, 0.3, None)
    >>> s = multi_rater_soft_mask([a, b], None, spacing=(1, 1, 1), params=p)
    >>> sorted(np.unique(s).tolist()) == sorted({0.0, 0.5, 1.0, float(np.float32(0.3))})
    True
    """
    share = rater_share(masks)
    union = share > 0
    if params.is_binary or not union.any():
        return share
    ring, values = _ring(union, flair, spacing, params)
    share.ravel()[ring] = values
    return share
