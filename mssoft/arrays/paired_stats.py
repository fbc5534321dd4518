"""Paired comparison of a treatment against a baseline: mean difference, bootstrap CI, Wilcoxon.

The soft-versus-binary question is answered pair by pair: the same held-out scan, scored against
the same rater, by a model trained with soft masks and by one trained with binary masks (same
fold, same seed). :func:`paired_difference` summarises one set of such pairs; :func:`compare_grid`
forms the pairs of a whole sweep (every grid point against the baseline, per rater and metric).
Pure NumPy/SciPy: no file reading, no TensorFlow.

Statistics
----------
* mean difference ``mean(treatment - baseline)`` over the pairs;
* a 95 % confidence interval of that mean from a paired bootstrap
  (:func:`scipy.stats.bootstrap` with ``paired=True``; BCa, falling back to the percentile
  interval when BCa is undefined, e.g. for very few or constant pairs);
* the two-sided p-value of the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`) of the
  differences (1 when every difference is 0; NaN with fewer than 2 pairs);
* ``n``, the number of pairs (pairs with a NaN on either side are dropped).

Pairs of scans of the same patient (several time points) are not independent, so with few
patients the interval is optimistic; the number of patients behind ``n`` should be stated with it.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["PairedDifference", "paired_difference", "GridComparison", "compare_grid"]


@dataclass(frozen=True)
class PairedDifference:
    """Treatment minus baseline over ``n`` pairs (fractions for Dice, precision and recall).

    Attributes
    ----------
    n : int
        Number of pairs with finite values on both sides.
    treatment_mean, baseline_mean : float
        Means over those pairs.
    mean_difference : float
        ``mean(treatment - baseline)``.
    ci_low, ci_high : float
        Bounds of the bootstrap confidence interval of ``mean_difference`` (NaN when n < 2).
    p_value : float
        Two-sided Wilcoxon signed-rank p-value (1 when every difference is 0; NaN when n < 2).
    confidence : float
        Level of the interval (0.95).
    """

    n: int
    treatment_mean: float
    baseline_mean: float
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or below 0."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def to_dict(self) -> dict[str, float | int]:
        """JSON/CSV-ready fields."""
        return asdict(self)


def _bootstrap_interval(
    treatment: np.ndarray, baseline: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    def mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a - b, axis=axis)

    if np.all(treatment - baseline == (treatment - baseline)[0]):
        value = float(treatment[0] - baseline[0])
        return value, value  # every resample gives the same mean
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (treatment, baseline),
                mean_difference,
                paired=True,
                vectorized=True,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                random_state=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval
        if math.isfinite(low) and math.isfinite(high):
            return float(low), float(high)
    return math.nan, math.nan


def paired_difference(
    treatment: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> PairedDifference:
    """Mean paired difference with a bootstrap interval and a Wilcoxon signed-rank p-value.

    Parameters
    ----------
    treatment, baseline : array-like of float, shape (n,)
        Paired values: element ``i`` of both belongs to the same unit (scan, rater, seed).
    confidence : float
        Level of the interval, in (0, 1).
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the bootstrap (the result is reproducible).

    Returns
    -------
    PairedDifference

    Raises
    ------
    ValueError
        The two samples differ in length, or ``confidence`` is outside (0, 1).

    Examples
    --------
    >>> d = paired_difference([0.6, 0.7, 0.8, 0.65], [0.5, 0.6, 0.7, 0.55])
    >>> round(d.mean_difference, 3), d.n
    (0.1, 4)
    """
    a = np.asarray(treatment, dtype=np.float64).ravel()
    b = np.asarray(baseline, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n == 0:
        nan = math.nan
        return PairedDifference(0, nan, nan, nan, nan, nan, nan, confidence)
    diff = a - b
    low = high = p_value = math.nan
    if n >= 2:
        low, high = _bootstrap_interval(a, b, confidence, n_resamples, seed)
        if np.all(diff == 0):
            p_value = 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p_value = float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)
    return PairedDifference(
        n=n,
        treatment_mean=float(a.mean()),
        baseline_mean=float(b.mean()),
        mean_difference=float(diff.mean()),
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        confidence=confidence,
    )


@dataclass(frozen=True)
class GridComparison:
    """One grid point against the baseline, for one rater and one metric.

    Attributes
    ----------
    point : tuple
        The grid point's key (e.g. ``(ratio, gamma)``).
    rater : int
        Reference rater.
    metric : str
        ``dice``, ``ppv`` or ``tpr``.
    difference : PairedDifference
        Point minus baseline over the pairs.
    """

    point: tuple[Any, ...]
    rater: int
    metric: str
    difference: PairedDifference


def compare_grid(
    rows: Iterable[Mapping[str, Any]],
    *,
    baseline: tuple[Any, ...],
    point_fields: Sequence[str] = ("ratio", "gamma"),
    pair_fields: Sequence[str] = ("scan", "repeat"),
    metrics: Sequence[str] = ("dice", "ppv", "tpr"),
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> list[GridComparison]:
    """Pair every grid point with the baseline, per rater and metric.

    Parameters
    ----------
    rows : iterable of mapping
        One row per (grid point, pair unit, rater): the ``point_fields``, the ``pair_fields``,
        ``rater`` and a value for each metric it has (per-scan rows of a sweep).
    baseline : tuple
        The baseline's values of ``point_fields`` (e.g. ``(1.0, 0.0)``).
    point_fields, pair_fields : sequence of str
        Fields naming a grid point, and fields naming a pair unit (the same held-out scan with
        the same seed; the fold is implied by the scan).
    metrics : sequence of str
    confidence, n_resamples, seed
        As for :func:`paired_difference`.

    Returns
    -------
    list of GridComparison
        Sorted by point, rater, metric order; the baseline itself is not compared. A point
        without any pair with the baseline gets ``n = 0`` and NaN statistics.
    """
    values: dict[tuple[Any, ...], dict[tuple[int, str], dict[Hashable, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for row in rows:
        point = tuple(_key(row[f]) for f in point_fields)
        unit = tuple(_key(row[f]) for f in pair_fields)
        for metric in metrics:
            if row.get(metric) is not None:  # rows without a metric (e.g. no ECE) do not pair
                values[point][(int(row["rater"]), metric)][unit] = float(row[metric])
    base = values.get(tuple(_key(v) for v in baseline), {})
    out = []
    order = {m: k for k, m in enumerate(metrics)}
    for point in sorted(p for p in values if p != tuple(_key(v) for v in baseline)):
        for rater, metric in sorted(values[point], key=lambda rm: (rm[0], order[rm[1]])):
            mine, theirs = values[point][(rater, metric)], base.get((rater, metric), {})
            units = sorted(set(mine) & set(theirs), key=repr)
            difference = paired_difference(
                [mine[u] for u in units],
                [theirs[u] for u in units],
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
            out.append(GridComparison(point, rater, metric, difference))
    return out


def _key(value: Any) -> Any:
    """Grid and pair keys compare as floats where numeric (1 and 1.0 are one point)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return value
