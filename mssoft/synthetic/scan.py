"""Synthetic scans in memory: one patient's time points, with images, truth and rater masks."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mssoft.synthetic.anatomy import Anatomy, make_anatomy
from mssoft.synthetic.contrast import TISSUE_INTENSITY, modality_names, render_image
from mssoft.synthetic.fields import Seed, smooth_noise, stream
from mssoft.synthetic.lesion_model import (
    Lesion,
    lesion_roughness,
    lesions_at,
    render_lesions,
    sample_lesions,
)
from mssoft.synthetic.mimics import make_mimics
from mssoft.synthetic.raters import DEFAULT_RATERS, RaterModel, simulate_rater

__all__ = ["SyntheticScan", "make_patient", "make_scan", "DEFAULT_SHAPE"]

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = (96, 112, 80)


@dataclass
class SyntheticScan:
    """One synthetic scan (a time point of a patient), in RAS array order.

    Attributes
    ----------
    images : dict of str to ndarray of float32, shape (X, Y, Z)
        ``flair``, ``t1``, ``t2``, ``pd`` intensities (arbitrary units, 0 outside the brain).
    truth : ndarray of float32, shape (X, Y, Z)
        True lesion fraction of each voxel, in [0, 1].
    masks : dict of int to ndarray of bool, shape (X, Y, Z)
        Binary lesion mask of each simulated rater (1, 2, ...).
    anatomy : Anatomy
        The patient's tissue fractions.
    lesions : list of (Lesion, float)
        Lesions present at this time point, with their size factor.
    timepoint : int
        0-based time point.
    spacing : tuple of float
        Voxel size in millimetres along the three array axes.
    """

    images: dict[str, np.ndarray]
    truth: np.ndarray
    masks: dict[int, np.ndarray]
    anatomy: Anatomy
    lesions: list[tuple[Lesion, float]]
    timepoint: int
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (X, Y, Z)."""
        return self.anatomy.shape


class _Patient:
    """What a patient's time points share: anatomy, lesions, border roughness, options."""

    def __init__(
        self,
        shape: Sequence[int],
        seed: Seed,
        timepoints: int,
        *,
        spacing: Sequence[float],
        n_lesions: float,
        new_lesions: float,
        lesion_size: float,
        noise: float,
        bias: float,
        modalities: Sequence[str] | None,
        raters: Mapping[int, RaterModel] | None,
        intensities: Mapping[str, Mapping[str, float]] | None = None,
        slice_thickness: float | None = None,
    ) -> None:
        if int(timepoints) != timepoints or timepoints < 1:
            raise ValueError(
                f"Invalid value for `timepoints`. Expected an integer >= 1. Received: {timepoints}"
            )
        self.spacing = tuple(float(s) for s in spacing)
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(
                f"Invalid value for `spacing`. Expected 3 positive numbers. Received: {spacing}"
            )
        if noise < 0 or bias < 0:
            raise ValueError(
                f"Invalid noise or bias: expected >= 0. Received: noise={noise}, bias={bias}"
            )
        thickness = self.spacing[2] if slice_thickness is None else float(slice_thickness)
        if not thickness > 0:
            raise ValueError(
                "Invalid value for `slice_thickness`. Expected a number > 0. "
                f"Received: {slice_thickness}"
            )
        # a Gaussian slice profile of FWHM `thickness` mm, in voxels of the third axis
        self.slice_sigma = thickness / self.spacing[2] / 2.3548
        self.intensities = TISSUE_INTENSITY if intensities is None else intensities
        self.seed = seed
        self.timepoints = int(timepoints)
        self.noise, self.bias = float(noise), float(bias)
        self.modalities = modality_names(modalities)
        self.raters = dict(sorted((DEFAULT_RATERS if raters is None else raters).items()))
        self.anatomy = make_anatomy(shape, seed)
        self.lesions = sample_lesions(
            self.anatomy,
            seed,
            timepoints=self.timepoints,
            n_lesions=n_lesions,
            new_lesions=new_lesions,
            lesion_size=lesion_size,
        )
        self.roughness = lesion_roughness(self.anatomy.shape, seed)
        self.mimics = make_mimics(self.anatomy, seed)

    def render(self, t: int) -> SyntheticScan:
        """Images, truth and masks of time point ``t`` (depends only on the seed and ``t``)."""
        anatomy = self.anatomy
        present = lesions_at(self.lesions, t)
        roughness = self.roughness
        if t > 0:
            # Borders change a little between time points; most of the shape stays.
            drift = smooth_noise(anatomy.shape, stream(self.seed, "roughness", t), 1.0)
            roughness = np.float32(0.9) * roughness + np.float32(0.436) * drift
        truth, contrast, t1_contrast = render_lesions(anatomy, present, roughness)
        images = {}
        # T2 and PD show faint FLAIR lesions less faint (the lesion is there, FLAIR hides it).
        factors = {"t1": t1_contrast, "flair": contrast}
        compressed = np.float32(0.5) + np.float32(0.5) * contrast
        for index, name in enumerate(self.modalities):
            rng = stream(self.seed, "contrast", t, index)
            factor = factors.get(name, compressed)
            images[name] = render_image(
                name,
                anatomy,
                truth,
                factor,
                rng,
                noise=self.noise,
                bias=self.bias,
                intensities=self.intensities,
                slice_sigma=self.slice_sigma,
                mimic=self.mimics.bright,
                flow=self.mimics.flow,
            )
        masks = {
            r: simulate_rater(truth, m, stream(self.seed, "rater", t, r), contrast)
            for r, m in self.raters.items()
        }
        logger.debug(
            "time point %d: %d lesions, %.0f lesion voxels, rater volumes %s",
            t,
            len(present),
            float(truth.sum()),
            {r: int(m.sum()) for r, m in masks.items()},
        )
        return SyntheticScan(
            images=images,
            truth=truth,
            masks=masks,
            anatomy=anatomy,
            lesions=present,
            timepoint=t,
            spacing=self.spacing,  # type: ignore[arg-type]
        )


def make_patient(
    shape: Sequence[int] = DEFAULT_SHAPE,
    *,
    seed: Seed = 0,
    timepoints: int = 2,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    n_lesions: float = 60,
    new_lesions: float = 1.0,
    lesion_size: float = 1.0,
    noise: float = 0.03,
    bias: float = 0.08,
    modalities: Sequence[str] | None = None,
    raters: Mapping[int, RaterModel] | None = None,
    intensities: Mapping[str, Mapping[str, float]] | None = None,
    slice_thickness: float | None = None,
) -> Iterator[SyntheticScan]:
    """Generate the time points of one synthetic MS patient.

    The anatomy and the lesions are drawn once; each time point renders the lesions at their
    current size (some grow, some shrink, new ones appear), with its own intensity jitter, bias
    field, noise and rater masks. Arguments are checked before the first scan is generated.

    Parameters
    ----------
    shape : sequence of 3 int, optional
        Grid (X, Y, Z), RAS axis order; every size at least 16. The brain fills the grid.
    seed : int or sequence of int, optional
        The patient's seed (non-negative integers). The same seed and options give the same
        arrays, bit for bit on one machine with the same NumPy and SciPy versions.
    timepoints : int, optional
        Number of time points (>= 1).
    spacing : sequence of 3 float, optional
        Voxel size in millimetres (recorded in the scans; the anatomy is laid out in voxels).
    n_lesions : float, optional
        Mean number of lesions at the first time point (each patient draws 60-140 % of it).
    new_lesions : float, optional
        Mean number of new lesions at each later time point (Poisson).
    lesion_size : float, optional
        Multiplies every lesion's size.
    noise : float, optional
        Rician noise level relative to the white-matter intensity.
    bias : float, optional
        Strength of the smooth multiplicative bias field (standard deviation of its log).
    modalities : sequence of str, optional
        Which of ``flair``, ``t1``, ``t2``, ``pd`` to render (default: all four).
    raters : mapping of int to RaterModel, optional
        Simulated raters (default :data:`~mssoft.synthetic.raters.DEFAULT_RATERS`: raters 1 and
        2, rater 2 marking more volume). An empty mapping gives no masks.

    Returns
    -------
    iterator of SyntheticScan
        Time points 0, 1, ..., ``timepoints - 1``, generated one at a time.

    Raises
    ------
    ValueError
        An invalid shape, spacing, count or level.
    """
    patient = _Patient(
        shape,
        seed,
        timepoints,
        spacing=spacing,
        n_lesions=n_lesions,
        new_lesions=new_lesions,
        lesion_size=lesion_size,
        noise=noise,
        bias=bias,
        modalities=modalities,
        raters=raters,
        intensities=intensities,
        slice_thickness=slice_thickness,
    )
    return (patient.render(t) for t in range(patient.timepoints))


def make_scan(
    shape: Sequence[int] = DEFAULT_SHAPE,
    *,
    seed: Seed = 0,
    timepoint: int = 0,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    n_lesions: float = 60,
    new_lesions: float = 1.0,
    lesion_size: float = 1.0,
    noise: float = 0.03,
    bias: float = 0.08,
    modalities: Sequence[str] | None = None,
    raters: Mapping[int, RaterModel] | None = None,
    intensities: Mapping[str, Mapping[str, float]] | None = None,
    slice_thickness: float | None = None,
) -> SyntheticScan:
    """Generate one synthetic scan in memory.

    Parameters
    ----------
    shape : sequence of 3 int, optional
        Grid (X, Y, Z), RAS axis order; every size at least 16.
    seed : int or sequence of int, optional
        The patient's seed.
    timepoint : int, optional
        0-based time point of that patient: the result equals the ``timepoint``-th scan of
        :func:`make_patient` with the same seed and options.
    spacing, n_lesions, new_lesions, lesion_size, noise, bias, modalities, raters
    intensities, slice_thickness
        As in :func:`make_patient`.

    Returns
    -------
    SyntheticScan

    Examples
    --------
    >>> from mssoft.synthetic import make_scan
    >>> scan = make_scan((32, 40, 24), seed=1)
    >>> sorted(scan.images), sorted(scan.masks), scan.truth.dtype.name
    (['flair', 'pd', 't1', 't2'], [1, 2], 'float32')
    """
    if int(timepoint) != timepoint or timepoint < 0:
        raise ValueError(
            f"Invalid value for `timepoint`. Expected an integer >= 0. Received: {timepoint}"
        )
    patient = _Patient(
        shape,
        seed,
        int(timepoint) + 1,
        spacing=spacing,
        n_lesions=n_lesions,
        new_lesions=new_lesions,
        lesion_size=lesion_size,
        noise=noise,
        bias=bias,
        modalities=modalities,
        raters=raters,
        intensities=intensities,
        slice_thickness=slice_thickness,
    )
    return patient.render(int(timepoint))
