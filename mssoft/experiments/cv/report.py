"""Summaries of a cross-validation sweep: the paper's Tables 1/2 and a figure.

Input is the list of per-scan rows of every finished cell (one row per cell × held-out scan ×
rater, holding at least ``ratio``, ``gamma``, ``repeat``, ``fold``, ``rater``, ``dice``, ``ppv`` and
``tpr``). For each grid point and rater, a repeat's score is the mean over all held-out scans (each
scan is held out exactly once per repeat); the table shows the mean ± standard deviation of that
score over repeats. With a single repeat the spread is over patients (folds) instead, and the
table says so.
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
from mssoft.arrays.soft_masks import is_binary_setting
from mssoft.files.atomic import atomic_path

__all__ = ["CellSummary", "summarise", "best_point", "format_table", "plot_sweep"]

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


def best_point(
    summaries: Sequence[CellSummary], *, metric: str = "dice"
) -> tuple[float, float, float]:
    """The (ratio, gamma) with the highest ``metric`` averaged over raters, and that value.

    Among the paper's grid points (one rater, constant ring, no TTA); the table shows the
    variants beyond the paper next to them.
    """
    scores: dict[tuple[float, float], list[float]] = defaultdict(list)
    for s in summaries:
        if s.metric == metric and math.isfinite(s.mean) and not s.variant:
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


def plot_sweep(summaries: Sequence[CellSummary], path: str | Path) -> Path:
    """PNG: Dice against ratio for each gamma (left), precision against recall per rater (right).

    The paper's grid points only (one rater, constant ring, no TTA).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [s for s in summaries if not s.variant]  # the paper's grid points
    raters = sorted({s.rater for s in summaries})
    index = {(s.ratio, s.gamma, s.rater, s.metric): s for s in summaries}
    points = sorted({(s.ratio, s.gamma) for s in summaries})
    binary = [p for p in points if p[0] == 1.0 or p[1] == 0.0]
    gammas = sorted({g for r, g in points if (r, g) not in binary})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    markers = "osD^v"
    for k, rater in enumerate(raters):
        for gamma in gammas or [None]:
            series = binary + [(r, g) for r, g in points if g == gamma and (r, g) not in binary]
            series = [p for p in series if (*p, rater, "dice") in index]
            if not series:
                continue
            xs = [100 * r for r, _ in series]
            stats = [index[(*p, rater, "dice")] for p in series]
            ys = [100 * s.mean for s in stats]
            errs = [100 * s.std if math.isfinite(s.std) else 0.0 for s in stats]
            label = f"rater {rater}" + (f", gamma {gamma:g}" if gamma is not None else "")
            left.errorbar(
                xs, ys, yerr=errs, marker=markers[k % len(markers)], capsize=3, label=label
            )
        for ratio, gamma in points:
            p, r = index.get((ratio, gamma, rater, "ppv")), index.get((ratio, gamma, rater, "tpr"))
            if p is None or r is None:
                continue
            right.scatter(
                100 * r.mean,
                100 * p.mean,
                marker=markers[k % len(markers)],
                color=f"C{k}",
                label=f"rater {rater}" if (ratio, gamma) == points[0] else None,
            )
            right.annotate(
                "binary" if (ratio, gamma) in binary else f"{100 * ratio:.0f}%/{gamma:g}",
                (100 * r.mean, 100 * p.mean),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    left.set(
        xlabel="mask size (% of the rater's volume)",
        ylabel="Dice (%)",
        title="Dice against dilation",
    )
    right.set(xlabel="Recall (%)", ylabel="Precision (%)", title="Precision against recall")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        if not summaries:
            ax.text(0.5, 0.5, "no grid point of the paper's kind (see table.md)", ha="center")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path
