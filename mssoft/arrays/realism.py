"""How much a data set looks like real MS scans: lesion contrast, mimics, lesion sizes, raters.

Statistics of one scan (:func:`scan_realism`), from its FLAIR and its rater masks, with
``brain`` = the FLAIR's non-zero finite voxels and ``lesions`` = the reference rater's mask
(rater 1 by default), a lesion being a 26-connected component:

``lesion_contrast_median``  median FLAIR over lesion voxels / median FLAIR over brain voxels
``lesion_contrast_p10``     10th percentile of FLAIR over lesion voxels / brain median (faint
                            lesions make it low)
``mimics``                  share of non-lesion brain voxels brighter than the median lesion
                            voxel (what a FLAIR threshold cannot tell from lesion)
``lesion_sizes``            voxels of each lesion, largest first
``flair_curves``            per rater, the Dice of the FLAIR-threshold baseline
                            (:mod:`mssoft.arrays.flair_baseline`) at every threshold of
                            :data:`~mssoft.arrays.flair_baseline.FLAIR_THRESHOLD_GRID`
``agreement``               per pair of raters: Dice, and the share of each one's lesions that
                            any voxel of the other touches

Over a set (:func:`set_realism`): the FLAIR-threshold Dice per rater with ONE threshold for the set
(the highest mean per-scan Dice, ties to the lowest threshold, as
:func:`~mssoft.arrays.flair_baseline.calibrate_flair_threshold`) and with each scan's own best
threshold (an upper bound no single rule reaches), means of the per-scan statistics, and quantiles
of the pooled lesion sizes. Undefined values (no lesion, one rater) are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from mssoft.arrays.flair_baseline import FLAIR_THRESHOLD_GRID, flair_dice_curve
from mssoft.arrays.intensity import brain_mask
from mssoft.arrays.lesions import label_lesions
from mssoft.arrays.metrics import scan_metrics

__all__ = [
    "REALISM_CONNECTIVITY",
    "SIZE_QUANTILES",
    "RaterAgreement",
    "ScanRealism",
    "SetRealism",
    "lesion_contrast",
    "lesion_sizes",
    "mimic_share",
    "rater_agreement",
    "scan_realism",
    "set_realism",
]

#: Lesions of the realism statistics are 26-connected components (no minimum size).
REALISM_CONNECTIVITY = 26
#: Quantiles of the pooled lesion sizes reported over a set.
SIZE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class RaterAgreement:
    """How two raters' masks of one scan agree.

    Attributes
    ----------
    raters : tuple of 2 int
        ``(a, b)``, ``a < b``.
    dice : float
        Voxel Dice of the two masks (1 when both are empty).
    touched_a : float
        Share of rater ``a``'s lesions that any voxel of rater ``b``'s mask touches (NaN when
        ``a`` marked none).
    touched_b : float
        The same for rater ``b``'s lesions.
    """

    raters: tuple[int, int]
    dice: float
    touched_a: float
    touched_b: float


@dataclass(frozen=True)
class ScanRealism:
    """Realism statistics of one scan (see the module docstring).

    Attributes
    ----------
    scan_id : str
    reference : int
        Rater whose mask defines the lesions.
    lesion_contrast_median, lesion_contrast_p10, mimics : float
        NaN when the reference mask is empty.
    lesion_sizes : tuple of int
        Voxels per lesion, largest first.
    flair_curves : dict of int to ndarray of float64, shape (T,)
        Per rater, the FLAIR-threshold baseline's Dice at each threshold of ``thresholds``.
    thresholds : ndarray of float64, shape (T,)
    agreement : tuple of RaterAgreement
        One per pair of raters.
    other_contrast : dict of str to float
        Per extra modality, median over lesion voxels / median over brain voxels (e.g. T1 < 1
        when lesions are dark on T1).
    """

    scan_id: str
    reference: int
    lesion_contrast_median: float
    lesion_contrast_p10: float
    mimics: float
    lesion_sizes: tuple[int, ...]
    flair_curves: dict[int, np.ndarray]
    thresholds: np.ndarray
    agreement: tuple[RaterAgreement, ...] = ()
    other_contrast: dict[str, float] = field(default_factory=dict)

    @property
    def lesion_count(self) -> int:
        """Number of lesions of the reference rater."""
        return len(self.lesion_sizes)

    @property
    def median_lesion_size(self) -> float:
        """Median lesion size in voxels (NaN without lesions)."""
        return float(np.median(self.lesion_sizes)) if self.lesion_sizes else float("nan")

    def best_flair_dice(self, rater: int) -> tuple[float, float]:
        """(threshold, Dice) of this scan's own best FLAIR threshold against ``rater``."""
        curve = self.flair_curves[rater]
        best = int(np.argmax(curve))
        return float(self.thresholds[best]), float(curve[best])


def _ratio_to_brain(image: np.ndarray, brain: np.ndarray, lesion: np.ndarray, q: float) -> float:
    values = image[lesion & brain]
    if values.size == 0:
        return float("nan")
    return float(np.percentile(values, q) / np.median(image[brain]))


def lesion_contrast(flair: np.ndarray, lesion: np.ndarray) -> tuple[float, float]:
    """Lesion FLAIR relative to the brain's median FLAIR.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        Raw FLAIR (brain = its non-zero finite voxels).
    lesion : ndarray of bool, shape (X, Y, Z)
        Lesion voxels (those outside the brain are ignored).

    Returns
    -------
    median, p10 : float
        Median and 10th percentile of the lesion voxels' FLAIR, each divided by the median
        brain FLAIR; NaN without lesion voxels.
    """
    flair = np.asarray(flair, dtype=np.float64)
    brain = brain_mask(flair)
    lesion = np.asarray(lesion, dtype=bool)
    return (
        _ratio_to_brain(flair, brain, lesion, 50.0),
        _ratio_to_brain(flair, brain, lesion, 10.0),
    )


def mimic_share(flair: np.ndarray, lesion: np.ndarray) -> float:
    """Share of non-lesion brain voxels brighter than the median lesion voxel on FLAIR.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
    lesion : ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    float
        In [0, 1]; NaN without lesion voxels in the brain.
    """
    flair = np.asarray(flair)
    brain = brain_mask(flair)
    lesion = np.asarray(lesion, dtype=bool) & brain
    if not lesion.any():
        return float("nan")
    median = np.median(flair[lesion].astype(np.float64))
    others = flair[brain & ~lesion]
    if others.size == 0:
        return float("nan")
    return float(np.count_nonzero(others > median) / others.size)


def lesion_sizes(mask: np.ndarray, *, connectivity: int = REALISM_CONNECTIVITY) -> np.ndarray:
    """Voxels of each lesion (connected component) of a mask, largest first.

    Returns
    -------
    ndarray of int64, shape (L,)
    """
    labels, count = label_lesions(mask, connectivity=connectivity)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
    return np.sort(sizes)[::-1]


def rater_agreement(
    mask_a: np.ndarray,
    mask_b: np.ndarray,
    raters: tuple[int, int] = (1, 2),
    *,
    connectivity: int = REALISM_CONNECTIVITY,
) -> RaterAgreement:
    """Dice and lesion-wise overlap of two raters' masks (see :class:`RaterAgreement`)."""
    m = scan_metrics(mask_b, mask_a, connectivity=connectivity)
    # scan_metrics(pred=b, ref=a): ltpr = a's lesions touched by b; lfpr = b's lesions untouched
    return RaterAgreement(
        raters=raters, dice=float(m.dice), touched_a=float(m.ltpr), touched_b=1.0 - float(m.lfpr)
    )


def scan_realism(
    flair: np.ndarray,
    masks: Mapping[int, np.ndarray],
    *,
    scan_id: str = "",
    reference: int | None = None,
    others: Mapping[str, np.ndarray] | None = None,
    thresholds: Sequence[float] | np.ndarray = FLAIR_THRESHOLD_GRID,
) -> ScanRealism:
    """Realism statistics of one scan.

    Parameters
    ----------
    flair : ndarray of shape (X, Y, Z)
        Raw FLAIR, zero outside the brain.
    masks : mapping of int to ndarray of bool, shape (X, Y, Z)
        Rater number to binary lesion mask (at least one).
    scan_id : str, optional
        Name carried into the result.
    reference : int, optional
        Rater defining the lesions (default: the lowest rater number).
    others : mapping of str to ndarray of shape (X, Y, Z), optional
        Further modalities whose lesion / brain median ratio is reported (brain from FLAIR).
    thresholds : sequence of float, optional
        z-score thresholds of the FLAIR baseline's Dice curves.

    Returns
    -------
    ScanRealism
    """
    if not masks:
        raise ValueError("scan_realism needs at least one rater mask")
    flair = np.asarray(flair)
    if flair.ndim != 3:
        raise ValueError(f"`flair` must be 3D, got shape {flair.shape}")
    masks = {int(r): np.asarray(m) != 0 for r, m in sorted(masks.items())}
    for rater, mask in masks.items():
        if mask.shape != flair.shape:
            raise ValueError(
                f"rater {rater}'s mask has shape {mask.shape}, the FLAIR {flair.shape}"
            )
    reference = min(masks) if reference is None else int(reference)
    lesion = masks[reference]
    median, p10 = lesion_contrast(flair, lesion)
    brain = brain_mask(flair)
    other_contrast = {
        name: _ratio_to_brain(np.asarray(image, dtype=np.float64), brain, lesion, 50.0)
        for name, image in (others or {}).items()
    }
    grid = np.asarray(thresholds, dtype=np.float64)
    return ScanRealism(
        scan_id=scan_id,
        reference=reference,
        lesion_contrast_median=median,
        lesion_contrast_p10=p10,
        mimics=mimic_share(flair, lesion),
        lesion_sizes=tuple(int(s) for s in lesion_sizes(lesion)),
        flair_curves={r: flair_dice_curve(flair, m, grid) for r, m in masks.items()},
        thresholds=grid,
        agreement=tuple(
            rater_agreement(masks[a], masks[b], (a, b)) for a, b in combinations(masks, 2)
        ),
        other_contrast=other_contrast,
    )


@dataclass(frozen=True)
class SetRealism:
    """Realism statistics of a set of scans.

    Attributes
    ----------
    scans : tuple of ScanRealism
    set_threshold : dict of int to float
        Per rater, the one z-score threshold with the highest mean per-scan Dice.
    set_dice : dict of int to ndarray of float64, shape (S,)
        Per rater, each scan's Dice at ``set_threshold``.
    own_dice : dict of int to ndarray of float64, shape (S,)
        Per rater, each scan's Dice at its own best threshold.
    """

    scans: tuple[ScanRealism, ...]
    set_threshold: dict[int, float]
    set_dice: dict[int, np.ndarray]
    own_dice: dict[int, np.ndarray]

    def mean(self, name: str) -> float:
        """Mean over scans of a per-scan statistic (an attribute or property), NaN skipped."""
        values = np.array([float(getattr(s, name)) for s in self.scans], dtype=np.float64)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def pooled_sizes(self) -> np.ndarray:
        """Sizes of every lesion of every scan (voxels), shape (L,)."""
        return np.array([v for s in self.scans for v in s.lesion_sizes], dtype=np.int64)

    def size_quantiles(self) -> dict[float, float]:
        """Quantiles :data:`SIZE_QUANTILES` of the pooled lesion sizes (NaN without lesions)."""
        sizes = self.pooled_sizes()
        if sizes.size == 0:
            return {q: float("nan") for q in SIZE_QUANTILES}
        return {q: float(np.quantile(sizes, q)) for q in SIZE_QUANTILES}

    def agreement_mean(self) -> dict[tuple[int, int], dict[str, float]]:
        """Per pair of raters, the mean Dice and touched shares over scans."""
        pairs: dict[tuple[int, int], list[RaterAgreement]] = {}
        for scan in self.scans:
            for a in scan.agreement:
                pairs.setdefault(a.raters, []).append(a)
        return {
            pair: {
                key: float(np.nanmean([getattr(a, key) for a in items]))
                for key in ("dice", "touched_a", "touched_b")
            }
            for pair, items in pairs.items()
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary and per-scan rows (NaN as None)."""

        def num(value: float) -> float | None:
            return None if not np.isfinite(value) else round(float(value), 6)

        raters = sorted(self.set_threshold)
        rows = []
        for i, s in enumerate(self.scans):
            rows.append(
                {
                    "scan": s.scan_id,
                    "lesion_contrast_median": num(s.lesion_contrast_median),
                    "lesion_contrast_p10": num(s.lesion_contrast_p10),
                    "mimics": num(s.mimics),
                    "lesion_count": s.lesion_count,
                    "median_lesion_size": num(s.median_lesion_size),
                    "lesion_sizes": list(s.lesion_sizes),
                    "other_contrast": {k: num(v) for k, v in s.other_contrast.items()},
                    "flair_dice_set_threshold": {
                        str(r): num(self.set_dice[r][i]) for r in raters
                    },
                    "flair_dice_own_threshold": {
                        str(r): num(self.own_dice[r][i]) for r in raters
                    },
                    "own_threshold": {str(r): s.best_flair_dice(r)[0] for r in raters},
                    "agreement": [
                        {
                            "raters": list(a.raters),
                            "dice": num(a.dice),
                            "touched_a": num(a.touched_a),
                            "touched_b": num(a.touched_b),
                        }
                        for a in s.agreement
                    ],
                }
            )
        return {
            "scans": rows,
            "summary": {
                "n_scans": len(self.scans),
                "reference_rater": self.scans[0].reference if self.scans else None,
                "flair_threshold": {
                    str(r): {
                        "set_threshold": self.set_threshold[r],
                        "set_dice_mean": num(float(np.mean(self.set_dice[r]))),
                        "own_dice_mean": num(float(np.mean(self.own_dice[r]))),
                    }
                    for r in raters
                },
                "lesion_contrast_median": num(self.mean("lesion_contrast_median")),
                "lesion_contrast_p10": num(self.mean("lesion_contrast_p10")),
                "mimics": num(self.mean("mimics")),
                "lesion_count": num(self.mean("lesion_count")),
                "median_lesion_size": num(self.mean("median_lesion_size")),
                "lesion_size_quantiles": {
                    f"{q:g}": num(v) for q, v in self.size_quantiles().items()
                },
                "agreement": [
                    {"raters": list(pair), **{k: num(v) for k, v in values.items()}}
                    for pair, values in self.agreement_mean().items()
                ],
            },
        }


def set_realism(scans: Sequence[ScanRealism]) -> SetRealism:
    """Combine per-scan statistics: one FLAIR threshold per rater for the set, and means.

    Parameters
    ----------
    scans : sequence of ScanRealism
        At least one; the raters common to every scan are summarised.

    Returns
    -------
    SetRealism
    """
    if not scans:
        raise ValueError("set_realism needs at least one scan")
    raters = sorted(set.intersection(*(set(s.flair_curves) for s in scans)))
    thresholds = scans[0].thresholds
    set_threshold, set_dice, own_dice = {}, {}, {}
    for rater in raters:
        curves = np.stack([s.flair_curves[rater] for s in scans])
        best = int(np.argmax(curves.mean(axis=0)))  # ties: the lowest threshold
        set_threshold[rater] = float(thresholds[best])
        set_dice[rater] = curves[:, best].copy()
        own_dice[rater] = curves.max(axis=1)
    return SetRealism(tuple(scans), set_threshold, set_dice, own_dice)
