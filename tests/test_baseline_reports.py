"""The FLAIR-threshold baseline in the reports: pooled slice Dice, per-fold files, 'learned', re-runs."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.arrays.metrics import scan_metrics
from mssoft.arrays.slice_dice import axial_overlap_counts, pooled_dice
from mssoft.experiments.cv.baseline import (
    FLAIR_POINT,
    baseline_rows,
    ensure_fold_baselines,
    grid_targets,
)
from mssoft.experiments.cv.plan import GridPoint, leave_one_patient_out
from mssoft.experiments.cv.report import (
    Learning,
    compare_with_flair,
    comparison_records,
    describe_best,
    learning,
)
from mssoft.experiments.demo.report import calibration_grid_text
from mssoft.files.layout import cv_fold_baseline_path
from mssoft.files.scans import discover_scans
from mssoft.workflows.flair_baseline import (
    calibrate_on_scans,
    rater_targets,
    run_validation_dice,
    segment_scans,
    validation_slices,
)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_pooled_dice_sums_slices_as_the_validation_metric_does():
    rng = np.random.default_rng(0)
    seg = rng.random((6, 5, 4)) > 0.6
    ref = rng.random((6, 5, 4)) > 0.6
    counts = axial_overlap_counts(seg, ref)
    assert counts.shape == (4, 3) and counts.dtype == np.int64
    # every slice pooled: the Dice of the whole volume
    whole = scan_metrics(seg, ref).dice
    assert pooled_dice({"a": counts}, {"a": range(4)}) == pytest.approx(whole)
    # two slices: 2 TP / (2 TP + FP + FN) of those slices only
    s, r = seg[:, :, [1, 3]], ref[:, :, [1, 3]]
    expected = 2 * (s & r).sum() / (2 * (s & r).sum() + (s & ~r).sum() + (~s & r).sum())
    assert pooled_dice({"a": counts}, {"a": [1, 3]}) == pytest.approx(expected)
    empty = np.zeros((2, 2, 2), bool)
    assert pooled_dice({"a": axial_overlap_counts(empty, empty)}, {"a": [0]}) == 1.0
    assert math.isnan(pooled_dice({"a": counts}, {"a": []}))
    with pytest.raises(ValueError, match="one shape"):
        axial_overlap_counts(seg, ref[:, :, :2])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_isbi(tmp_path_factory.mktemp("baseline") / "isbi", patients=3, timepoints=1)


def _run_with_split(folder, split):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "split.json").write_text(json.dumps(split))
    return folder


def test_validation_dice_scores_exactly_the_run_slices(data, tmp_path):
    scans = discover_scans(data)
    rule = calibrate_on_scans(scans, rater=1)
    assert 1.0 <= rule.threshold <= 6.0
    segmented = segment_scans(rule, scans)
    first = scans[0].scan_id
    reference = rater_targets(scans[:1], (1,))[first]
    z = int(np.argmax(reference.sum(axis=(0, 1))))
    run = _run_with_split(tmp_path / "run", {first: {"train": [0], "val": [z]}})
    assert validation_slices(run) == {first: [z]}
    seg = segmented[first][0][:, :, z]
    expected = 2 * (seg & reference[:, :, z]).sum() / (seg.sum() + reference[:, :, z].sum())
    assert run_validation_dice(segmented, scans, run) == pytest.approx(expected)
    # without validation slices the training slices are scored (as the model's Dice then is)
    no_val = _run_with_split(tmp_path / "noval", {first: {"train": [z], "val": []}})
    assert validation_slices(no_val) == {first: [z]}
    assert math.isnan(run_validation_dice(segmented, scans, tmp_path / "no_run"))
    # several raters: the voxels at least half of them marked
    both = rater_targets(scans[:1], (1, 2))[first]
    masks = [rater_targets(scans[:1], (r,))[first] for r in (1, 2)]
    np.testing.assert_array_equal(both, masks[0] | masks[1])


def test_fold_baselines_are_computed_once_and_rebuilt_for_new_targets(data, tmp_path):
    scans = discover_scans(data)
    folds = leave_one_patient_out(scans)
    points = [GridPoint(1.0, 0.0), GridPoint(1.2, 0.3)]
    records = ensure_fold_baselines(tmp_path, scans, folds, points, rater=1)
    assert set(records) == {f.held_out for f in folds}
    path = cv_fold_baseline_path(tmp_path, folds[0].held_out)
    record = json.loads(path.read_text())
    assert set(record["slice_counts"]) == {"rater1"}
    assert record["train_scans"] == list(folds[0].train)
    assert {(r["scan"], r["rater"]) for r in record["scans"]} == {
        (s, r) for s in folds[0].test for r in (1, 2)
    }
    stamp = path.stat().st_mtime_ns
    ensure_fold_baselines(tmp_path, scans, folds, points, rater=1)
    assert path.stat().st_mtime_ns == stamp  # reused, not recomputed
    shared = [*points, GridPoint(1.0, 0.0, raters=(1, 2))]
    assert set(grid_targets(shared, 1)) == {"rater1", "raters1-2"}
    ensure_fold_baselines(tmp_path, scans, folds, shared, rater=1)
    assert set(json.loads(path.read_text())["slice_counts"]) == {"rater1", "raters1-2"}

    # rows shaped like the models': one per scan, rater and repeat the models have
    model_rows = [
        {"scan": s, "repeat": k, "seed": 7 + k, "ratio": 1.0, "gamma": 0.0, "rater": r,
         "fold": f.held_out, "dice": 0.5, "ppv": 0.5, "tpr": 0.5, "variant": ""}
        for f in folds for s in f.test for k in (0, 1) for r in (1, 2)
    ]  # fmt: skip
    rows = baseline_rows(records, model_rows)
    assert len(rows) == len(model_rows)
    assert {(r["ratio"], r["gamma"], r["variant"]) for r in rows} == {FLAIR_POINT}
    assert {r["seed"] for r in rows} == {7, 8}
    against = compare_with_flair(model_rows + rows)
    assert {c.metric for c in against} == {"dice", "ppv", "tpr"}
    assert all(c.difference.n == len(scans) * 2 for c in against)
    csv_rows = comparison_records(against, {}, against="flair-threshold")
    assert csv_rows[0]["against"] == "flair-threshold" and csv_rows[0]["label"] == "binary"


def test_best_line_states_the_true_reason():
    cells = [
        {"ratio": 1.2, "gamma": 0.3, "variant": "raters1-2", "val_dice": 0.7,
         "baseline_val_dice": 0.5, "collapsed_epoch": None},
    ]  # fmt: skip
    learned = learning(cells)
    assert learned[(1.2, 0.3, "raters1-2")] == Learning(1, 1)
    line = describe_best(None, learned)
    assert line == "best: none named: the binary grid point has no finished cell yet"
    assert "did not learn" not in line and "train longer" not in line


def test_demo_calibration_grid_comes_from_the_settings():
    thresholds = np.round(np.arange(5, 96) / 100, 10).tolist()
    assert calibration_grid_text({"thresholds": thresholds}) == "grid 0.05 to 0.95 by 0.01"
    assert calibration_grid_text({"thresholds": [0.1, 0.3, 0.9]}) == "grid 0.1 to 0.9 (3 values)"
    assert calibration_grid_text({}) == "its threshold grid"


def _benchmark(name):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_collapse_benchmark_counts_runs_that_beat_the_baseline():
    collapse = _benchmark("collapse")
    run = {"variant": "after", "learning_rate": 1e-3, "collapsed_epoch": None}
    runs = [
        {**run, "best_val_dice": 0.4, "baseline_val_dice": 0.6},  # above 10 %, below baseline
        {**run, "best_val_dice": 0.7, "baseline_val_dice": 0.6},
    ]
    table = collapse.format_table(runs)
    assert "learned (beat the FLAIR threshold)" in table
    assert "| after | 0.001 | 2 | 0 | 1 | 0.55 | 0.60 |" in table
    old = [{**run, "best_val_dice": 0.4}]  # recorded before the baseline: not judged
    assert "| after | 0.001 | 1 | 0 | n/a | 0.40 | n/a |" in collapse.format_table(old)


# --- a sweep written before the baseline existed ------------------------------------------------

TINY = [
    "--epochs", "1", "--base-filters", "4", "--depth", "2", "--batch-size", "4",
    "--modalities", "flair,t2", "--ratios", "1.0", "--gammas", "0.3",
]  # fmt: skip


@pytest.mark.slow
def test_rerunning_an_existing_sweep_adds_the_baseline_without_retraining(tmp_path):
    from mssoft.synthetic import write_isbi_dataset

    data = tmp_path / "isbi"
    write_isbi_dataset(data, n_patients=2, timepoints=1, shape=(32, 40, 24), seed=3, n_lesions=4)
    out = tmp_path / "cv"
    first = CliRunner().invoke(cli, ["cv", str(data), "--out", str(out), *TINY])
    assert first.exit_code == 0, first.output
    # make it a sweep of the code before the baseline: no baseline files, no baseline rows
    for path in out.glob("cells/*/flair_baseline.json"):
        path.unlink()
    for name in ("table.md", "comparison.csv", "cv_scans.csv", "cv_results.csv"):
        (out / name).unlink()
    config = (out / "config.json").read_text()
    done = sorted(out.glob("cells/*/*/*/result.json"))
    stamps = {p: p.stat().st_mtime_ns for p in done}

    again = CliRunner().invoke(cli, ["cv", str(data), "--out", str(out), *TINY])
    assert again.exit_code == 0, again.output
    assert "cells: 2/2 finished (0 run now)" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # nothing retrained
    assert (out / "config.json").read_text() == config
    baselines = sorted(out.glob("cells/*/flair_baseline.json"))
    assert len(baselines) == 2
    table = (out / "table.md").read_text()
    assert "| FLAIR threshold |" in table and "## Against the FLAIR-threshold baseline" in table
    assert "flair-threshold" in (out / "comparison.csv").read_text()
    assert ",flair-threshold" in (out / "cv_scans.csv").read_text()
    # the best line or the not-learned note judges the models against the baseline
    assert (
        "did not beat the FLAIR-threshold baseline" in again.stdout
        or "above the FLAIR-threshold baseline's" in again.stdout
    )
    stamp = {p: p.stat().st_mtime_ns for p in baselines}
    third = CliRunner().invoke(cli, ["cv", str(data), "--out", str(out), *TINY])
    assert third.exit_code == 0 and {p: p.stat().st_mtime_ns for p in baselines} == stamp
