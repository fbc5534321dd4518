import json

import nibabel as nib
import numpy as np
import pytest
from conftest import write_isbi
from scipy import ndimage
from test_predict import make_run, run_cli

from mssoft.arrays.metrics import scan_metrics
from mssoft.arrays.postprocess import postprocess
from mssoft.arrays.threshold_search import (
    choose_binarisation,
    dice_curve,
    dice_curves,
    grid_edge,
    parse_min_sizes,
    threshold_grid,
)
from mssoft.errors import ConfigError
from mssoft.files.scans import discover_scans, load_scan


def brute_force_curve(prob, ref, thresholds, min_size, connectivity=18):
    return np.array(
        [
            scan_metrics(
                postprocess(prob, t, min_size=min_size, connectivity=connectivity), ref
            ).dice
            for t in thresholds
        ]
    )


def test_threshold_grid():
    grid = threshold_grid()
    assert grid.size == 99 and grid[0] == 0.01 and grid[-1] == 0.99
    assert grid[7] == 0.08 and np.all(np.diff(grid) > 0)  # exact decimals, no 0.08000000000000002
    assert threshold_grid(0.2, 0.5, 0.1).tolist() == [0.2, 0.3, 0.4, 0.5]
    assert threshold_grid(0.5, 0.5, 0.1).tolist() == [0.5]
    for args, option in (
        ((0.0, 0.9, 0.1), "--threshold-min"),
        ((0.5, 0.4, 0.1), "--threshold-max"),
        ((0.1, 1.2, 0.1), "--threshold-max"),
        ((0.1, 0.9, 0.0), "--threshold-step"),
    ):
        with pytest.raises(ConfigError, match=option):
            threshold_grid(*args)


def test_grid_edge():
    grid = threshold_grid(0.1, 0.5, 0.1)
    assert grid_edge(0.1, grid) == "lower" and grid_edge(0.5, grid) == "upper"
    assert grid_edge(0.3, grid) is None and grid_edge(0.2, grid) is None


def test_calibrate_warns_when_the_threshold_is_on_the_grid_end(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=2)
    run = make_run(tmp_path / "run", train_scans=["training01_01"], weight=0.8, bias=-1.0)
    # a two-value grid: whatever is chosen lies on one of its ends
    result = run_cli(
        "calibrate", run, data, "--threshold-min", 0.5, "--threshold-max", 0.52,
        "--threshold-step", 0.02,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((run / "calibration.json").read_text())
    edge = "lower" if record["threshold"] == 0.5 else "upper"
    assert f"is the {edge} end of the searched grid (0.5 to 0.52)" in record["grid_warning"]
    assert "is the" in result.stderr and "end of the searched grid" in result.stderr
    assert "grid" not in result.stdout
    # the default grid (0.01 to 0.99) puts this blunt model's threshold inside: no warning
    result = run_cli("calibrate", run, data, "--overwrite")
    assert result.exit_code == 0, result.output
    record = json.loads((run / "calibration.json").read_text())
    assert record["thresholds"][0] == 0.01 and record["thresholds"][-1] == 0.99
    assert record["grid_warning"] is None and 0.01 < record["threshold"] < 0.99
    assert "end of the searched grid" not in result.stderr


def test_parse_min_sizes():
    assert parse_min_sizes("18") == (18,)
    assert parse_min_sizes("10, 18,10,0") == (10, 18, 0)
    for bad in ("", "a", "-1", "1.5", "18,"):
        with pytest.raises(ConfigError, match="--min-sizes"):
            parse_min_sizes(bad)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_fast_curve_equals_postprocessing_at_every_threshold(connectivity):
    rng = np.random.default_rng(connectivity)
    shape = (30, 26, 22)
    # smooth blobs with graded probabilities, speckle noise, and an empty border region
    prob = ndimage.gaussian_filter(rng.random(shape), 1.2)
    prob = np.clip((prob - prob.mean()) * 9 + 0.3 + 0.3 * (rng.random(shape) < 0.03), 0, 1).astype(
        np.float32
    )
    prob[:4] = 0
    ref = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.52
    thresholds = threshold_grid(0.05, 0.95, 0.01)
    curves = dice_curves(prob, ref, thresholds, min_sizes=(0, 5, 18), connectivity=connectivity)
    assert curves.shape == (3, 91)
    for row, min_size in zip(curves, (0, 5, 18), strict=True):
        np.testing.assert_array_equal(
            row, brute_force_curve(prob, ref, thresholds, min_size, connectivity)
        )
    assert len(np.unique(curves[2])) > 10  # the example is not trivially flat


def test_empty_reference_and_empty_prediction_curves():
    prob = np.zeros((8, 8, 8), np.float32)
    prob[1:5, 1:5, 1:5] = 0.6  # 64 voxels
    empty = np.zeros((8, 8, 8), bool)
    thresholds = [0.5, 0.6, 0.7]
    # nothing predicted above 0.6: both empty gives Dice 1
    np.testing.assert_array_equal(dice_curve(prob, empty, thresholds), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(dice_curve(prob, prob > 0, thresholds), [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        dice_curve(prob, empty, [0.5, 0.5])


def test_picks_the_known_best_threshold():
    # 100 slabs of 5x5 = 25 voxels along x with probability 0.01 * x; the reference is x >= 37,
    # so only threshold 0.37 reproduces it exactly (0.36 adds slab 36, 0.38 drops slab 37)
    x = np.arange(100)
    prob = np.broadcast_to((x / 100)[:, None, None], (100, 5, 5)).astype(np.float32)
    ref = np.broadcast_to((x >= 37)[:, None, None], (100, 5, 5))
    thresholds = threshold_grid()
    curves = dice_curves(prob, ref, thresholds)[None]  # one scan
    chosen, dice = choose_binarisation(curves, thresholds, (18,))
    assert chosen.threshold == 0.37 and chosen.min_size == 18 and dice == 1.0
    assert np.sum(curves == 1.0) == 1


def test_choice_maximises_the_mean_and_breaks_ties_low():
    thresholds = np.array([0.3, 0.4, 0.5])
    # scan 1 prefers 0.3, scan 2 prefers 0.5; the mean is best at 0.4
    curves = np.array([[[0.9, 0.8, 0.1]], [[0.1, 0.7, 0.75]]])
    chosen, dice = choose_binarisation(curves, thresholds, (18,))
    assert chosen.threshold == 0.4 and dice == pytest.approx(0.75)
    # a plateau goes to the lowest threshold; a tie between sizes to the first size listed
    flat = np.array([[[0.5, 0.8, 0.8], [0.8, 0.8, 0.2]]])
    chosen, _ = choose_binarisation(flat, thresholds, (10, 18))
    assert (chosen.threshold, chosen.min_size) == (0.4, 10)


def test_calibrate_command_on_training_scans(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=2, timepoints=2)
    train = ["training01_01", "training02_02"]
    # a blunt model so that the threshold matters: prob = sigmoid(0.8 * z_flair - 1)
    run = make_run(tmp_path / "run", train_scans=train, weight=0.8, bias=-1.0)
    result = run_cli(
        "calibrate",
        run,
        data,
        "--rater",
        2,
        "--min-sizes",
        "0,18",
        "--threshold-min",
        0.1,
        "--threshold-max",
        0.9,
        "--threshold-step",
        0.02,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((run / "calibration.json").read_text())
    assert (
        record["scans"] == train and record["scan_source"] == "run config" and record["rater"] == 2
    )
    assert len(record["thresholds"]) == 41 and record["min_sizes"] == [0, 18]
    assert record["rule"] == "prob >= threshold"
    assert (
        record["lesion_definition"] == f"18-connected components of > {record['min_size']} voxels"
    )

    # the same choice by brute force on the predictions, post-processed threshold by threshold
    from mssoft.nn.inference import predict_volume
    from mssoft.nn.model_files import load_run_model

    model = load_run_model(run)
    scans = {s.scan_id: s for s in discover_scans(data)}
    thresholds = np.array(record["thresholds"])
    curves = []
    for scan_id in train:
        loaded = load_scan(scans[scan_id], rater=2)
        prob = predict_volume(model, loaded.image)
        curves.append([brute_force_curve(prob, loaded.mask, thresholds, m) for m in (0, 18)])
    mean = np.mean(curves, axis=0)
    i, j = np.unravel_index(np.argmax(mean), mean.shape)
    assert (record["threshold"], record["min_size"]) == (thresholds[j], (0, 18)[i])
    assert record["mean_dice"] == pytest.approx(mean[i, j])
    np.testing.assert_allclose(record["mean_dice_curve"]["18"], mean[1])
    assert 0 < record["mean_dice"] < 1 and len(np.unique(mean)) > 5
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(
        f"threshold={record['threshold']:g}\tmin_size={record['min_size']}\t"
        f"mean_dice={record['mean_dice']:.4f}"
    )

    # predict then uses the calibration
    result = run_cli("predict", run, data, "--out", tmp_path / "pred", "--scans", "training01_01")
    assert result.exit_code == 0, result.output
    assert (
        f"threshold={record['threshold']:g}" in result.stdout
        and "source=calibration" in result.stdout
    )
    seg = nib.load(tmp_path / "pred" / "training01_01_seg.nii.gz").get_fdata() > 0
    assert seg.any()


def test_calibrate_scan_selection_and_errors(tmp_path, isbi_root):
    run = make_run(tmp_path / "run")  # no training scans recorded
    result = run_cli("calibrate", run, isbi_root, "--threshold-step", 0.1)
    assert result.exit_code == 0, result.output
    assert "lists no training scans" in result.stderr
    record = json.loads((run / "calibration.json").read_text())
    assert record["scans"] == [s.scan_id for s in discover_scans(isbi_root)]
    result = run_cli("calibrate", run, isbi_root)
    assert (
        result.exit_code == 1
        and "calibration.json already exists; pass --overwrite" in result.stderr
    )
    result = run_cli(
        "calibrate",
        run,
        isbi_root,
        "--overwrite",
        "--scans",
        "training01_02",
        "--threshold-step",
        0.1,
    )
    assert result.exit_code == 0 and json.loads((run / "calibration.json").read_text())[
        "scans"
    ] == ["training01_02"]
    result = run_cli("calibrate", run, isbi_root, "--overwrite", "--rater", 3)
    assert result.exit_code == 1 and "no scan has a mask of rater 3" in result.stderr
    result = run_cli("calibrate", run, isbi_root, "--overwrite", "--min-sizes", "x")
    assert result.exit_code == 1 and "Invalid value for `--min-sizes`" in result.stderr
    other = make_run(tmp_path / "other", train_scans=["training09_01"])
    result = run_cli("calibrate", other, isbi_root)
    assert (
        result.exit_code == 1
        and "training scan(s) of run" in result.stderr
        and "training09_01" in result.stderr
    )
    assert not (other / "calibration.json").exists()
