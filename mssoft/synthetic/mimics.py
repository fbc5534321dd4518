"""FLAIR lesion mimics: bright tissue that is not lesion, as on real FLAIR scans.

Real FLAIR holds bright voxels that no rater marks, so one intensity threshold cannot find the
lesions; a network can, because each mimic differs from a lesion by its shape, its place or its
other contrasts:

* **ependymal lining**: a one-voxel bright rim along every ventricle wall;
* **periventricular caps**: thin bright crescents hugging the tips of the frontal horns and the
  atria (thicker than the lining, a few voxels at most);
* **bright spots** near the ventricles: small dots (about a voxel in radius) bright on FLAIR and
  T2 but, unlike lesions, not dark on T1;
* **CSF flow artefacts**: bright blobs *inside* the ventricles on FLAIR only (CSF on T1, T2, PD).

The cortex (brighter than white matter on FLAIR), partial volume at CSF borders and the bias field
are rendered by :mod:`mssoft.synthetic.contrast`. :func:`make_mimics` returns fraction maps;
:func:`mssoft.synthetic.contrast.render_image` gives their voxels the ``mimic`` and ``flow``
intensities of :data:`mssoft.synthetic.contrast.TISSUE_INTENSITY`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mssoft.synthetic.anatomy import Anatomy
from mssoft.synthetic.fields import Seed, crop_box, partial_volume, smooth_noise, stream

__all__ = ["Mimics", "make_mimics"]


@dataclass(frozen=True)
class Mimics:
    """Where a patient's FLAIR shows bright non-lesion tissue.

    Attributes
    ----------
    bright : ndarray of float32, shape (X, Y, Z)
        Fraction of each voxel's tissue that shows the ``mimic`` intensity (lining, caps, spots),
        in [0, 1); 0 in CSF.
    flow : ndarray of float32, shape (X, Y, Z)
        Fraction of each ventricular voxel that shows the ``flow`` intensity instead of CSF's,
        in [0, 1].
    """

    bright: np.ndarray
    flow: np.ndarray


def _tips(inside: np.ndarray, centre_x: float) -> list[np.ndarray]:
    """Anterior and posterior tips of each lateral ventricle (voxel coordinates)."""
    tips = []
    points = np.argwhere(inside)
    if len(points) == 0:
        return tips
    upper = points[points[:, 2] >= np.percentile(points[:, 2], 30)]
    for side in (upper[:, 0] < centre_x, upper[:, 0] >= centre_x):
        part = upper[side]
        if len(part) == 0:
            continue
        tips.append(part[np.argmax(part[:, 1])].astype(np.float64))
        tips.append(part[np.argmin(part[:, 1])].astype(np.float64))
    return tips


def make_mimics(anatomy: Anatomy, seed: Seed, *, amount: float = 1.0) -> Mimics:
    """Draw a patient's FLAIR mimics.

    Parameters
    ----------
    anatomy : Anatomy
        Tissue fractions (the mimics follow its ventricles and white matter).
    seed : int or sequence of int
        The patient's seed (stream ``mimics``).
    amount : float, optional
        Scales the strength of every mimic (0: none).

    Returns
    -------
    Mimics
    """
    shape = anatomy.shape
    rng = stream(seed, "mimics")
    zeros = np.zeros(shape, dtype=np.float32)
    if amount <= 0:
        return Mimics(bright=zeros, flow=zeros.copy())
    s = max(anatomy.scale, 0.5)
    inside = anatomy.ventricles >= 0.5
    dist = ndimage.distance_transform_edt(~inside).astype(np.float32)  # voxels to the ventricles
    tissue = np.clip(anatomy.wm + anatomy.deep_gm, 0.0, 1.0)
    # Ependymal lining: about one voxel along every wall.
    bright = np.float32(0.75) * partial_volume(np.float32(1.4) - dist) * (dist > 0)
    # Caps: a crescent a few voxels thick at each horn tip, fading along the wall.
    weight = np.zeros(shape, dtype=np.float32)
    centre_x = (shape[0] - 1) / 2
    for tip in _tips(inside, centre_x):
        box, coords = crop_box(shape, tip, 12.0 * s)
        r2 = sum((c - np.float32(t)) ** 2 for c, t in zip(coords, tip, strict=True))
        weight[box] = np.maximum(weight[box], np.exp(-r2 / np.float32(2 * (5.0 * s) ** 2)))
    thickness = np.float32(rng.uniform(2.5, 4.0) * s) * weight
    caps = np.float32(0.95) * partial_volume(thickness + 0.5 - dist) * (dist > 0)
    bright = np.maximum(bright, caps * (weight > 0.05))
    # Bright spots near the ventricles.
    near = np.argwhere((dist >= 2.0) & (dist <= 9.0 * s) & (anatomy.wm >= 0.9) & anatomy.cerebrum)
    for _ in range(rng.poisson(20) if len(near) else 0):
        centre = near[rng.integers(len(near))].astype(np.float64)
        radius = rng.uniform(0.7, 1.5)
        box, coords = crop_box(shape, centre, radius + 2.0)
        r = np.sqrt(sum((c - np.float32(t)) ** 2 for c, t in zip(coords, centre, strict=True)))
        spot = np.float32(rng.uniform(0.75, 0.95)) * partial_volume(np.float32(radius) - r)
        bright[box] = np.maximum(bright[box], spot)
    bright = np.clip(bright * tissue * np.float32(amount), 0.0, 0.95).astype(np.float32)
    # CSF flow: a few smooth blobs inside the ventricles.
    blobs = smooth_noise(shape, rng, 2.0 * s)
    flow = np.clip(2.0 * blobs - 2.2, 0.0, 1.0) * anatomy.ventricles * np.float32(min(amount, 1.0))
    return Mimics(bright=bright, flow=flow.astype(np.float32))
