"""MR contrasts of the phantom: FLAIR, T1 (MPRAGE), T2 and PD images from tissue fractions.

Each voxel's signal is the partial-volume mix of its tissues' typical intensities; then a point
spread function (Gaussian, 0.5 voxel), a smooth multiplicative bias field and Rician noise
(the magnitude of a complex signal with Gaussian noise) are applied, and the background is set to
0 (skull-stripped). Tissue intensities (:data:`TISSUE_INTENSITY`, arbitrary units) follow 3T
behaviour:

* FLAIR: CSF dark (fluid suppressed), grey matter brighter than white matter, lesions bright
  (typically 1.3-1.4 x the brain's median; faint ones barely above grey matter), and bright
  non-lesion ``mimic`` tissue and ``flow`` artefacts (:mod:`mssoft.synthetic.mimics`);
* T1 (MPRAGE): CSF dark, white matter brighter than grey matter, lesions dark; about a quarter of
  the lesions are much darker ("black holes");
* T2: CSF the brightest, grey matter brighter than white matter, lesions bright;
* PD: CSF and lesions bright, grey matter brighter than white matter (low contrast overall).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from mssoft.synthetic.anatomy import TISSUES, Anatomy
from mssoft.synthetic.fields import smooth_noise

__all__ = ["MODALITIES", "TISSUE_INTENSITY", "render_image", "modality_names"]

MODALITIES = ("flair", "t1", "t2", "pd")
TISSUE_INTENSITY: dict[str, dict[str, float]] = {
    "flair": {
        "csf": 70.0, "gm": 600.0, "deep_gm": 540.0, "wm": 430.0, "lesion": 760.0,
        "mimic": 860.0, "flow": 820.0,
    },
    "t1": {
        "csf": 180.0, "gm": 560.0, "deep_gm": 640.0, "wm": 820.0, "lesion": 520.0,
        "mimic": 790.0, "flow": 180.0,
    },
    "t2": {
        "csf": 1000.0, "gm": 600.0, "deep_gm": 540.0, "wm": 430.0, "lesion": 820.0,
        "mimic": 560.0, "flow": 1000.0,
    },
    "pd": {
        "csf": 880.0, "gm": 760.0, "deep_gm": 720.0, "wm": 620.0, "lesion": 860.0,
        "mimic": 690.0, "flow": 880.0,
    },
}


def render_image(
    modality: str,
    anatomy: Anatomy,
    truth: np.ndarray,
    lesion_contrast: np.ndarray,
    rng: np.random.Generator,
    *,
    noise: float = 0.03,
    bias: float = 0.05,
    jitter: float = 0.02,
    intensities: Mapping[str, Mapping[str, float]] = TISSUE_INTENSITY,
    slice_sigma: float = 0.0,
    mimic: np.ndarray | None = None,
    flow: np.ndarray | None = None,
) -> np.ndarray:
    """One modality of one scan.

    Parameters
    ----------
    modality : {"flair", "t1", "t2", "pd"}
        Which contrast (a key of ``intensities``).
    anatomy : Anatomy
        Tissue fractions.
    truth : ndarray of float32, shape (X, Y, Z)
        Lesion fraction of each voxel (taken from the tissues it sits in).
    lesion_contrast : ndarray of float32, shape (X, Y, Z)
        Per-voxel lesion contrast factor: the lesion intensity is
        ``wm + factor * (lesion - wm)``.
    rng : numpy.random.Generator
        Draws the scan's intensity jitter, bias field and noise.
    noise : float, optional
        Rician noise level, as a fraction of the white-matter intensity.
    bias : float, optional
        Standard deviation of the log bias field (0.05 gives about +-10 % over the brain).
    jitter : float, optional
        Relative standard deviation of each tissue's intensity between scans.
    intensities : mapping, optional
        Typical intensity of each tissue and of lesions, per modality.
    slice_sigma : float, optional
        Through-plane (third axis) sigma in voxels of the slice profile when it is wider than the
        point spread function's 0.5 voxel: thick slices average the tissue along that axis.
    mimic, flow : ndarray of float32, shape (X, Y, Z), optional
        Fractions of bright non-lesion tissue and of CSF flow artefact
        (:class:`mssoft.synthetic.mimics.Mimics`): those fractions of a voxel take the table's
        ``mimic`` and ``flow`` intensities (default: the lesion's and CSF's).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Non-negative intensities, 0 outside the brain.
    """
    if modality not in intensities:
        raise ValueError(
            f"Invalid value for `modality`. Expected one of {', '.join(intensities)}. "
            f"Received: {modality}"
        )
    table = intensities[modality]
    gain = rng.uniform(0.95, 1.05)
    fallback = {"mimic": "lesion", "flow": "csf"}
    level = {
        name: table.get(name, table[fallback.get(name, name)])
        * gain
        * (1.0 + jitter * rng.standard_normal())
        for name in (*TISSUES, "lesion", "mimic", "flow")
    }
    shape = anatomy.shape
    tissue = sum(np.float32(level[name]) * getattr(anatomy, name) for name in TISSUES)
    if flow is not None:
        tissue = tissue + flow * np.float32(level["flow"] - level["csf"])
    if mimic is not None:
        tissue = tissue + mimic * (np.float32(level["mimic"]) - tissue)
    # Mild texture inside tissues, so that flat regions are not perfectly flat before noise.
    tissue = tissue * (1.0 + np.float32(0.015) * smooth_noise(shape, rng, 2.0))
    lesion = np.float32(level["wm"]) + lesion_contrast * np.float32(level["lesion"] - level["wm"])
    signal = (1.0 - truth) * tissue + truth * lesion
    sigma = (0.5, 0.5, max(0.5, float(slice_sigma)))
    signal = ndimage.gaussian_filter(signal.astype(np.float32), sigma, truncate=3.0)
    if bias > 0:
        signal = signal * np.exp(
            np.float32(bias) * smooth_noise(shape, rng, 0.3 * float(np.mean(shape)))
        )
    sigma = np.float32(noise * level["wm"])
    real = signal + sigma * rng.standard_normal(shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(shape, dtype=np.float32)
    image = np.sqrt(real * real + imag * imag)
    image[~anatomy.brain] = 0.0
    return image.astype(np.float32, copy=False)


def modality_names(requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """The modalities to render (all four by default), validated."""
    names = tuple(MODALITIES if requested is None else requested)
    unknown = [m for m in names if m not in TISSUE_INTENSITY]
    if unknown:
        raise ValueError(
            f"Invalid value for `modalities`. Expected some of {', '.join(MODALITIES)}. "
            f"Received: {', '.join(unknown)}"
        )
    return names
