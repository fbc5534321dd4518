"""nnU-Net v2 raw datasets as DATA: discovery, label maps, errors, and the CLI end to end."""

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from mssoft.cli.main import cli
from test_predict import make_run

from mssoft.errors import DataError
from mssoft.files.scan_files import LabelMap
from mssoft.files.scans import binary_mask, discover_scans, load_scan
from mssoft.synthetic import make_scan, write_nnunet_dataset

SHAPE = (32, 40, 24)


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    """Two training cases (lesion = 3, rater-2-only voxels = 2) and one test case."""
    root = tmp_path_factory.mktemp("nnunet") / "Dataset001_MS"
    write_nnunet_dataset(root, n_train=2, n_test=1, shape=SHAPE, lesion_label=3, other_label=2)
    return root


def test_discovered_like_isbi_with_case_ids_and_channel_order(multi_label):
    scans = discover_scans(multi_label)
    assert [s.scan_id for s in scans] == ["case001", "case002", "test001"]
    assert [s.patient_id for s in scans] == ["case001", "case002", "test001"]
    assert list(scans[0].images) == ["flair", "t1", "t2"]
    assert scans[0].images["t2"].name == "case001_0002.nii.gz"
    assert scans[0].masks == {1: multi_label / "labelsTr" / "case001.nii.gz"}
    assert scans[2].masks == {} and scans[2].images["flair"].parent.name == "imagesTs"


def test_label_maps_become_binary_masks(multi_label):
    scan = discover_scans(multi_label)[0]
    labels = np.asarray(nib.as_closest_canonical(nib.load(scan.masks[1])).dataobj)
    assert set(np.unique(labels)) == {0, 2, 3}  # a real multi-label file
    every = load_scan(scan, rater=1).mask
    np.testing.assert_array_equal(every, labels > 0)  # default: every label above 0
    picked = load_scan(discover_scans(multi_label, label="lesion")[0], rater=1).mask
    np.testing.assert_array_equal(picked, labels == 3)
    by_value = load_scan(discover_scans(multi_label, label=2)[0], rater=1).mask
    np.testing.assert_array_equal(by_value, labels == 2)
    # the synthetic rater 1 of the same seed is exactly the picked lesion label
    truth = make_scan(SHAPE, seed=(0, 1), modalities=["flair", "t1", "t2"]).masks[1]
    np.testing.assert_array_equal(picked, truth)
    with pytest.raises(DataError, match="no label 'edema' in `labels`"):
        discover_scans(multi_label, label="edema")


def test_label_map_values_are_checked():
    coding = LabelMap(foreground=(2,), known=(0, 1, 2), source="dataset.json")
    array = np.array([[[0.0, 1.0, 2.0, 0.0]]])
    np.testing.assert_array_equal(binary_mask(array, "m.nii.gz", coding), [[[0, 0, 1, 0]]])
    with pytest.raises(DataError, match=r"m.nii.gz: mask holds 1 NaN"):  # NaN: an error
        binary_mask(np.array([[[0.0, 2.0, np.nan]]]), "m.nii.gz", coding)
    with pytest.raises(DataError, match=r"m.nii.gz: label map holds values 5 .*dataset.json"):
        binary_mask(np.array([[[0.0, 5.0]]]), "m.nii.gz", coding)
    with pytest.raises(DataError, match=r"values 1.5"):
        binary_mask(np.array([[[0.0, 1.5]]]), "m.nii.gz", coding)
    with pytest.raises(DataError, match="mask is not binary"):  # no coding: binary files only
        binary_mask(np.array([[[0.0, 1.0, 2.0]]]), "m.nii.gz")
    np.testing.assert_array_equal(binary_mask(np.array([[[0.0, 2.0]]]), "m.nii.gz"), [[[0, 1]]])


def _edit_dataset_json(root, **changes):
    path = root / "dataset.json"
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    "changes,message",
    [
        (
            {"channel_names": {"0": "FLAIR", "1": "CT", "2": "T2"}},
            r"dataset.json: channel 1 name 'CT' is not a modality mssoft knows",
        ),
        ({"channel_names": {"0": "T1", "1": "T2", "2": "PD"}}, r"dataset.json: no FLAIR channel"),
        ({"channel_names": {"0": "flair", "1": "t1w"}}, r"case001_0002.nii.gz: channel 2 is not"),
        ({"labels": {"background": 0, "lesion": "one"}}, r"dataset.json: label 'lesion' has"),
        ({"file_ending": ".mha"}, r"dataset.json: file_ending '.mha': mssoft reads NIfTI only"),
    ],
)
def test_bad_dataset_json_is_one_clear_line(tmp_path, changes, message):
    root = tmp_path / "ds"
    write_nnunet_dataset(root, n_train=1, shape=(16, 16, 16))
    _edit_dataset_json(root, **changes)
    with pytest.raises(DataError, match=message):
        discover_scans(root)
    result = run_cli("build-masks", root, "--out", tmp_path / "masks")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ") and message.split(":")[0] in result.stderr


def test_case_missing_a_channel_and_orphan_labels(tmp_path):
    root = tmp_path / "ds"
    write_nnunet_dataset(root, n_train=2, shape=(16, 16, 16))
    (root / "imagesTr" / "case002_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"imagesTr: case case002 has no .nii.gz file for .*T1"):
        discover_scans(root)
    for f in (root / "imagesTr").glob("case002_*"):
        f.unlink()
    with pytest.raises(DataError, match=r"labelsTr/case002.nii.gz: label file without images"):
        discover_scans(root)


@pytest.mark.slow
def test_build_masks_fit_predict_read_an_nnunet_dataset_unchanged(tmp_path):
    data = tmp_path / "Dataset002_Synthetic"
    write_nnunet_dataset(data, n_train=3, n_test=1, shape=SHAPE, lesion_label=2, other_label=1)
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    masks, run, pred = tmp_path / "masks", tmp_path / "run", tmp_path / "pred"
    result = run_cli("build-masks", data, "--out", masks)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in masks.glob("*_softmask.nii.gz")) == [
        f"case00{k}_softmask.nii.gz" for k in (1, 2, 3)
    ]
    tiny = ["--epochs", 1, "--base-filters", 4, "--depth", 2, "--batch-size", 4]
    result = run_cli("fit", data, "--masks", masks, "--out", run, *tiny)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["modalities"] == ["flair", "t1", "t2"]
    assert config["voxel_size_mm"] == [1.0, 1.0, 1.0] and config["orientation"] == "LAS"
    result = run_cli("predict", run, data, "--out", pred)
    assert result.exit_code == 0, result.output
    for case in ("case001", "case002", "case003", "test001"):
        seg = nib.load(pred / f"{case}.nii.gz")  # nnU-Net's naming
        folder = "imagesTs" if case.startswith("test") else "imagesTr"
        flair = nib.load(data / folder / f"{case}_0000.nii.gz")
        assert seg.shape == flair.shape and np.allclose(seg.affine, flair.affine)
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before  # inputs untouched


def test_writer_never_overwrites_a_dataset(tmp_path):
    root = tmp_path / "ds"
    write_nnunet_dataset(root, n_train=1, shape=(16, 16, 16))
    with pytest.raises(DataError, match="dataset.json: exists"):
        write_nnunet_dataset(root, n_train=1, shape=(16, 16, 16))
    (root / "dataset.json").unlink()
    with pytest.raises(DataError, match="imagesTr/case001_0000.nii.gz: exists"):
        write_nnunet_dataset(root, n_train=1, shape=(16, 16, 16))


def test_predictions_use_nnunet_names_and_evaluate_scores_them(tmp_path):
    data = tmp_path / "Dataset003_MS"
    write_nnunet_dataset(data, n_train=2, n_test=1, shape=SHAPE, modalities=("flair", "t1"))
    run = make_run(tmp_path / "run", modalities=("flair", "t1"))
    pred = tmp_path / "pred"
    result = run_cli("predict", run, data, "--out", pred, "--no-qc")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pred.glob("*.nii.gz")) == [
        "case001.nii.gz",
        "case001_prob.nii.gz",
        "case002.nii.gz",
        "case002_prob.nii.gz",
        "test001.nii.gz",
        "test001_prob.nii.gz",
    ]
    result = run_cli("evaluate", pred, data, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    metrics = (tmp_path / "eval" / "metrics.csv").read_text()
    assert "case001" in metrics and "case002" in metrics
    # nnU-Net's own output folder: <case>.nii.gz only, no config.json
    bare = tmp_path / "nnunet_out"
    bare.mkdir()
    for case in ("case001", "case002"):
        (bare / f"{case}.nii.gz").write_bytes((pred / f"{case}.nii.gz").read_bytes())
    result = run_cli("evaluate", bare, data, "--out", tmp_path / "eval2")
    assert result.exit_code == 0, result.output


def test_a_bare_images_folder_is_data_with_the_run_channels(tmp_path):
    data = tmp_path / "Dataset004_MS"
    write_nnunet_dataset(data, n_train=0, n_test=2, shape=SHAPE, modalities=("flair", "t2"))
    images_ts = data / "imagesTs"
    run = make_run(tmp_path / "run", modalities=("flair", "t2"))
    result = run_cli("predict", run, images_ts, "--out", tmp_path / "pred", "--naming", "nnunet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / "test001.nii.gz").is_file()
    assert (tmp_path / "pred" / "test002.nii.gz").is_file()
    three = make_run(tmp_path / "run3", modalities=("flair", "t1", "t2"))
    result = run_cli("predict", three, images_ts, "--out", tmp_path / "pred3")
    assert result.exit_code == 1
    assert "case test001 has no .nii.gz file for channel(s) 0002 (T2)" in result.stderr
