"""Paired statistics of a sweep against its baseline, on constructed data with known answers."""

import math

import numpy as np
import pytest
from scipy import stats

from mssoft.arrays.paired_stats import compare_grid, paired_difference
from mssoft.experiments.cv.report import (
    Learning,
    choose_best,
    compare,
    comparison_records,
    describe_best,
    format_comparison,
    learning,
    plot_sweep,
    summarise,
)


def test_paired_difference_known_answer():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0.3, 0.7, 40)
    treatment = baseline + 0.05 + rng.normal(0, 0.01, 40)
    d = paired_difference(treatment, baseline)
    assert d.n == 40
    assert d.mean_difference == pytest.approx(float(np.mean(treatment - baseline)))
    assert d.ci_low < d.mean_difference < d.ci_high
    assert 0.04 < d.ci_low and d.ci_high < 0.06 and d.excludes_zero
    assert d.p_value == pytest.approx(stats.wilcoxon(treatment, baseline).pvalue)
    assert d.p_value < 1e-6
    # a paired design sees what an unpaired one would miss: a large spread between units
    # does not widen the interval of the difference
    assert d.ci_high - d.ci_low < 0.01


def test_paired_difference_noise_and_edge_cases():
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.1, 30)
    noise = paired_difference(a + rng.normal(0, 0.05, 30), a)
    assert noise.ci_low < 0 < noise.ci_high and not noise.excludes_zero and noise.p_value > 0.05
    same = paired_difference([0.4, 0.5, 0.6], [0.4, 0.5, 0.6])
    assert (
        same.mean_difference == 0.0
        and same.p_value == 1.0
        and (same.ci_low, same.ci_high) == (0, 0)
    )
    one = paired_difference([0.6], [0.5])
    assert one.n == 1 and one.mean_difference == pytest.approx(0.1) and math.isnan(one.p_value)
    dropped = paired_difference([0.6, np.nan, 0.7, 0.8], [0.5, 0.5, np.nan, 0.6])
    assert dropped.n == 2 and dropped.mean_difference == pytest.approx(0.15)
    assert paired_difference([], []).n == 0
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0, 2.0], [1.0])
    # reproducible
    assert paired_difference(a + 0.01, a, seed=3) == paired_difference(a + 0.01, a, seed=3)


def sweep(
    effect_r1=0.06, effect_r2=0.0, scans=6, repeats=2, soft_val_dice=0.5, base_val=0.5, flair=0.1
):
    """Per-scan rows of a constructed sweep: ratio 1.2 adds ``effect_rK`` Dice for rater K; the
    FLAIR-threshold baseline scores ``flair`` on every model's validation slices."""
    rng = np.random.default_rng(0)
    rows, cells = [], []
    for s in range(scans):
        fold = f"p{s // 2}"
        for repeat in range(repeats):
            base = {1: rng.uniform(0.4, 0.7), 2: rng.uniform(0.3, 0.6)}
            for ratio, gamma in ((1.0, 0.0), (1.2, 0.3)):
                for rater, effect in ((1, effect_r1), (2, effect_r2)):
                    shift = effect + rng.normal(0, 0.005) if ratio > 1 else 0.0
                    rows.append(
                        {
                            "fold": fold,
                            "scan": f"{fold}_{s % 2}",
                            "ratio": ratio,
                            "gamma": gamma,
                            "repeat": repeat,
                            "rater": rater,
                            "dice": base[rater] + shift,
                            "ppv": 0.7,
                            "tpr": base[rater] + 2 * shift,
                        }
                    )
    for _fold in sorted({r["fold"] for r in rows}):
        for _repeat in range(repeats):
            for ratio, gamma, val in ((1.0, 0.0, base_val), (1.2, 0.3, soft_val_dice)):
                cells.append(
                    {
                        "ratio": ratio,
                        "gamma": gamma,
                        "val_dice": val,
                        "baseline_val_dice": flair,
                        "collapsed_epoch": None,
                    }
                )
    return rows, cells


def test_compare_grid_finds_the_constructed_effect_per_rater():
    rows, _ = sweep()
    comparisons = compare_grid(rows, baseline=(1.0, 0.0))
    assert {(c.point, c.rater, c.metric) for c in comparisons} == {
        ((1.2, 0.3), r, m) for r in (1, 2) for m in ("dice", "ppv", "tpr")
    }
    by = {(c.rater, c.metric): c.difference for c in comparisons}
    assert by[(1, "dice")].n == 12  # 6 scans x 2 repeats
    assert by[(1, "dice")].mean_difference == pytest.approx(0.06, abs=0.005)
    assert by[(1, "dice")].ci_low > 0.05 and by[(1, "dice")].p_value < 0.001
    assert by[(1, "tpr")].mean_difference == pytest.approx(0.12, abs=0.01)
    assert by[(2, "dice")].ci_low < 0 < by[(2, "dice")].ci_high  # no effect for rater 2
    assert by[(1, "ppv")].mean_difference == 0 and by[(1, "ppv")].p_value == 1.0
    # pairs are matched by scan and repeat, not by position
    shuffled = list(reversed(rows))
    assert compare_grid(shuffled, baseline=(1.0, 0.0)) == comparisons
    # a missing baseline pair drops that pair only
    fewer = [r for r in rows if not (r["ratio"] == 1.0 and r["scan"] == "p0_0")]
    assert {c.difference.n for c in compare_grid(fewer, baseline=(1.0, 0.0))} == {10}


def test_best_setting_needs_learned_models_and_states_its_interval(tmp_path):
    rows, cells = sweep()
    summaries = summarise(rows)
    comparisons = compare(rows)
    learned = learning(cells)
    assert learned[(1.2, 0.3, "")] == Learning(6, 6, 0)  # (ratio, gamma, variant)
    best = choose_best(summaries, comparisons, learned)
    assert (best.ratio, best.gamma) == (1.2, 0.3)
    line = describe_best(best, learned)
    assert line.startswith("best: 120% / 0.3 (")
    assert "R1 +6.1 points [95 % CI +5.8, +6.3], p<0.001, n=12" in line
    assert "R2 +0.2 points [95 % CI -0.0, +0.5], p=0.092, n=12" in line
    table = format_comparison(comparisons, learned)
    assert (
        "| 120% / 0.3 | R1 | Dice | 12 | +6.1 | [+5.8, +6.3] | <0.001 |" in table
        and "Wilcoxon" in table
    )
    records = comparison_records(comparisons, learned)
    assert records[0]["n_pairs"] == 12 and records[0]["models_learned"] == "6/6"
    assert set(records[0]) >= {"mean_difference", "ci95_low", "ci95_high", "p_wilcoxon"}
    png = plot_sweep(summaries, tmp_path / "sweep.png", comparisons)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_no_best_when_nothing_learned():
    rows, cells = sweep(soft_val_dice=0.06, base_val=0.06)  # below the baseline's 10 %
    learned = learning(cells)
    assert learned[(1.0, 0.0, "")] == Learning(0, 6, 0, below_baseline=6)
    best = choose_best(summarise(rows), compare(rows), learned)
    assert best is None
    line = describe_best(best, learned)
    assert line.startswith("best: none named: binary models: 6 of 6 models failed: 6 did not beat")
    assert "FLAIR-threshold baseline" in line
    # high validation Dice does not count when the baseline scores higher still
    rows, cells = sweep(flair=0.7)
    assert not any(c.all_learned for c in learning(cells).values())
    # without a baseline (no FLAIR) a finite validation Dice counts, and is marked unjudged
    rows, cells = sweep(flair=float("nan"))
    assert learning(cells)[(1.0, 0.0, "")] == Learning(6, 6, 0, 0, unjudged=6)
    # the soft point did not learn but binary did: binary is the only candidate
    rows, cells = sweep(soft_val_dice=0.06)
    collapsed = dict(cells[0], collapsed_epoch=5, val_dice=0.0)  # saved model predicts nothing
    learned = learning([collapsed, *cells[1:]])
    assert learned[(1.0, 0.0, "")] == Learning(5, 6, 1) and not learned[(1.0, 0.0, "")].all_learned
    assert choose_best(summarise(rows), compare(rows), learned) is None  # no baseline to beat
    assert "binary models: 1 of 6 models failed: 1 collapsed" in describe_best(None, learned)
    # a run that ended collapsed did not learn, even if its saved (earlier) epoch looked fine
    collapsed_late = dict(cells[0], collapsed_epoch=7, val_dice=0.4)
    assert learning([collapsed_late, *cells[1:]])[(1.0, 0.0, "")] == Learning(5, 6, 1)
    learned = learning(cells)
    best = choose_best(summarise(rows), compare(rows), learned)
    assert best.is_binary and describe_best(best, learned).startswith("best: binary (")
    assert "(not all learned)" in format_comparison(compare(rows), learned)


def test_variants_beyond_the_paper_are_compared_on_their_own():
    """A grid point is (ratio, gamma, variant): a two-rater point never pools with the paper's."""
    rows, _ = sweep()
    variant = [
        dict(r, variant="raters1-2", dice=r["dice"] + 0.5)
        for r in rows
        if (r["ratio"], r["gamma"]) == (1.2, 0.3)
    ]
    comparisons = compare(rows + variant)
    points = {c.point for c in comparisons}
    assert points == {(1.2, 0.3, ""), (1.2, 0.3, "raters1-2")}
    by = {(c.point, c.rater, c.metric): c.difference for c in comparisons}
    paper = by[((1.2, 0.3, ""), 1, "dice")]
    two = by[((1.2, 0.3, "raters1-2"), 1, "dice")]
    assert paper.n == two.n == 12
    assert two.mean_difference == pytest.approx(paper.mean_difference + 0.5, abs=1e-9)
