"""Geometry guard: training voxel size recorded, checked and (with --resample) matched."""

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import write_isbi
from test_predict import make_run, run_cli

from mssoft.arrays.resample import (
    resample_volume,
    resampled_shape,
    spacing_deviation,
    spacing_differs,
)
from mssoft.errors import DataError
from mssoft.files.atomic import write_json
from mssoft.files.geometry import run_geometry, training_geometry
from mssoft.files.run_record import parse_run_record
from mssoft.files.scans import discover_scans


def test_spacing_deviation_and_the_20_percent_rule():
    np.testing.assert_allclose(spacing_deviation((0.5, 1.0, 1.2), (1, 1, 1)), [0.5, 0.0, 0.2])
    assert not spacing_differs((1.0, 1.19, 0.81), (1, 1, 1))
    assert spacing_differs((1.0, 1.0, 1.25), (1, 1, 1))
    assert spacing_differs((0.5, 0.5, 0.5), (1, 1, 1))


def test_resampled_shape_keeps_the_field_of_view():
    assert resampled_shape((48, 56, 40), (0.5, 0.5, 0.5), (1, 1, 1)) == (24, 28, 20)
    assert resampled_shape((24, 28, 20), (1, 1, 3), (1, 1, 1)) == (24, 28, 60)
    assert resampled_shape((3, 3, 3), (1, 1, 1), (10, 10, 10)) == (1, 1, 1)


def test_resample_volume_is_trilinear_and_returns_to_the_same_shape():
    x = np.linspace(0, 1, 20, dtype=np.float32)
    ramp = np.broadcast_to(x[:, None, None], (20, 12, 10)).copy()  # linear along axis 0
    up = resample_volume(ramp, (40, 24, 20))
    assert up.shape == (40, 24, 20) and up.dtype == np.float32
    assert up.min() >= 0 and up.max() <= 1  # no overshoot
    np.testing.assert_allclose(np.diff(up[1:-1, 0, 0]), np.diff(up[1:-1, 0, 0])[0], atol=1e-6)
    back = resample_volume(up, ramp.shape)
    np.testing.assert_allclose(back[1:-1], ramp[1:-1], atol=1e-5)  # linear data survives
    two = np.stack([ramp, 1 - ramp], axis=-1)
    both = resample_volume(two, (10, 6, 5))
    assert both.shape == (10, 6, 5, 2)
    np.testing.assert_allclose(both[..., 0] + both[..., 1], 1.0, atol=1e-6)  # channels not mixed
    np.testing.assert_array_equal(resample_volume(ramp, ramp.shape), ramp)


def test_training_geometry_is_the_median_voxel_size_and_the_flair_orientation(tmp_path):
    root = write_isbi(tmp_path / "d", patients=3, timepoints=1, affine=np.diag([-1, 1, 2.0, 1]))
    scans = discover_scans(root)
    first = scans[0].images["flair"]
    img = nib.load(first)
    nib.save(nib.Nifti1Image(img.get_fdata(), np.diag([-0.5, 1, 2.0, 1])), first)
    geometry = training_geometry(scans)
    assert geometry.voxel_size_mm == (1.0, 1.0, 2.0) and geometry.orientation == "LAS"
    base = {"modalities": ["flair"], "depth": 2}
    record = parse_run_record({**base, **geometry.to_dict()}, "run/config.json")
    assert run_geometry(record) == geometry
    assert run_geometry(parse_run_record(base, "run/config.json")) is None
    with pytest.raises(DataError, match="run/config.json: invalid `voxel_size_mm`"):
        parse_run_record({**base, "voxel_size_mm": [1, 0, 1]}, "run/config.json")


def _half_voxel_copy(src_root, dst_root):
    """The same scans on a grid of half the voxel size (0.5 mm), trilinear, same field of view."""
    for src in src_root.rglob("*.nii.gz"):
        img = nib.load(src)
        data = img.get_fdata(dtype=np.float32)
        up = resample_volume(data, tuple(2 * s for s in data.shape))
        if "masks" in src.parts:
            up = (up > 0.5).astype(np.uint8)
        affine = img.affine.copy()
        affine[:3, :3] *= 0.5
        dst = dst_root / src.relative_to(src_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(up, affine), dst)
    return dst_root


def _trained_at_1mm(run):
    make_run(run)
    record = json.loads((run / "config.json").read_text())
    record["config"].update(voxel_size_mm=[1.0, 1.0, 1.0], orientation="RAS")
    write_json(record, run / "config.json")
    return run


def test_predict_warns_on_half_voxel_size_and_resample_keeps_the_input_grid(tmp_path):
    one_mm = write_isbi(tmp_path / "one", patients=1, timepoints=1)
    half = _half_voxel_copy(one_mm, tmp_path / "half")
    run = _trained_at_1mm(tmp_path / "run")

    plain = run_cli("predict", run, half, "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    assert "training01_01: voxel size 0.5x0.5x0.5 mm differs by more than 20%" in plain.stderr
    assert "pass --resample" in plain.stderr
    geometry = json.loads((tmp_path / "plain" / "config.json").read_text())["config"]["geometry"]
    assert geometry["voxel_size_differs"] == {"training01_01": [0.5, 0.5, 0.5]}
    assert geometry["training_voxel_size_mm"] == [1.0, 1.0, 1.0] and not geometry["resample"]

    resampled = run_cli("predict", run, half, "--out", tmp_path / "resampled", "--resample")
    assert resampled.exit_code == 0, resampled.output
    assert "resampling it for the model (--resample)" in resampled.stderr
    flair = nib.load(half / "training01" / "preprocessed" / "training01_01_flair_pp.nii.gz")
    for suffix in ("_prob.nii.gz", "_seg.nii.gz"):
        out = nib.load(tmp_path / "resampled" / f"training01_01{suffix}")
        assert out.shape == flair.shape
        np.testing.assert_array_equal(out.affine, flair.affine)
    config = json.loads((tmp_path / "resampled" / "config.json").read_text())["config"]
    assert config["geometry"]["resample"] is True
    prob = nib.load(tmp_path / "resampled" / "training01_01_prob.nii.gz").get_fdata()
    direct = nib.load(tmp_path / "plain" / "training01_01_prob.nii.gz").get_fdata()
    assert 0 <= prob.min() and prob.max() <= 1
    assert np.abs(prob - direct).max() > 1e-3  # the model did see another grid
    seg = np.asarray(nib.load(tmp_path / "resampled" / "training01_01_seg.nii.gz").dataobj)
    assert seg.any()

    same = run_cli("predict", run, one_mm, "--out", tmp_path / "same")
    assert same.exit_code == 0 and "differs by more than" not in same.stderr


def test_resample_needs_a_run_that_records_its_voxel_size(tmp_path):
    data = write_isbi(tmp_path / "d", patients=1, timepoints=1)
    run = make_run(tmp_path / "old_run")
    result = run_cli("predict", run, data, "--out", tmp_path / "p", "--resample")
    assert result.exit_code != 0
    assert "Error: Invalid value for `--resample`" in result.stderr
    assert "records no training voxel size" in result.stderr
    assert not (tmp_path / "p").exists()


def test_calibrate_warns_and_resamples_too(tmp_path):
    one_mm = write_isbi(tmp_path / "one", patients=1, timepoints=1)
    half = _half_voxel_copy(one_mm, tmp_path / "half")
    run = _trained_at_1mm(tmp_path / "run")
    result = run_cli("calibrate", run, half, "--threshold-step", 0.1, "--resample")
    assert result.exit_code == 0, result.output
    assert "differs by more than 20%" in result.stderr
    record = json.loads((run / "calibration.json").read_text())
    assert record["geometry"]["resample"] is True
    assert record["geometry"]["voxel_size_differs"] == {"training01_01": [0.5, 0.5, 0.5]}
