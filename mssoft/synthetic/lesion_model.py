"""MS-like lesions: where they are, their shape, how they evolve, and their partial-volume map.

Lesions are ovoid and lobulated (a main ellipsoid, up to two satellite ellipsoids and a rough
border), with a blurred border whose width varies between lesions: the partial-volume ramp is
where human raters disagree. Their FLAIR contrast varies widely: about a third are faint (25-60 %
of a typical lesion's contrast), as on real scans, where a single FLAIR threshold misses them.
Four kinds are drawn, as in relapsing-remitting MS:

* ``periventricular`` (about 36 %): on the wall of a lateral ventricle, the long axis pointing
  away from it (Dawson's fingers);
* ``confluent`` (about 6 %): large bands along a ventricle wall, made of several lobes (the
  heavy tail of the size distribution);
* ``juxtacortical`` (about 20 %): in white matter touching the cortex;
* ``deep`` (about 38 %): small lesions in deep white matter.

Across time points of a patient each lesion keeps its place and shape; its size follows a slow
random walk (some grow, some shrink) and new lesions appear at follow-up time points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from mssoft.synthetic.anatomy import Anatomy
from mssoft.synthetic.fields import (
    Seed,
    crop_box,
    ellipsoid_distance,
    partial_volume,
    rotation_matrix,
    smooth_noise,
    stream,
)

__all__ = [
    "Lesion",
    "LESION_KINDS",
    "sample_lesions",
    "lesions_at",
    "render_lesions",
    "lesion_roughness",
]

LESION_KINDS = {"periventricular": 0.36, "confluent": 0.06, "juxtacortical": 0.20, "deep": 0.38}
# Median semi-axis (ISBI mm) and log-normal spread of each kind.
_SIZE_MM = {
    "periventricular": (2.8, 0.5),
    "confluent": (4.5, 0.3),
    "juxtacortical": (2.2, 0.45),
    "deep": (1.7, 0.45),
}
# Share of faint lesions (FLAIR contrast 0.25-0.6 of the typical lesion's).
_FAINT_SHARE = 0.35
# Lesions are not shrunk below this fraction of their ISBI size on coarse grids, so that small
# grids still hold lesions larger than the 18-voxel post-processing minimum.
_MIN_LESION_SCALE = 0.55
# How far each tissue can hold lesion (lesions sit in white matter, touch grey matter, never CSF).
_ELIGIBLE = {"wm": 1.0, "deep_gm": 0.8, "gm": 0.35, "csf": 0.0}


@dataclass(frozen=True)
class Lesion:
    """One lesion of a synthetic patient.

    Attributes
    ----------
    kind : str
        ``periventricular``, ``confluent``, ``juxtacortical`` or ``deep``.
    centre : ndarray of shape (3,)
        Centre in voxel coordinates (RAS array axes).
    axes : ndarray of shape (3,)
        Semi-axes of the main ellipsoid, in voxels, at its baseline size.
    rotation : ndarray of shape (3, 3)
        Rows are the ellipsoid's axes in array coordinates.
    lobes : tuple of (ndarray (3,), ndarray (3,))
        Satellite ellipsoids: centre offset and semi-axes, in the lesion's own frame, relative
        to the main semi-axes.
    border : float
        Width of the partial-volume ramp, in voxels.
    contrast : float
        Lesion-to-white-matter contrast relative to the typical lesion (1 is typical).
    t1_contrast : float
        The same on T1 (values above 1 are "black holes").
    onset : int
        First time point (0-based) at which the lesion exists.
    sizes : tuple of float
        Size factor (multiplies ``axes``) at time points ``onset``, ``onset + 1``, ...
    """

    kind: str
    centre: np.ndarray
    axes: np.ndarray
    rotation: np.ndarray
    lobes: tuple[tuple[np.ndarray, np.ndarray], ...]
    border: float
    contrast: float
    t1_contrast: float
    onset: int = 0
    sizes: tuple[float, ...] = field(default=(1.0,))

    def size_at(self, timepoint: int) -> float:
        """Size factor at ``timepoint`` (0 before the onset)."""
        if timepoint < self.onset:
            return 0.0
        step = min(timepoint - self.onset, len(self.sizes) - 1)
        return self.sizes[step]

    @property
    def extent(self) -> float:
        """Radius (voxels) of a sphere holding the lesion at size factor 1, border included."""
        reach = max(
            (
                float(np.linalg.norm(off * self.axes) + (ax * self.axes).max())
                for off, ax in self.lobes
            ),
            default=0.0,
        )
        return max(float(self.axes.max()), reach) * 1.35 + self.border + 1.0


def _candidates(anatomy: Anatomy) -> dict[str, np.ndarray]:
    """Voxel coordinates (N, 3) where each kind of lesion can be centred."""
    wm_core = (anatomy.wm >= 0.9) & anatomy.cerebrum
    depth = ndimage.distance_transform_edt(wm_core)
    vent = anatomy.ventricles
    wall = (vent > 0.15) & (vent < 0.85) & anatomy.cerebrum
    near_cortex = (
        wm_core & (depth >= 1.0) & (depth <= 2.5) & (ndimage.uniform_filter(anatomy.gm, 5) > 0.12)
    )
    deep = wm_core & (depth >= 2.5)
    if not deep.any():
        deep = wm_core
    return {
        "periventricular": np.argwhere(wall) if wall.any() else np.argwhere(deep),
        "juxtacortical": np.argwhere(near_cortex) if near_cortex.any() else np.argwhere(deep),
        "deep": np.argwhere(deep),
    }


def _outward_normal(vent: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Unit vector pointing out of the ventricles at ``point`` (from the local gradient)."""
    lo = np.maximum(point - 2, 0)
    hi = np.minimum(point + 3, vent.shape)
    patch = ndimage.gaussian_filter(
        vent[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))].astype(np.float64), 1.0
    )
    grads = np.gradient(patch)
    local = tuple(point - lo)
    normal = -np.array([g[local] for g in grads])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 1e-6 else np.array([1.0, 0.0, 0.0])


def _frame_along(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rotation whose first row is ``direction`` (tilted a little at random)."""
    d = direction + rng.normal(0.0, 0.25, 3)
    d /= np.linalg.norm(d)
    other = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, other)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    return np.stack([d, u, v])


def _draw_lesion(
    kind: str,
    anatomy: Anatomy,
    candidates: dict[str, np.ndarray],
    rng: np.random.Generator,
    size: float,
    onset: int,
) -> Lesion:
    scale = max(anatomy.scale, _MIN_LESION_SCALE) * size
    median, spread = _SIZE_MM[kind]
    radius = float(np.clip(median * np.exp(rng.normal(0.0, spread)), 1.0, 10.0)) * scale
    radius = max(radius, 1.0)
    pool = candidates["periventricular" if kind == "confluent" else kind]
    point = pool[rng.integers(len(pool))].astype(np.float64)
    if kind == "periventricular":
        normal = _outward_normal(anatomy.ventricles, point.astype(int))
        rotation = _frame_along(normal, rng)
        axes = radius * np.array([rng.uniform(1.3, 2.0), 1.0, rng.uniform(0.7, 1.0)])
        centre = point + normal * axes[0] * 0.45
    elif kind == "confluent":
        # a band along the ventricle wall: thin along the normal, long along the wall
        normal = _outward_normal(anatomy.ventricles, point.astype(int))
        rotation = _frame_along(normal, rng)
        axes = radius * np.array([rng.uniform(0.5, 0.8), rng.uniform(1.5, 2.5), 1.0])
        centre = point + normal * axes[0] * 0.8
    else:
        rotation = rotation_matrix(rng)
        axes = radius * rng.uniform(0.7, 1.3, 3)
        centre = point
    lobes = []
    for _ in range(rng.integers(2, 5) if kind == "confluent" else rng.integers(0, 3)):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        lobes.append((direction * rng.uniform(0.6, 0.95), rng.uniform(0.4, 0.7, 3)))
    t1 = rng.uniform(0.7, 1.1) if rng.random() > 0.25 else rng.uniform(1.3, 1.7)
    return Lesion(
        kind=kind,
        centre=centre,
        axes=np.maximum(axes, 0.8),
        rotation=rotation,
        lobes=tuple(lobes),
        border=float(rng.uniform(1.1, 2.5)),
        contrast=float(
            rng.uniform(0.25, 0.6) if rng.random() < _FAINT_SHARE else rng.uniform(0.6, 1.25)
        ),
        t1_contrast=float(t1),
        onset=onset,
    )


def _evolve(lesion: Lesion, seed: Seed, index: int, timepoints: int) -> Lesion:
    """Attach the size factors of ``timepoints`` time points (a per-lesion random walk)."""
    rng = stream(seed, "evolution", index)
    trend = rng.normal(0.0, 0.08)  # this lesion's tendency to grow (> 0) or shrink
    steps = rng.normal(trend, 0.06, max(timepoints - lesion.onset - 1, 0))
    sizes = np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    return replace(lesion, sizes=tuple(float(s) for s in np.clip(sizes, 0.4, 1.8)))


def sample_lesions(
    anatomy: Anatomy,
    seed: Seed,
    *,
    timepoints: int = 1,
    n_lesions: float = 16,
    new_lesions: float = 1.0,
    lesion_size: float = 1.0,
) -> list[Lesion]:
    """Draw the lesions of one patient over ``timepoints`` time points.

    Parameters
    ----------
    anatomy : Anatomy
        The patient's anatomy (lesions are placed in its white matter).
    seed : int or sequence of int
        The patient's seed.
    timepoints : int, optional
        Number of time points to prepare size factors for.
    n_lesions : float, optional
        Mean number of lesions at the first time point; each patient draws between 60 % and
        140 % of it (at least 1 when ``n_lesions > 0``).
    new_lesions : float, optional
        Mean number of new lesions at each later time point (Poisson).
    lesion_size : float, optional
        Multiplies every lesion's size.

    Returns
    -------
    list of Lesion
        Baseline lesions first, then new lesions by onset. The same seed gives the same list,
        and the first ``k`` time points do not depend on ``timepoints``.
    """
    if n_lesions < 0 or new_lesions < 0 or lesion_size <= 0:
        raise ValueError(
            "Invalid lesion load: expected n_lesions >= 0, new_lesions >= 0, lesion_size > 0. "
            f"Received: n_lesions={n_lesions}, new_lesions={new_lesions}, lesion_size={lesion_size}"
        )
    candidates = _candidates(anatomy)
    kinds = list(LESION_KINDS)
    probs = np.array([LESION_KINDS[k] for k in kinds])
    rng = stream(seed, "lesions")
    count = int(round(n_lesions * rng.uniform(0.6, 1.4)))
    count = max(count, 1) if n_lesions > 0 else 0
    drawn = [(kinds[rng.choice(len(kinds), p=probs)], 0) for _ in range(count)]
    lesions = [_draw_lesion(k, anatomy, candidates, rng, lesion_size, onset) for k, onset in drawn]
    for t in range(1, timepoints):
        rng_t = stream(seed, "new_lesions", t)
        for _ in range(rng_t.poisson(new_lesions)):
            kind = kinds[rng_t.choice(len(kinds), p=probs)]
            lesions.append(_draw_lesion(kind, anatomy, candidates, rng_t, lesion_size * 0.8, t))
    # A lesion's rank does not depend on `timepoints` (new lesions are drawn time point by time
    # point), so neither does its evolution.
    return [_evolve(les, seed, i, timepoints) for i, les in enumerate(lesions)]


def lesions_at(lesions: Sequence[Lesion], timepoint: int) -> list[tuple[Lesion, float]]:
    """The lesions present at ``timepoint`` with their size factor."""
    present = [(les, les.size_at(timepoint)) for les in lesions]
    return [(les, size) for les, size in present if size > 0]


def render_lesions(
    anatomy: Anatomy,
    lesions: Sequence[tuple[Lesion, float]],
    roughness: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true partial-volume lesion map and per-voxel lesion contrasts.

    Parameters
    ----------
    anatomy : Anatomy
        Tissue fractions; lesion volume is limited to white matter (fully), deep grey matter
        (80 %) and cortex (35 %), never CSF.
    lesions : sequence of (Lesion, float)
        Lesions and their size factors, as returned by :func:`lesions_at`.
    roughness : ndarray of shape (X, Y, Z), optional
        Unit-variance smooth noise that roughens lesion borders (about 0.3 voxel x lesion radius).

    Returns
    -------
    truth : ndarray of float32, shape (X, Y, Z)
        Fraction of each voxel that is lesion, in [0, 1].
    contrast : ndarray of float32, shape (X, Y, Z)
        Lesion contrast factor (:attr:`Lesion.contrast`, weighted by partial volume where lesions
        overlap; 1 outside lesions).
    t1_contrast : ndarray of float32, shape (X, Y, Z)
        The same for :attr:`Lesion.t1_contrast`.
    """
    shape = anatomy.shape
    truth = np.zeros(shape, dtype=np.float32)
    weight = np.zeros(shape, dtype=np.float32)
    contrast = np.zeros(shape, dtype=np.float32)
    t1_contrast = np.zeros(shape, dtype=np.float32)
    for lesion, size in lesions:
        box, coords = crop_box(shape, lesion.centre, lesion.extent * size)
        if any(s.stop <= s.start for s in box):
            continue
        axes = lesion.axes * size
        dist = ellipsoid_distance(coords, lesion.centre, axes, lesion.rotation)
        for offset, rel_axes in lesion.lobes:
            centre = lesion.centre + lesion.rotation.T @ (offset * axes)
            dist = np.maximum(
                dist, ellipsoid_distance(coords, centre, rel_axes * axes, lesion.rotation)
            )
        if roughness is not None:
            dist = dist + np.float32(0.3 * min(float(axes.min()), 3.0)) * roughness[box]
        pv = partial_volume(dist, lesion.border)
        truth[box] = np.maximum(truth[box], pv)
        weight[box] += pv
        contrast[box] += pv * np.float32(lesion.contrast)
        t1_contrast[box] += pv * np.float32(lesion.t1_contrast)
    eligible = sum(np.float32(w) * getattr(anatomy, t) for t, w in _ELIGIBLE.items())
    truth *= np.clip(eligible, 0.0, 1.0)
    has = weight > 0
    contrast = np.where(has, contrast / np.where(has, weight, 1.0), 1.0).astype(np.float32)
    t1_contrast = np.where(has, t1_contrast / np.where(has, weight, 1.0), 1.0).astype(np.float32)
    truth[truth < 1e-3] = 0.0
    return truth, contrast, t1_contrast


def lesion_roughness(shape: Sequence[int], seed: Seed) -> np.ndarray:
    """The patient's border-roughness field (unit-variance noise, correlation about 1 voxel)."""
    return smooth_noise(shape, stream(seed, "roughness"), 1.0)
