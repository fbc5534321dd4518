"""Simulated human raters: binary masks drawn from the true partial-volume lesion map.

Each rater marks the voxels whose lesion fraction, perturbed by a smooth rater-specific field,
reaches a threshold that the rater sets lesion by lesion (around the rater's own level: one
border drawn generously, the next tightly), and overlooks some lesions: small and faint ones
most often. As in ISBI 2015, rater 2 has a lower threshold and so marks more volume on average;
the two raters disagree on lesion borders (the partial-volume ramp), lesion by lesion, and on
small faint lesions, each marking some the other misses. The default models are tuned so that
the rater-vs-rater Dice is about 0.6-0.75 on the demo's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mssoft.arrays.lesions import label_lesions
from mssoft.synthetic.fields import smooth_noise

__all__ = ["RaterModel", "DEFAULT_RATERS", "simulate_rater"]


@dataclass(frozen=True)
class RaterModel:
    """How one simulated rater turns the true lesion fractions into a binary mask.

    Attributes
    ----------
    threshold : float
        A voxel is marked when its (perturbed) lesion fraction is at least this, in (0, 1].
    boundary_noise : float
        Standard deviation of the smooth perturbation added to the lesion fraction, which moves
        the marked border by a voxel or so (in lesion-fraction units).
    noise_scale : float
        Correlation length of the perturbation, in voxels.
    miss_rate : float
        Probability of overlooking a lesion of (almost) no volume; it decays with the volume.
    miss_volume : float
        Volume (voxels) at which the probability of overlooking a lesion has dropped by e.
    border_spread : float
        Standard deviation of the per-lesion change of ``threshold`` (border placement varies
        lesion by lesion).
    faint_miss : float
        Extra probability of overlooking a faint lesion: the miss probability is multiplied by
        ``1 + faint_miss * (1 - contrast)`` (``contrast`` as in
        :attr:`mssoft.synthetic.lesion_model.Lesion.contrast`), then capped at 1.
    """

    threshold: float
    boundary_noise: float = 0.12
    noise_scale: float = 1.2
    miss_rate: float = 0.3
    miss_volume: float = 30.0
    border_spread: float = 0.0
    faint_miss: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(
                "Invalid value for `threshold`. Expected a number in (0, 1]. "
                f"Received: {self.threshold}"
            )
        if not 0.0 <= self.miss_rate <= 1.0:
            raise ValueError(
                "Invalid value for `miss_rate`. Expected a number in [0, 1]. "
                f"Received: {self.miss_rate}"
            )
        if (
            self.boundary_noise < 0
            or self.noise_scale <= 0
            or self.miss_volume <= 0
            or self.border_spread < 0
            or self.faint_miss < 0
        ):
            raise ValueError(
                "Invalid rater model: expected boundary_noise >= 0, noise_scale > 0, "
                "miss_volume > 0, border_spread >= 0, faint_miss >= 0. "
                f"Received: {self}"
            )


DEFAULT_RATERS: dict[int, RaterModel] = {
    1: RaterModel(threshold=0.5, miss_rate=0.4, border_spread=0.2, faint_miss=1.5),
    2: RaterModel(threshold=0.35, miss_rate=0.3, border_spread=0.2, faint_miss=1.5),
}


def simulate_rater(
    truth: np.ndarray,
    model: RaterModel,
    rng: np.random.Generator,
    contrast: np.ndarray | None = None,
) -> np.ndarray:
    """One rater's binary lesion mask.

    Parameters
    ----------
    truth : ndarray of float, shape (X, Y, Z)
        True lesion fraction of each voxel, in [0, 1].
    model : RaterModel
        The rater's threshold, border noise and tendency to miss small lesions.
    rng : numpy.random.Generator
        The rater's random stream for this scan.
    contrast : ndarray of float, shape (X, Y, Z), optional
        Per-voxel lesion contrast (1 typical, lower fainter); faint lesions are overlooked more
        often (:attr:`RaterModel.faint_miss`). Default: every lesion typical.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        Marked voxels; only voxels with some true lesion fraction are ever marked.
    """
    mask = np.zeros(truth.shape, dtype=bool)
    support = truth > 0
    if not support.any():
        return mask
    where = np.nonzero(support)
    lo = [max(int(w.min()) - 1, 0) for w in where]
    hi = [min(int(w.max()) + 2, s) for w, s in zip(where, truth.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    local = truth[box]
    noise = smooth_noise(local.shape, rng, model.noise_scale) if min(local.shape) > 1 else 0.0
    perceived = local + np.float32(model.boundary_noise) * noise
    # Each lesion (component of the true support) gets its own threshold.
    support_labels, n_support = label_lesions(local > 0)
    offsets = np.clip(
        model.threshold + model.border_spread * rng.standard_normal(n_support + 1), 0.05, 0.95
    ).astype(np.float32)
    offsets[0] = 2.0  # never marked outside the support
    marked = (perceived >= offsets[support_labels]) & (local > 0)
    labels, count = label_lesions(marked)
    if count:
        flat = labels.ravel()
        volumes = np.bincount(flat, minlength=count + 1)[1:]
        p_miss = model.miss_rate * np.exp(-volumes / model.miss_volume)
        if contrast is not None:
            sums = np.bincount(flat, weights=contrast[box].ravel(), minlength=count + 1)[1:]
            faint = np.clip(1.0 - sums / np.maximum(volumes, 1), 0.0, 1.0)
            p_miss = np.minimum(p_miss * (1.0 + model.faint_miss * faint), 1.0)
        missed = np.flatnonzero(rng.random(count) < p_miss) + 1
        if missed.size:
            marked &= ~np.isin(labels, missed)
    mask[box] = marked
    return mask
