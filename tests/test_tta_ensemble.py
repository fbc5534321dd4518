"""Test-time augmentation (left-right flip) and ensembles of runs in calibrate and predict."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import write_isbi
from test_predict import make_run, run_cli, stand_in_model

from mssoft.files.scans import discover_scans, load_scan


class _Mirrored:
    """A model whose output for slice ``s`` is ``f(s) + f(flip(s))``: mirror-symmetric."""

    def __init__(self, model):
        self.model = model

    def predict_on_batch(self, batch):
        own = np.asarray(self.model.predict_on_batch(batch))
        mirrored = np.asarray(self.model.predict_on_batch(np.ascontiguousarray(batch[:, ::-1])))
        return (own + mirrored[:, ::-1]) / 2


def test_flip_tta_of_a_mirror_symmetric_model_equals_no_tta(isbi_root):
    from mssoft.nn.inference import AveragedModel, predict_volume

    image = load_scan(discover_scans(isbi_root)[0]).image
    symmetric = _Mirrored(stand_in_model(4))
    plain = predict_volume(symmetric, image)
    flipped = predict_volume(AveragedModel([symmetric], tta="flip"), image)
    np.testing.assert_allclose(flipped, plain, atol=1e-6)
    # a model that is not symmetric (a gradient along x) does change under the flip
    import keras

    ramp = keras.Sequential(
        [keras.Input((None, None, 4)), keras.layers.Conv2D(1, (3, 1), padding="same")]
    )
    ramp.layers[0].set_weights(
        [np.array([-1, 0, 1], np.float32).reshape(3, 1, 1, 1).repeat(4, 2), np.zeros(1, np.float32)]
    )
    asym = predict_volume(ramp, image)
    assert not np.allclose(predict_volume(AveragedModel([ramp], tta="flip"), image), asym)
    with pytest.raises(ValueError, match="--tta"):
        AveragedModel([ramp], tta="rotate")


def test_ensemble_of_one_run_equals_that_run_and_of_two_is_their_mean(isbi_root):
    from mssoft.nn.inference import AveragedModel, averaged_model, predict_volume

    image = load_scan(discover_scans(isbi_root)[0]).image
    a, b = stand_in_model(4), stand_in_model(4, weight=1.0, bias=-1.0)
    single = predict_volume(a, image)
    assert averaged_model([a]) is a
    np.testing.assert_array_equal(predict_volume(AveragedModel([a]), image), single)
    both = predict_volume(AveragedModel([a, b]), image)
    np.testing.assert_allclose(both, (single + predict_volume(b, image)) / 2, atol=1e-6)


def test_cli_ensemble_calibrate_and_predict(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=2, timepoints=1)
    run = make_run(tmp_path / "run")
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    other = make_run(tmp_path / "other", weight=1.0, bias=-1.0)

    # backward compatible single-run form, and an ensemble of one run's twin copies
    assert (
        run_cli("predict", run, data, "--out", tmp_path / "p1", "--threshold", 0.5).exit_code == 0
    )
    result = run_cli("predict", run, twin, data, "--out", tmp_path / "p2", "--threshold", 0.5)
    assert result.exit_code == 0, result.output
    for scan in discover_scans(data):
        p1 = nib.load(tmp_path / "p1" / f"{scan.scan_id}_prob.nii.gz").get_fdata()
        p2 = nib.load(tmp_path / "p2" / f"{scan.scan_id}_prob.nii.gz").get_fdata()
        np.testing.assert_allclose(p2, p1, atol=1e-6)
    config = json.loads((tmp_path / "p2" / "config.json").read_text())["config"]
    assert len(config["runs"]) == 2 and config["tta"] == "none"

    # several runs: calibrate needs --out, writes one threshold for the ensemble
    result = run_cli("calibrate", run, other, data)
    assert result.exit_code != 0 and "--out" in result.output
    ens = tmp_path / "ensemble"
    result = run_cli("calibrate", run, other, data, "--out", ens, "--tta", "flip")
    assert result.exit_code == 0, result.output
    record = json.loads((ens / "calibration.json").read_text())
    assert record["tta"] == "flip" and len(record["runs"]) == 2
    assert not (run / "calibration.json").exists()
    result = run_cli(
        "predict", run, other, data, "--out", tmp_path / "p3", "--calibration", ens, "--tta", "flip"
    )
    assert result.exit_code == 0, result.output
    assert f"threshold={record['threshold']:g}" in result.stdout
    assert "threshold_source=calibration" in result.stdout
    # an ensemble without calibration falls back to the defaults, and says so
    result = run_cli("predict", run, other, data, "--out", tmp_path / "p4")
    assert result.exit_code == 0 and "--calibration not found" in result.stdout
    # runs with other channels cannot be averaged
    flair_only = make_run(tmp_path / "flair_only", modalities=("flair",))
    result = run_cli("predict", run, flair_only, data, "--out", tmp_path / "p5")
    assert result.exit_code != 0 and "same input channels" in result.output
