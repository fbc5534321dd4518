"""Summaries of a cross-validation sweep: the paper's Tables 1/2, the paired evidence, a figure.

Input is the list of per-scan rows of every finished cell (one row per cell × held-out scan ×
rater, holding at least ``ratio``, ``gamma``, ``repeat``, ``fold``, ``rater``, ``dice``, ``ppv`` and
``tpr``), plus the FLAIR-threshold baseline's rows (the pseudo grid point :data:`FLAIR_POINT`, see
:mod:`mssoft.experiments.cv.baseline`). For each grid point and rater, a repeat's score is the mean
over all held-out scans (each scan is held out exactly once per repeat); the table shows the
mean ± standard deviation of that score over repeats. With a single repeat the spread is over
patients (folds) instead, and the table says so.

The evidence is paired (:func:`mssoft.arrays.paired_stats.compare_grid`): every grid point against
the binary model and against the FLAIR-threshold baseline on the same held-out scans, folds and
seeds, per rater and metric, with a 95 % bootstrap interval and a Wilcoxon p-value. A model
*learned* when its validation Dice at the saved epoch beats the FLAIR-threshold baseline's Dice on
the same validation slices (and its run did not end collapsed); a best setting is named only among
grid points whose every model learned. Every grid point has one label everywhere
(:func:`point_label`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.metrics import nanmean
from mssoft.arrays.paired_stats import GridComparison, compare_grid
from mssoft.arrays.soft_masks import is_binary_setting
from mssoft.experiments.cv.plan import FLAIR_POINT, FLAIR_VARIANT
from mssoft.files.figures import pyplot, save_figure

__all__ = [
    "BASELINE",
    "FLAIR_POINT",
    "point_label",
    "compare_with_flair",
    "CellSummary",
    "Learning",
    "BestSetting",
    "summarise",
    "compare",
    "learning",
    "best_point",
    "choose_best",
    "comparison_records",
    "format_table",
    "format_comparison",
    "describe_best",
    "plot_sweep",
]

#: The binary baseline's grid point (ratio, gamma).
#: A grid point is (ratio, gamma, variant); the variant is "" for the paper's points.
BASELINE = (1.0, 0.0, "")

_TABLE_METRICS = (("dice", "Dice"), ("ppv", "Precision"), ("tpr", "Recall"), ("ece", "ECE"))


@dataclass(frozen=True)
class CellSummary:
    """Mean and spread of one metric for one grid point and rater (fractions, not percent)."""

    ratio: float
    gamma: float
    rater: int
    metric: str
    mean: float
    std: float
    n: int
    spread_over: str
    variant: str = ""


def summarise(
    rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ("dice", "ppv", "tpr", "ece")
) -> list[CellSummary]:
    """Mean ± std per (grid point, rater, metric); see the module docstring for the spread."""
    repeats = {int(r["repeat"]) for r in rows}
    by_repeats = len(repeats) > 1
    groups: dict[tuple[float, float, str, int, str], dict[Any, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in rows:
        unit = int(row["repeat"]) if by_repeats else str(row["fold"])
        for metric in metrics:
            key = (
                float(row["ratio"]),
                float(row["gamma"]),
                str(row.get("variant") or ""),
                int(row["rater"]),
                metric,
            )
            groups[key][unit].append(float(row.get(metric, math.nan)))
    out = []
    for (ratio, gamma, variant, rater, metric), units in sorted(groups.items()):
        scores = [nanmean(v)[0] for v in units.values()]
        finite = [s for s in scores if math.isfinite(s)]
        mean = float(np.mean(finite)) if finite else math.nan
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
        out.append(
            CellSummary(
                ratio,
                gamma,
                rater,
                metric,
                mean,
                std,
                len(finite),
                "repeats" if by_repeats else "patients",
                variant,
            )
        )
    return out


def _is_flair(row: dict[str, Any]) -> bool:
    return (row.get("variant") or "") == FLAIR_VARIANT


def compare(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> list[GridComparison]:
    """Every grid point against the binary model: paired per held-out scan and repeat."""
    return compare_grid(
        [{**row, "variant": row.get("variant") or ""} for row in rows if not _is_flair(row)],
        baseline=BASELINE,
        point_fields=("ratio", "gamma", "variant"),
        pair_fields=("scan", "repeat"),
        metrics=tuple(m for m, _ in _TABLE_METRICS),
        seed=seed,
    )


def compare_with_flair(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> list[GridComparison]:
    """Every grid point (binary included) against the FLAIR-threshold baseline, paired per
    held-out scan and repeat (no ECE: the baseline has no probabilities)."""
    return compare_grid(
        [{**row, "variant": row.get("variant") or ""} for row in rows],
        baseline=FLAIR_POINT,
        point_fields=("ratio", "gamma", "variant"),
        pair_fields=("scan", "repeat"),
        metrics=tuple(m for m, _ in _TABLE_METRICS if m != "ece"),
        seed=seed,
    )


@dataclass(frozen=True)
class Learning:
    """How many models of a grid point learned (see :func:`learning`), of how many; how many
    ended collapsed, did not beat the FLAIR-threshold baseline, or could not be judged (no
    baseline or no validation Dice: counted as learned when their validation Dice is finite)."""

    learned: int
    total: int
    collapsed: int = 0
    below_baseline: int = 0
    unjudged: int = 0

    @property
    def all_learned(self) -> bool:
        return self.total > 0 and self.learned == self.total

    def describe(self) -> str:
        """``2 of 3 models did not beat the FLAIR-threshold baseline (1 collapsed)``."""
        failed = self.total - self.learned
        if not failed:
            return f"all {self.total} models beat the FLAIR-threshold baseline"
        parts = []
        if self.below_baseline:
            parts.append(
                f"{self.below_baseline} did not beat the FLAIR-threshold baseline on their "
                "validation slices"
            )
        if self.collapsed:
            parts.append(f"{self.collapsed} collapsed")
        other = failed - self.below_baseline - self.collapsed
        if other > 0:
            parts.append(f"{other} have no validation Dice")
        return f"{failed} of {self.total} models failed: " + ", ".join(parts)


def learning(cells: Sequence[dict[str, Any]]) -> dict[tuple[float, float, str], Learning]:
    """Per grid point: models that learned, models in all, and why the others did not.

    ``cells`` are cell records (``ratio``, ``gamma``, ``variant``, ``val_dice``,
    ``baseline_val_dice``, ``collapsed_epoch``). A model learned when the validation Dice of its
    saved epoch is above the FLAIR-threshold baseline's Dice on the same validation slices
    (``baseline_val_dice``) and its run did not end collapsed (even a saved epoch from before the
    collapse had its training cut short). A missing or NaN ``val_dice`` counts as not learned; a
    missing or NaN ``baseline_val_dice`` (no FLAIR) cannot be judged: the model counts as learned
    and as ``unjudged``.
    """
    counts: dict[tuple[float, float, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for cell in cells:
        entry = counts[(float(cell["ratio"]), float(cell["gamma"]), cell.get("variant") or "")]
        value = _finite(cell.get("val_dice"))
        base = _finite(cell.get("baseline_val_dice"))
        collapsed = cell.get("collapsed_epoch") is not None
        below = value is not None and base is not None and value <= base
        good = value is not None and not below and not collapsed
        entry[0] += good
        entry[1] += 1
        entry[2] += collapsed
        entry[3] += below and not collapsed
        entry[4] += good and base is None
    return {point: Learning(*c) for point, c in sorted(counts.items())}


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class BestSetting:
    """The best grid point among those whose models learned, with its paired evidence.

    Attributes
    ----------
    ratio, gamma : float
    dice : float
        Mean Dice over raters (fraction).
    against_binary : list of GridComparison
        Its Dice difference to the binary model per rater (empty when it is binary).
    against_flair : list of GridComparison
        Its Dice difference to the FLAIR-threshold baseline per rater.
    """

    ratio: float
    gamma: float
    dice: float
    against_binary: list[GridComparison]
    against_flair: list[GridComparison] = field(default_factory=list)

    @property
    def is_binary(self) -> bool:
        return is_binary_setting(self.ratio, self.gamma)


def choose_best(
    summaries: Sequence[CellSummary],
    comparisons: Sequence[GridComparison],
    learned: dict[tuple[float, float, str], Learning],
    flair: Sequence[GridComparison] = (),
) -> BestSetting | None:
    """The best grid point by mean Dice among those whose every model learned; None if none did.

    The binary model competes too; when it has not learned, no soft point can be compared
    with it and None is returned (:func:`describe_best` says why).
    """
    eligible = {p for p, c in learned.items() if c.all_learned}
    if BASELINE not in eligible:
        return None
    ratio, gamma, dice = best_point(summaries, eligible=eligible)
    if not math.isfinite(dice):
        return None
    point = (ratio, gamma, "")
    evidence = [c for c in comparisons if c.point == point and c.metric == "dice"]
    against_flair = [c for c in flair if c.point == point and c.metric == "dice"]
    return BestSetting(ratio, gamma, dice, evidence, against_flair)


def best_point(
    summaries: Sequence[CellSummary],
    *,
    metric: str = "dice",
    eligible: set[tuple[float, float, str]] | None = None,
) -> tuple[float, float, float]:
    """The (ratio, gamma) with the highest ``metric`` averaged over raters, and that value.

    Only points in ``eligible`` compete when it is given, and only the paper's grid points (one
    rater, constant ring, no TTA; the table shows the variants beyond the paper next to them);
    NaNs when no point qualifies.
    """
    scores: dict[tuple[float, float], list[float]] = defaultdict(list)
    for s in summaries:
        if s.variant or (eligible is not None and (s.ratio, s.gamma, "") not in eligible):
            continue  # the FLAIR baseline has a variant too: it never competes
        if s.metric == metric and math.isfinite(s.mean):
            scores[(s.ratio, s.gamma)].append(s.mean)
    if not scores:
        return math.nan, math.nan, math.nan
    (ratio, gamma), values = max(scores.items(), key=lambda item: float(np.mean(item[1])))
    return ratio, gamma, float(np.mean(values))


def _cell(s: CellSummary | None) -> str:
    if s is None or not math.isfinite(s.mean):
        return "n/a"
    if not math.isfinite(s.std):
        return f"{100 * s.mean:.1f}"
    return f"{100 * s.mean:.1f} ± {100 * s.std:.1f}"


def point_label(ratio: float, gamma: float, variant: str = "") -> str:
    """The one label of a grid point in the table, the comparison, the figure and the best line.

    ``FLAIR threshold`` (the baseline), ``binary``, ``raters' share raters1-2`` (ratio 1 of
    several raters), ``120% / 0.3`` (mask size / gamma), each followed by its variant.
    """
    if variant == FLAIR_VARIANT:
        return "FLAIR threshold"
    if is_binary_setting(ratio, gamma):
        label = "raters' share" if "raters" in variant else "binary"
    else:
        label = f"{100 * ratio:.0f}% / {gamma:g}"
    return f"{label} {variant}" if variant else label


def _ordered_points(summaries: Sequence[CellSummary]) -> list[tuple[float, float, str]]:
    """The FLAIR baseline first, then the paper's grid points, then the variants beyond it."""
    points = {(s.ratio, s.gamma, s.variant) for s in summaries}
    return sorted(points, key=lambda p: (p[2] != FLAIR_VARIANT, p[2], p[0], p[1]))


def format_table(summaries: Sequence[CellSummary]) -> str:
    """Markdown table laid out like the paper's: rows grid points, columns metric × rater (%)."""
    raters = sorted({s.rater for s in summaries})
    points = _ordered_points(summaries)
    index = {(s.ratio, s.gamma, s.variant, s.rater, s.metric): s for s in summaries}
    metrics = [
        (m, label)
        for m, label in _TABLE_METRICS
        if any(s.metric == m and math.isfinite(s.mean) for s in summaries)
    ]
    header = ["grid point (mask size / gamma)"] + [
        f"{label} R{r}" for _, label in metrics for r in raters
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in points:
        cells = [_cell(index.get((*point, r, m))) for m, _ in metrics for r in raters]
        lines.append("| " + " | ".join([point_label(*point), *cells]) + " |")
    spread = {s.spread_over for s in summaries}
    n = max((s.n for s in summaries), default=0)
    note = (
        f"Values in %, mean ± standard deviation over {n} {'/'.join(sorted(spread))}; "
        "a repeat's value is the mean over all held-out scans (leave-one-patient-out). "
        "FLAIR threshold: the trivial baseline (brain-z-scored FLAIR >= one threshold calibrated "
        "per fold on the training scans, the models' post-processing; the same for every "
        "repeat). ECE: expected calibration error of the probabilities against the rater's mask "
        "(15 bins, brain voxels). Variants: raters<K-K> = share of several raters, "
        "ring-<profile>, tta-flip."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:+.1f}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2g}" if value >= 1e-3 else "<0.001"


def comparison_records(
    comparisons: Sequence[GridComparison],
    learned: dict[tuple[float, float, str], Learning],
    *,
    against: str = "binary",
) -> list[dict[str, Any]]:
    """Rows of ``comparison.csv`` (fractions; ``p_wilcoxon`` two-sided).

    ``against`` names the reference of ``comparisons``: ``binary`` (the binary model) or
    ``flair-threshold`` (the FLAIR-threshold baseline, which has no models to learn).
    """
    rows = []
    reference = BASELINE if against == "binary" else FLAIR_POINT
    for c in comparisons:
        d = c.difference
        state = learned.get(c.point, Learning(0, 0))
        base = learned.get(reference)
        rows.append(
            {
                "ratio": c.point[0],
                "gamma": c.point[1],
                "rater": c.rater,
                "metric": c.metric,
                "n_pairs": d.n,
                "baseline_mean": d.baseline_mean,
                "model_mean": d.treatment_mean,
                "mean_difference": d.mean_difference,
                "ci95_low": d.ci_low,
                "ci95_high": d.ci_high,
                "p_wilcoxon": d.p_value,
                "models_learned": f"{state.learned}/{state.total}",
                "baseline_models_learned": "" if base is None else f"{base.learned}/{base.total}",
                "variant": c.point[2],  # after the paper's columns
                "against": against,
                "label": point_label(*c.point),
            }
        )
    return rows


def format_comparison(
    comparisons: Sequence[GridComparison],
    learned: dict[tuple[float, float, str], Learning],
    *,
    against: str = "binary",
) -> str:
    """Markdown table of the paired differences (percentage points) against ``against``:
    ``binary`` (the binary model) or ``flair-threshold`` (the FLAIR-threshold baseline)."""
    name = "binary" if against == "binary" else "FLAIR threshold"
    header = ["grid point", "rater", "metric", "pairs", f"model - {name}", "95 % CI", "p"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|---:|---:|---|---:|"]
    labels = dict(_TABLE_METRICS)
    for c in comparisons:
        d = c.difference
        state = learned.get(c.point)
        flag = "" if state is None or state.all_learned else " (not all learned)"
        ci = (
            "n/a" if not math.isfinite(d.ci_low) else f"[{_signed(d.ci_low)}, {_signed(d.ci_high)}]"
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    point_label(*c.point) + flag,
                    f"R{c.rater}",
                    labels.get(c.metric, c.metric),
                    str(d.n),
                    _signed(d.mean_difference),
                    ci,
                    _p(d.p_value),
                ]
            )
            + " |"
        )
    reference = (
        "by the binary model of the same fold and seed"
        if against == "binary"
        else "by the fold's FLAIR-threshold baseline"
    )
    note = (
        "Paired differences in percentage points: each pair is one held-out scan scored against "
        f"one rater by the grid point's model and {reference}. "
        "95 % CI: paired bootstrap (BCa, 9999 resamples) of the mean difference; p: two-sided "
        "Wilcoxon signed-rank test. Scans of one patient are not independent, so with few "
        "patients the intervals are optimistic."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


_LEARNED = (
    "validation Dice at the saved epoch above the FLAIR-threshold baseline's on the same slices"
)
_REMEDY = (
    "train longer (--epochs), check for collapse (history.csv column `collapsed`) or change "
    "--learning-rate"
)


def _evidence(comparisons: Sequence[GridComparison]) -> str:
    return "; ".join(
        f"R{c.rater} {_signed(c.difference.mean_difference)} points "
        f"[95 % CI {_signed(c.difference.ci_low)}, {_signed(c.difference.ci_high)}], "
        f"p{'' if _p(c.difference.p_value).startswith('<') else '='}{_p(c.difference.p_value)}, "
        f"n={c.difference.n}"
        for c in comparisons
    )


def _why_none(learned: dict[tuple[float, float, str], Learning]) -> str:
    """The true reason :func:`choose_best` named no setting."""
    base = learned.get(BASELINE)
    if base is None:
        return "best: none named: the binary grid point has no finished cell yet"
    if not base.all_learned:
        return (
            f"best: none named: binary models: {base.describe()} ({_LEARNED}), so no setting "
            f"can be compared with binary; {_REMEDY}"
        )
    return (
        "best: none named: no grid point of the paper's grid (one rater, constant ring, no TTA) "
        "has a finite held-out Dice"
    )


def describe_best(
    best: BestSetting | None, learned: dict[tuple[float, float, str], Learning]
) -> str:
    """One line: the best setting with its intervals, or the true reason none is named."""
    if best is None:
        return _why_none(learned)
    flair = f"; Dice against the FLAIR threshold: {_evidence(best.against_flair)}" if (
        best.against_flair
    ) else ""
    if best.is_binary:
        return (
            f"best: binary (mean Dice over raters {100 * best.dice:.1f} %; among grid points "
            f"whose models all learned: {_LEARNED}); no soft setting beat it{flair}"
        )
    return (
        f"best: {point_label(best.ratio, best.gamma)} (mean Dice over raters "
        f"{100 * best.dice:.1f} %, among grid points whose models all learned: {_LEARNED}); "
        f"Dice against binary: {_evidence(best.against_binary)}{flair}"
    )


def plot_sweep(
    summaries: Sequence[CellSummary],
    path: str | Path,
    comparisons: Sequence[GridComparison] = (),
) -> Path:
    """PNG: one panel per metric (Dice, precision, recall) against the grid points, plus the
    paired Dice difference to binary with its 95 % interval when ``comparisons`` are given.

    Raters are offset sideways and drawn with different markers and colours; error bars are the
    standard deviation of the summary (over repeats, or patients); every y axis of a metric
    starts at 0, so noise does not look like separation. Titles state n.
    """
    plt = pyplot()
    raters = sorted({s.rater for s in summaries})
    index = {(s.ratio, s.gamma, s.variant, s.rater, s.metric): s for s in summaries}
    points = _ordered_points(summaries)
    xs = np.arange(len(points), dtype=float)
    labels = [point_label(*p) for p in points]
    panels = len(_TABLE_METRICS) + (1 if comparisons else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2), squeeze=False)
    markers = "osD^v"
    width = 0.12
    n = max((s.n for s in summaries), default=0)
    spread = "/".join(sorted({s.spread_over for s in summaries}))
    for ax, (metric, label) in zip(axes[0], _TABLE_METRICS, strict=False):
        for k, rater in enumerate(raters):
            offset = (k - (len(raters) - 1) / 2) * width
            stats = [index.get((*p, rater, metric)) for p in points]
            ys = [100 * s.mean if s else np.nan for s in stats]
            errs = [100 * s.std if s and math.isfinite(s.std) else 0.0 for s in stats]
            ax.errorbar(
                xs + offset,
                ys,
                yerr=errs,
                marker=markers[k % len(markers)],
                color=f"C{k}",
                linestyle="none",
                capsize=3,
                label=f"rater {rater}",
            )
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{label} (%)")
        ax.set_title(f"{label}: mean ± sd over {n} {spread}", fontsize=9)
    if comparisons:
        ax = axes[0][-1]
        where = {p: i for i, p in enumerate(points)}
        for k, rater in enumerate(raters):
            offset = (k - (len(raters) - 1) / 2) * width
            mine = [c for c in comparisons if c.rater == rater and c.metric == "dice"]
            mine = [c for c in mine if c.point in where and c.difference.n > 0]
            if not mine:
                continue
            ys = np.array([100 * c.difference.mean_difference for c in mine])
            low = np.array([100 * c.difference.ci_low for c in mine])
            high = np.array([100 * c.difference.ci_high for c in mine])
            yerr = np.vstack([np.nan_to_num(ys - low), np.nan_to_num(high - ys)])
            ax.errorbar(
                [where[c.point] + offset for c in mine],
                ys,
                yerr=yerr,
                marker=markers[k % len(markers)],
                color=f"C{k}",
                linestyle="none",
                capsize=3,
                label=f"rater {rater}",
            )
        ax.axhline(0.0, color="black", linewidth=0.8)
        pairs = max((c.difference.n for c in comparisons), default=0)
        ax.set_ylabel("Dice, soft - binary (points)")
        ax.set_title(f"paired Dice difference, 95 % CI (n = {pairs} pairs)", fontsize=9)
    for ax in axes[0]:
        ax.set_xticks(xs, labels, rotation=30, fontsize=8)
        ax.set_xlim(-0.5, max(len(points), 1) - 0.5)
        ax.set_xlabel("mask size / gamma (variant)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        if not summaries:
            ax.text(0.5, 0.5, "no finished cell yet", ha="center")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
