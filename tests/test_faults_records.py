"""Fault injection: hostile run records, models that disagree with them, and hostile inputs.

A run folder's ``config.json`` edited by hand or by an attacker, a ``model.keras`` swapped for
another, a ``--depth`` too deep for the slices, absurd intensities, masks stored as 0/255 or with
a NaN: each command answers with one ``Error:`` line naming the file (or option) and field, and
writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import write_isbi
from test_faults import assert_one_error_line, run

from mssoft.files.folders import write_config

SCAN = "training01_01"


def stand_in_run(run_dir: Path, *, channels: int = 4, pools: int = 0, **config) -> Path:
    """A run folder: a tiny model (``pools`` max-poolings) and its config.json."""
    import keras

    run_dir.mkdir(parents=True)
    inputs = keras.Input((None, None, channels))
    x = inputs
    for _ in range(pools):
        x = keras.layers.MaxPooling2D(2)(x)
    for _ in range(pools):
        x = keras.layers.UpSampling2D(2)(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    keras.Model(inputs, outputs).save(run_dir / "model.keras")
    record = {"modalities": ["flair", "t1", "t2", "pd"], "rater": 1, **config}
    write_config(run_dir, "fit", record)
    return run_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_isbi(tmp_path_factory.mktemp("isbi") / "d", patients=1, timepoints=1)


HOSTILE = [
    ({"input_multiple": 0}, "input_multiple"),
    ({"input_multiple": 1e308 * 10}, "non-finite"),  # written as Infinity
    ({"input_multiple": 12}, "input_multiple"),
    ({"depth": 10**30}, "depth"),
    ({"depth": "4"}, "depth"),
    ({"rater": "one"}, "rater"),
    ({"modalities": {"flair": 1}}, "modalities"),
    ({"normalise": ["zscore"]}, "normalise"),
    ({"normalise": {"method": "magic"}}, "normalise.method"),
    ({"normalise": {"method": "histogram", "landmarks_file": "../../etc/x"}}, "landmarks_file"),
    ({"voxel_size_mm": [1, "a", 1]}, "voxel_size_mm"),
    ({"base_filters": -1}, "base_filters"),
]


@pytest.mark.parametrize("fields,needle", HOSTILE)
def test_hostile_run_record_fields_are_one_error_line_in_predict_and_calibrate(
    tmp_path, data, fields, needle
):
    folder = stand_in_run(tmp_path / "run", **fields)
    config = folder / "config.json"
    result = run("predict", folder, data, "--out", tmp_path / "pred")
    assert_one_error_line(result, config, needle)
    assert not (tmp_path / "pred").exists()
    result = run("calibrate", folder, data, "--out", tmp_path / "cal")
    assert_one_error_line(result, config, needle)


def test_deeply_nested_huge_and_non_object_records_are_one_error_line(tmp_path, data):
    folder = stand_in_run(tmp_path / "run")
    config = folder / "config.json"
    record = json.loads(config.read_text())
    cases = {
        "nested": json.dumps({**record, "config": {**record["config"], "x": 0}}).replace(
            '"x": 0', '"x": ' + "[" * 5000 + "]" * 5000
        ),
        "shallow nesting": json.dumps(
            {**record, "config": {**record["config"], "x": json.loads("[" * 40 + "]" * 40)}}
        ),
        "huge integer": json.dumps(record).replace('"rater": 1', '"rater": 1' + "0" * 5000),
        "not an object": "[1, 2]",
    }
    for name, text in cases.items():
        config.write_text(text)
        for command in ("predict", "calibrate"):
            result = run(command, folder, data, "--out", tmp_path / f"o_{command}")
            assert_one_error_line(result, config)
        assert not (tmp_path / "o_predict").exists(), name


def test_export_refuses_a_hostile_record_instead_of_copying_it(tmp_path):
    folder = stand_in_run(tmp_path / "run", input_multiple=0)
    result = run("export", folder, "--out", tmp_path / "export")
    assert_one_error_line(result, folder / "config.json", "input_multiple")
    assert not (tmp_path / "export" / "mssoft.json").exists()


@pytest.mark.parametrize(
    "model,record,needle",
    [
        ({"channels": 2}, {}, "input channels"),
        ({"pools": 1}, {"depth": 2, "input_multiple": 4}, "depth 1"),
        ({"pools": 2}, {"input_multiple": 2}, "multiples of 4"),
    ],
)
def test_a_model_that_disagrees_with_its_record_is_refused_by_name(
    tmp_path, data, model, record, needle
):
    folder = stand_in_run(tmp_path / "run", **model, **record)
    for args in (
        ("predict", folder, data, "--out", tmp_path / "pred"),
        ("calibrate", folder, data, "--out", tmp_path / "cal"),
        ("export", folder, "--out", tmp_path / "export"),
    ):
        result = run(*args)
        assert_one_error_line(result, folder / "model.keras", "does not match", needle)
    assert not (tmp_path / "pred").exists()


def test_records_of_earlier_versions_keep_loading(tmp_path, data):
    folder = stand_in_run(tmp_path / "run")  # no depth, input_multiple, normalise or rater
    record = json.loads((folder / "config.json").read_text())
    del record["config"]["rater"]
    (folder / "config.json").write_text(json.dumps(record))
    result = run("predict", folder, data, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / f"{SCAN}_seg.nii.gz").is_file()


# --- guards on the inputs -----------------------------------------------------------------------


def test_a_depth_too_large_for_the_slices_is_refused_with_the_largest_that_fits(tmp_path, data):
    result = run("fit", data, "--out", tmp_path / "run", "--depth", "10", "--epochs", "1")
    error = assert_one_error_line(result, "--depth", "10")
    assert "largest" in error
    assert not (tmp_path / "run" / "model.keras").exists()


def _flair(root: Path) -> Path:
    return next(root.rglob(f"{SCAN}_flair_pp.nii.gz"))


def _mask(root: Path) -> Path:
    return next(root.rglob(f"{SCAN}_mask1.nii.gz"))


@pytest.mark.parametrize("value", [1e300, np.inf, -1e31])
def test_absurd_or_non_finite_intensities_name_the_file(tmp_path, value):
    root = write_isbi(tmp_path / "d", patients=1, timepoints=1)
    path = _flair(root)
    image = nib.load(path)
    array = np.asarray(image.dataobj, dtype=np.float64)
    array[array.shape[0] // 2, array.shape[1] // 2, array.shape[2] // 2] = value
    header = image.header.copy()
    header.set_data_dtype(np.float64)
    nib.save(nib.Nifti1Image(array, image.affine, header), path)
    result = run("build-masks", root, "--out", tmp_path / "masks")
    assert_one_error_line(result, path, "intensit")


def test_a_mask_stored_as_0_255_is_read_as_binary(tmp_path, caplog):
    root = write_isbi(tmp_path / "d", patients=1, timepoints=1)
    path = _mask(root)
    image = nib.load(path)
    array = (np.asarray(image.dataobj) > 0).astype(np.uint8) * 255
    nib.save(nib.Nifti1Image(array, image.affine), path)
    from mssoft.files.scans import read_mask

    with caplog.at_level("INFO"):
        mask = read_mask(path)
    assert mask.dtype == bool and mask.sum() == (array > 0).sum()
    assert any("255" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_a_nan_in_a_mask_is_an_error_naming_the_file(tmp_path):
    root = write_isbi(tmp_path / "d", patients=1, timepoints=1)
    path = _mask(root)
    image = nib.load(path)
    array = np.asarray(image.dataobj, dtype=np.float32)
    array[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(array, image.affine), path)
    result = run("build-masks", root, "--out", tmp_path / "masks")
    assert_one_error_line(result, path, "NaN")
