"""Summaries of a cross-validation sweep: the paper's Tables 1/2, the paired evidence, a figure.

Input is the list of per-scan rows of every finished cell (one row per cell × held-out scan ×
rater, holding at least ``ratio``, ``gamma``, ``repeat``, ``fold``, ``rater``, ``dice``, ``ppv`` and
``tpr``). For each grid point and rater, a repeat's score is the mean over all held-out scans (each
scan is held out exactly once per repeat); the table shows the mean ± standard deviation of that
score over repeats. With a single repeat the spread is over patients (folds) instead, and the
table says so.

The evidence is paired (:func:`mssoft.arrays.paired_stats.compare_grid`): every grid point against
the binary baseline on the same held-out scans, folds and seeds, per rater and metric, with a 95 %
bootstrap interval and a Wilcoxon p-value. A best setting is named only among grid points whose
every model learned (validation Dice at the saved epoch >= :data:`LEARNED_DICE`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.metrics import nanmean
from mssoft.arrays.paired_stats import GridComparison, compare_grid
from mssoft.arrays.soft_masks import is_binary_setting
from mssoft.experiments.demo.report import LEARNED_DICE
from mssoft.files.figures import pyplot, save_figure

__all__ = [
    "LEARNED_DICE",
    "BASELINE",
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


def compare(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> list[GridComparison]:
    """Every grid point against the binary baseline: paired per held-out scan and repeat."""
    return compare_grid(
        [{**row, "variant": row.get("variant") or ""} for row in rows],
        baseline=BASELINE,
        point_fields=("ratio", "gamma", "variant"),
        pair_fields=("scan", "repeat"),
        metrics=tuple(m for m, _ in _TABLE_METRICS),
        seed=seed,
    )


@dataclass(frozen=True)
class Learning:
    """How many models of a grid point learned (see :func:`learning`), of how many, and how many
    ended collapsed."""

    learned: int
    total: int
    collapsed: int = 0

    @property
    def all_learned(self) -> bool:
        return self.total > 0 and self.learned == self.total


def learning(
    cells: Sequence[dict[str, Any]], floor: float = LEARNED_DICE
) -> dict[tuple[float, float, str], Learning]:
    """Per grid point: models that learned, models in all, and models that ended collapsed.

    ``cells`` are cell records (``ratio``, ``gamma``, ``val_dice``, ``collapsed_epoch``). A model
    learned when the validation Dice of its saved epoch is at least ``floor`` and its run did not
    end collapsed (even a saved epoch from before the collapse had its training cut short); a
    missing or NaN ``val_dice`` counts as not learned.
    """
    counts: dict[tuple[float, float, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for cell in cells:
        entry = counts[(float(cell["ratio"]), float(cell["gamma"]), cell.get("variant") or "")]
        value = cell.get("val_dice")
        collapsed = cell.get("collapsed_epoch") is not None
        good = value is not None and math.isfinite(float(value)) and float(value) >= floor
        entry[0] += good and not collapsed
        entry[1] += 1
        entry[2] += collapsed
    return {point: Learning(*c) for point, c in sorted(counts.items())}


@dataclass(frozen=True)
class BestSetting:
    """The best grid point among those whose models learned, with its evidence against binary.

    Attributes
    ----------
    ratio, gamma : float
    dice : float
        Mean Dice over raters (fraction).
    against_binary : list of GridComparison
        Its Dice difference to the binary baseline per rater (empty when it is the baseline).
    """

    ratio: float
    gamma: float
    dice: float
    against_binary: list[GridComparison]

    @property
    def is_binary(self) -> bool:
        return is_binary_setting(self.ratio, self.gamma)


def choose_best(
    summaries: Sequence[CellSummary],
    comparisons: Sequence[GridComparison],
    learned: dict[tuple[float, float, str], Learning],
) -> BestSetting | None:
    """The best grid point by mean Dice among those whose every model learned; None if none did.

    The binary baseline competes too; when it has not learned, no soft point can be compared
    with it and None is returned.
    """
    eligible = {p for p, c in learned.items() if c.all_learned}
    if BASELINE not in eligible:
        return None
    ratio, gamma, dice = best_point(summaries, eligible=eligible)
    if not math.isfinite(dice):
        return None
    evidence = [c for c in comparisons if c.point == (ratio, gamma, "") and c.metric == "dice"]
    return BestSetting(ratio, gamma, dice, evidence)


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
            continue
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


def format_table(summaries: Sequence[CellSummary]) -> str:
    """Markdown table laid out like the paper's: rows grid points, columns metric × rater (%)."""
    raters = sorted({s.rater for s in summaries})
    points = sorted({(s.ratio, s.gamma, s.variant) for s in summaries})
    index = {(s.ratio, s.gamma, s.variant, s.rater, s.metric): s for s in summaries}
    metrics = [
        (m, label)
        for m, label in _TABLE_METRICS
        if any(s.metric == m and math.isfinite(s.mean) for s in summaries)
    ]
    header = ["mask size", "gamma"] + [f"{label} R{r}" for _, label in metrics for r in raters]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ratio, gamma, variant in points:
        if is_binary_setting(ratio, gamma):
            size = "100% (binary)" if "raters" not in variant else "100% (raters' share)"
        else:
            size = f"{100 * ratio:.0f}%"
        if variant:
            size += f" {variant}"
        cells = [
            _cell(index.get((ratio, gamma, variant, r, m))) for m, _ in metrics for r in raters
        ]
        lines.append("| " + " | ".join([size, f"{gamma:g}", *cells]) + " |")
    spread = {s.spread_over for s in summaries}
    n = max((s.n for s in summaries), default=0)
    note = (
        f"Values in %, mean ± standard deviation over {n} {'/'.join(sorted(spread))}; "
        "a repeat's value is the mean over all held-out scans (leave-one-patient-out). "
        "ECE: expected calibration error of the probabilities against the rater's mask (15 "
        "bins, brain voxels). Variants: raters<K-K> = share of several raters, ring-<profile>, "
        "tta-flip."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def _point_label(ratio: float, gamma: float, variant: str = "") -> str:
    label = "binary" if is_binary_setting(ratio, gamma) else f"{100 * ratio:.0f}% / {gamma:g}"
    return f"{label} {variant}" if variant else label


def _signed(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:+.1f}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2g}" if value >= 1e-3 else "<0.001"


def comparison_records(
    comparisons: Sequence[GridComparison], learned: dict[tuple[float, float, str], Learning]
) -> list[dict[str, Any]]:
    """Rows of ``comparison.csv`` (fractions; ``p_wilcoxon`` two-sided)."""
    rows = []
    for c in comparisons:
        d = c.difference
        state = learned.get(c.point, Learning(0, 0))
        base = learned.get(BASELINE, Learning(0, 0))
        rows.append(
            {
                "ratio": c.point[0],
                "gamma": c.point[1],
                "rater": c.rater,
                "metric": c.metric,
                "n_pairs": d.n,
                "binary_mean": d.baseline_mean,
                "soft_mean": d.treatment_mean,
                "mean_difference": d.mean_difference,
                "ci95_low": d.ci_low,
                "ci95_high": d.ci_high,
                "p_wilcoxon": d.p_value,
                "models_learned": f"{state.learned}/{state.total}",
                "binary_models_learned": f"{base.learned}/{base.total}",
                "variant": c.point[2],  # last: the paper's columns keep their order
            }
        )
    return rows


def format_comparison(
    comparisons: Sequence[GridComparison], learned: dict[tuple[float, float, str], Learning]
) -> str:
    """Markdown table of the paired differences (percentage points) against the binary baseline."""
    header = ["mask size / gamma", "rater", "metric", "pairs", "soft - binary", "95 % CI", "p"]
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
                    _point_label(*c.point) + flag,
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
    note = (
        "Paired differences in percentage points: each pair is one held-out scan scored against "
        "one rater by the grid point's model and by the binary model of the same fold and seed. "
        "95 % CI: paired bootstrap (BCa, 9999 resamples) of the mean difference; p: two-sided "
        "Wilcoxon signed-rank test. Scans of one patient are not independent, so with few "
        "patients the intervals are optimistic."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def describe_best(
    best: BestSetting | None, learned: dict[tuple[float, float, str], Learning]
) -> str:
    """One line: the best setting with its interval, or why none is named."""
    floor = f"validation Dice >= {100 * LEARNED_DICE:.0f} %"
    if best is None:
        base = learned.get(BASELINE)
        if base is not None and not base.all_learned:
            why = f"{base.total - base.learned} of {base.total} binary-baseline models"
        else:
            failing = sum(1 for c in learned.values() if not c.all_learned)
            why = f"models of {failing} of {len(learned)} grid points"
        return (
            f"best: none named: {why} did not learn ({floor} at the saved epoch); "
            "train longer (--epochs), check for collapse (history.csv column `collapsed`) or "
            "change --learning-rate"
        )
    if best.is_binary:
        return (
            f"best: binary baseline (mean Dice over raters {100 * best.dice:.1f} %; among grid "
            f"points whose models all learned, {floor}); no soft setting beat it"
        )
    evidence = "; ".join(
        f"R{c.rater} {_signed(c.difference.mean_difference)} points "
        f"[95 % CI {_signed(c.difference.ci_low)}, {_signed(c.difference.ci_high)}], "
        f"p{'' if _p(c.difference.p_value).startswith('<') else '='}{_p(c.difference.p_value)}, "
        f"n={c.difference.n}"
        for c in best.against_binary
    )
    return (
        f"best: ratio {best.ratio:g}, gamma {best.gamma:g} (mean Dice over raters "
        f"{100 * best.dice:.1f} %, among grid points whose models all learned, {floor}); "
        f"Dice against binary: {evidence}"
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
    # the paper's grid points first, then the variants beyond it
    points = sorted({(s.ratio, s.gamma, s.variant) for s in summaries}, key=lambda p: (p[2], p))
    xs = np.arange(len(points), dtype=float)
    labels = [_point_label(*p) for p in points]
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
