"""Procedural brain anatomy: tissue fractions of a skull-stripped brain on any grid.

The phantom is built from analytic shapes in *brain-normalised* coordinates, so it fills the
field of view whatever the requested shape (like the ISBI 2015 preprocessed scans, where the brain
fills a 181 x 217 x 181 box of 1 mm voxels):

* the cerebrum, an ellipsoid flattened by a smooth random perturbation of its surface;
* a folded cortex: grey matter along the surface and along *sulci*, the zero sheets of a smooth
  random field that reach ``sulcal_depth`` into the brain, with cerebrospinal fluid (CSF) inside
  the sulci and a thin CSF rim on the surface; the interhemispheric fissure splits the hemispheres
  above the corpus callosum;
* lateral ventricles (frontal horns, bodies, atria, temporal horns) and the third ventricle,
  enlarged by a per-patient atrophy factor;
* deep grey matter (caudate, thalamus, lentiform nucleus);
* a foliated cerebellum and a brainstem below.

Sizes are given in "ISBI millimetres" and converted to voxels with :attr:`Anatomy.scale`, with
floors of about one voxel so that tiny test grids (32 x 40 x 24) still show every class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mssoft.synthetic.fields import (
    Seed,
    ellipsoid_distance,
    partial_volume,
    rotation_matrix,
    smooth_noise,
    stream,
)

__all__ = ["Anatomy", "make_anatomy", "ISBI_SHAPE", "TISSUES"]

logger = logging.getLogger(__name__)

ISBI_SHAPE = (181, 217, 181)
TISSUES = ("csf", "gm", "deep_gm", "wm")
# Cerebrum semi-axes as fractions of the grid, and their length in an ISBI scan (mm).
_BRAIN_FRACTION = np.array([0.41, 0.43, 0.36])
_ISBI_BRAIN_RADIUS_MM = float(np.prod(_BRAIN_FRACTION * np.array(ISBI_SHAPE)) ** (1 / 3))


@dataclass(frozen=True)
class Anatomy:
    """Tissue fractions of one synthetic brain.

    Attributes
    ----------
    csf, gm, deep_gm, wm : ndarray of float32, shape (X, Y, Z)
        Fraction of each voxel that is cerebrospinal fluid, cortical (and cerebellar) grey matter,
        deep grey matter and white matter. They sum to 1 inside ``brain`` and are 0 outside.
    ventricles : ndarray of float32, shape (X, Y, Z)
        Fraction of ventricular CSF (part of ``csf``).
    brain : ndarray of bool, shape (X, Y, Z)
        The skull-stripped brain mask; every image is 0 outside it.
    cerebrum : ndarray of bool, shape (X, Y, Z)
        Supratentorial brain (where lesions are placed).
    scale : float
        Voxels per ISBI millimetre (about 1 on a 181 x 217 x 181 grid).
    """

    csf: np.ndarray
    gm: np.ndarray
    deep_gm: np.ndarray
    wm: np.ndarray
    ventricles: np.ndarray
    brain: np.ndarray
    cerebrum: np.ndarray
    scale: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (X, Y, Z)."""
        return tuple(self.wm.shape)

    def labels(self) -> np.ndarray:
        """Hard tissue labels, ndarray of uint8: 0 background, then 1 + index in :data:`TISSUES`."""
        stack = np.stack([getattr(self, t) for t in TISSUES])
        return np.where(self.brain, stack.argmax(axis=0) + 1, 0).astype(np.uint8)


class _Frame:
    """Brain-normalised coordinates: ``centre + u * radius`` in voxels, ``u`` in about [-1, 1]."""

    def __init__(self, shape: Sequence[int], rng: np.random.Generator) -> None:
        self.rng = rng
        self.shape = tuple(int(s) for s in shape)
        size = np.array(self.shape, dtype=np.float64)
        self.radius = _BRAIN_FRACTION * size * rng.uniform(0.96, 1.03, 3)
        self.centre = np.array(
            [(size[0] - 1) / 2, (size[1] - 1) / 2 - 0.02 * size[1], 0.52 * (size[2] - 1)]
        )
        self.coords = [
            c.astype(np.float32) for c in np.ogrid[tuple(slice(0, s) for s in self.shape)]
        ]
        self.scale = float(np.prod(self.radius) ** (1 / 3)) / _ISBI_BRAIN_RADIUS_MM

    def mm(self, value: float, floor: float = 0.0) -> float:
        """ISBI millimetres to voxels, at least ``floor`` voxels."""
        return max(value * self.scale, floor)

    def ellipsoid(
        self,
        centre: Sequence[float],
        axes: Sequence[float],
        *,
        yaw: float = 0.0,
        floor: float = 1.0,
        jitter: float = 0.0,
    ) -> np.ndarray:
        """Signed distance (voxels) to an ellipsoid in normalised units; ``yaw`` in degrees.

        ``jitter`` moves the centre (normal, ``jitter`` x radius) and scales the semi-axes
        (uniform, +-5 ``jitter``) at random, so that no two patients are alike.
        """
        shift = self.rng.normal(0.0, jitter, 3) if jitter else 0.0
        stretch = self.rng.uniform(1.0 - 5 * jitter, 1.0 + 5 * jitter, 3) if jitter else 1.0
        c = self.centre + (np.asarray(centre) + shift) * self.radius
        a = np.maximum(np.asarray(axes) * stretch * self.radius, floor)
        rot = rotation_matrix(angles=(0.0, 0.0, np.deg2rad(yaw))) if yaw else None
        return ellipsoid_distance(self.coords, c, a, rot.T if rot is not None else None)


# Random displacement of the deep structures (fraction of the brain radius).
_JITTER = 0.015


def _ventricles(frame: _Frame, atrophy: float) -> np.ndarray:
    """Signed distance to the ventricular system (union of ellipsoids)."""
    k = atrophy
    parts = []
    for side in (-1.0, 1.0):
        parts += [
            frame.ellipsoid(
                (side * 0.09, 0.27, 0.04), (0.06 * k, 0.17, 0.15 * k), yaw=side * 12, jitter=_JITTER
            ),
            frame.ellipsoid(
                (side * 0.12, -0.02, 0.10),
                (0.075 * k, 0.32, 0.09 * k),
                yaw=-side * 8,
                jitter=_JITTER,
            ),
            frame.ellipsoid(
                (side * 0.21, -0.33, 0.04),
                (0.08 * k, 0.16, 0.13 * k),
                yaw=-side * 20,
                jitter=_JITTER,
            ),
            frame.ellipsoid(
                (side * 0.34, -0.10, -0.33),
                (0.04 * k, 0.22, 0.05 * k),
                yaw=-side * 10,
                floor=0.6,
                jitter=_JITTER,
            ),
        ]
    parts.append(
        frame.ellipsoid((0.0, -0.06, -0.12), (0.022 * k, 0.17, 0.13), floor=0.6, jitter=_JITTER)
    )
    return np.maximum.reduce(parts)


def _deep_grey(frame: _Frame) -> np.ndarray:
    """Signed distance to caudate, thalamus and lentiform nucleus (both sides)."""
    parts = []
    for side in (-1.0, 1.0):
        parts += [
            frame.ellipsoid(
                (side * 0.20, 0.25, 0.03), (0.08, 0.13, 0.16), yaw=side * 12, jitter=_JITTER
            ),
            frame.ellipsoid((side * 0.12, -0.13, -0.10), (0.12, 0.18, 0.16), jitter=_JITTER),
            frame.ellipsoid(
                (side * 0.33, 0.04, -0.10), (0.09, 0.23, 0.20), yaw=side * 8, jitter=_JITTER
            ),
        ]
    return np.maximum.reduce(parts)


def _layer(remaining: np.ndarray, fraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give ``fraction`` of what is left of each voxel to a tissue; returns (tissue, left)."""
    taken = remaining * fraction
    return taken, remaining - taken


def make_anatomy(shape: Sequence[int], seed: Seed = 0) -> Anatomy:
    """Draw the anatomy of one synthetic patient.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid (X, Y, Z) in RAS order; each size at least 16.
    seed : int or sequence of int
        Patient seed; the same seed gives the same anatomy.

    Returns
    -------
    Anatomy
        Tissue fractions on the grid.

    Raises
    ------
    ValueError
        A size below 16 voxels.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(
            f"Invalid value for `shape`. Expected 3 sizes >= 16. Received: shape={shape}"
        )
    rng = stream(seed, "anatomy")
    frame = _Frame(shape, rng)
    x = frame.coords[0]

    # --- Outer surfaces: cerebrum, cerebellum, brainstem -------------------------------------
    bumps = smooth_noise(shape, rng, frame.mm(14.0, 2.0))
    d_cerebrum = frame.ellipsoid((0, 0, 0), (1, 1, 1)) + frame.mm(3.0, 0.6) * bumps
    # Flatten the base of the cerebrum (temporal and frontal lobes sit on the skull base).
    base = frame.ellipsoid((0, 0.02, 0.55), (1.02, 1.02, 1.45))
    d_cerebrum = np.minimum(d_cerebrum, base + frame.mm(6.0, 1.0))
    d_cerebellum = (
        frame.ellipsoid((0, -0.52, -0.74), (0.56, 0.34, 0.30)) + frame.mm(1.5, 0.3) * bumps
    )
    d_stem = frame.ellipsoid((0, -0.14, -0.62), (0.13, 0.15, 0.62))
    d_brain = np.maximum.reduce([d_cerebrum, d_cerebellum, d_stem])
    brain = d_brain >= 0
    in_cerebrum = brain & (d_cerebrum >= np.maximum(d_cerebellum, d_stem))
    in_cerebellum = brain & ~in_cerebrum & (d_cerebellum >= d_stem)

    # --- Cortical folding: sulci are the zero sheets of a smooth random field ----------------
    thickness = frame.mm(2.6, 1.0)
    csf_half = frame.mm(0.5, 0.3)
    folds = smooth_noise(shape, rng, frame.mm(3.2, 1.3))
    grad = np.sqrt(sum(g**2 for g in np.gradient(folds)))
    d_sulcus = np.abs(folds) / np.maximum(grad, 1e-3)  # distance to the zero sheet (voxels)
    depth_field = frame.mm(17.0, 2.0) * (1.0 + 0.35 * smooth_noise(shape, rng, frame.mm(10.0, 2.0)))
    reach = partial_volume(depth_field - d_cerebrum)  # 1 where a sulcus can reach
    # Interhemispheric fissure: the mid-sagittal plane, above and around the deep "core".
    midline = frame.centre[0] + frame.mm(1.5, 0.3) * smooth_noise(shape, rng, frame.mm(20.0, 3.0))
    d_fissure = np.abs(x - midline)
    core = frame.ellipsoid((0, -0.04, -0.18), (0.7, 0.50, 0.42))
    outside_core = partial_volume(-core)

    sulcal_csf = np.maximum(
        partial_volume(csf_half - d_sulcus) * reach,
        partial_volume(csf_half + 0.2 - d_fissure) * outside_core,
    )
    rim_csf = partial_volume(frame.mm(1.2, 0.5) - d_brain)
    cortex = np.maximum.reduce(
        [
            partial_volume(thickness - d_cerebrum),
            partial_volume(csf_half + thickness - d_sulcus)
            * partial_volume(depth_field + thickness - d_cerebrum),
            partial_volume(csf_half + thickness - d_fissure) * outside_core,
        ]
    )

    # --- Deep structures -----------------------------------------------------------------
    atrophy = float(rng.uniform(0.9, 1.5))
    ventricles = partial_volume(_ventricles(frame, atrophy))
    deep = partial_volume(_deep_grey(frame))

    # --- Cerebellum: folia (fine sulci) around a white-matter core ------------------------
    folia = smooth_noise(shape, rng, frame.mm(1.6, 0.8))
    cb_grey = np.maximum(
        partial_volume(frame.mm(7.0, 1.5) - d_cerebellum), partial_volume(folia * 2.0 + 0.8)
    )
    cb_csf = partial_volume(
        frame.mm(0.4, 0.25)
        - np.abs(folia) / np.maximum(np.sqrt(sum(g**2 for g in np.gradient(folia))), 1e-3)
    ) * partial_volume(frame.mm(5.0, 1.0) - d_cerebellum)

    # --- Layered composition: CSF first, then grey matter; white matter takes the rest -----
    left = np.ones(shape, dtype=np.float32)
    cerebrum_f = in_cerebrum.astype(np.float32)
    cerebellum_f = in_cerebellum.astype(np.float32)
    vent, left = _layer(left, ventricles * cerebrum_f)
    csf_other, left = _layer(
        left, np.maximum(rim_csf, np.maximum(sulcal_csf * cerebrum_f, cb_csf * cerebellum_f))
    )
    gm, left = _layer(left, np.maximum(cortex * cerebrum_f, cb_grey * cerebellum_f))
    deep_gm, left = _layer(left, deep * cerebrum_f)
    wm = left
    outside = ~brain
    fractions = {
        "csf": vent + csf_other,
        "gm": gm,
        "deep_gm": deep_gm,
        "wm": wm,
        "ventricles": vent,
    }
    for name, value in fractions.items():
        value[outside] = 0.0
        fractions[name] = value.astype(np.float32, copy=False)
    logger.debug("anatomy %s: scale %.3f voxel/mm, atrophy %.2f", shape, frame.scale, atrophy)
    return Anatomy(
        csf=fractions["csf"],
        gm=fractions["gm"],
        deep_gm=fractions["deep_gm"],
        wm=fractions["wm"],
        ventricles=fractions["ventricles"],
        brain=brain,
        cerebrum=in_cerebrum,
        scale=frame.scale,
    )
