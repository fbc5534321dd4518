import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.arrays.intensity import zscore_brain
from mssoft.arrays.postprocess import postprocess
from mssoft.errors import DataError
from mssoft.files.atomic import write_json
from mssoft.files.folders import write_config
from mssoft.files.run_folder import read_run, resolve_binarisation
from mssoft.files.scans import discover_scans, load_scan

ISBI_MODALITIES = ("flair", "t1", "t2", "pd")


def stand_in_model(channels, *, weight=2.0, bias=-3.0, filters=1):
    """A 1x1 convolution with sigmoid: prob = sigmoid(weight * z_flair + bias) at every voxel."""
    import keras

    model = keras.Sequential(
        [keras.Input((None, None, channels)), keras.layers.Conv2D(filters, 1, activation="sigmoid")]
    )
    kernel = np.zeros((1, 1, channels, filters), np.float32)
    kernel[0, 0, 0, :] = weight
    model.layers[0].set_weights([kernel, np.full(filters, bias, np.float32)])
    return model


def make_run(run, *, modalities=ISBI_MODALITIES, rater=1, train_scans=None, **model_args):
    """A fake `mssoft fit` run folder: model.keras (stand-in model) and config.json."""
    run.mkdir(parents=True)
    stand_in_model(len(modalities), **model_args).save(run / "model.keras")
    config = {"modalities": list(modalities), "rater": rater}
    if train_scans is not None:
        config["train_scans"] = list(train_scans)
    write_config(run, "fit", config)
    return run


def expected_prob(image, weight=2.0, bias=-3.0):
    z = zscore_brain(image)[..., 0].astype(np.float64)
    return 1.0 / (1.0 + np.exp(-(weight * z + bias)))


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_predict_volume_normalises_like_training_and_ignores_batch_size(isbi_root):
    from mssoft.nn.inference import predict_volume

    image = load_scan(discover_scans(isbi_root)[0]).image  # (24, 28, 20, 4) raw
    model = stand_in_model(4)
    probs = [predict_volume(model, image, batch_size=b) for b in (1, 7, 64)]
    assert probs[0].shape == (24, 28, 20) and probs[0].dtype == np.float32
    np.testing.assert_allclose(probs[0], expected_prob(image), atol=1e-6)
    np.testing.assert_array_equal(probs[0], probs[1])
    np.testing.assert_array_equal(probs[0], probs[2])
    with pytest.raises(ValueError, match=r"model output has shape \(7, 24, 28, 2\)"):
        predict_volume(stand_in_model(4, filters=2), image, batch_size=7)
    with pytest.raises(ValueError, match=r"\(X, Y, Z, C\)"):
        predict_volume(model, image[..., 0])


class CountingModel:
    """A model that counts the slices and batch shapes it is given."""

    def __init__(self, model):
        self.model, self.slices, self.shapes = model, 0, set()
        self.input_multiple = 4

    def predict_on_batch(self, batch):
        self.slices += len(batch)
        self.shapes.add(batch.shape)
        return self.model.predict_on_batch(batch)


def test_slices_without_brain_are_predicted_once(isbi_root):
    """Every all-zero slice gets the probabilities of one of them (a U-Net's are not constant)."""
    from mssoft.arrays.intensity import Normaliser
    from mssoft.arrays.slices import pad_slices, to_axial_slices
    from mssoft.nn.inference import predict_volume
    from mssoft.nn.unet import build_unet

    image = np.array(load_scan(discover_scans(isbi_root)[0]).image)  # (24, 28, 20, 4)
    image[:, :, [0, 1, 2, 9, 19]] = 0  # 5 slices without brain, one inside the volume
    unet = build_unet((None, None, 4), base_filters=2, depth=2)
    rng = np.random.default_rng(0)
    for weight in unet.weights:  # non-zero biases: an empty slice's output varies in the plane
        if "bias" in weight.path:
            weight.assign(rng.normal(0.0, 0.5, weight.shape).astype(np.float32))
    model = CountingModel(unet)
    got = predict_volume(model, image, batch_size=4)
    with_brain = int(image.any(axis=(0, 1, 3)).sum())
    assert with_brain <= 15  # the slices with brain and one empty slice, in full batches of 4:
    assert model.slices == 4 * -(-(with_brain + 1) // 4) and model.shapes == {(4, 24, 28, 4)}
    slices = pad_slices(to_axial_slices(Normaliser().apply(image)), 4)  # (20, 24, 28, 4)
    every = np.asarray(model.model.predict_on_batch(slices))[:, :24, :28, 0]
    np.testing.assert_allclose(got, np.moveaxis(every, 0, -1), atol=1e-6)
    empty = got[:, :, [0, 1, 2, 9, 19]]
    assert np.ptp(empty[:, :, 0]) > 0  # not a constant image: the test sees the copy
    np.testing.assert_array_equal(empty, np.repeat(empty[:, :, :1], 5, axis=2))


def test_predict_writes_outputs_with_default_threshold_and_says_so(tmp_path):
    data = write_isbi(
        tmp_path / "isbi", patients=1, timepoints=1, test_patients=1
    )  # test scans: no masks
    run = make_run(tmp_path / "run")
    out = tmp_path / "pred"
    result = run_cli("predict", run, data, "--out", out)
    assert result.exit_code == 0, result.output
    assert "calibration.json not found; used threshold 0.5 and min_size 18" in result.stdout
    assert "calibration.json not found" in result.stderr  # the log warning
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("total\tscans=2\tthreshold=0.5\tmin_size=18")
    )
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "predict"
    assert (
        config["config"]["threshold"] == 0.5 and config["config"]["threshold_source"] == "default"
    )
    assert config["config"]["lesion_definition"] == "18-connected components of > 18 voxels"
    assert config["config"]["rule"] == "prob >= threshold"
    assert config["config"]["run"] == str(run.resolve())
    for scan in discover_scans(data):
        prob_img = nib.load(out / f"{scan.scan_id}_prob.nii.gz")
        seg_img = nib.load(out / f"{scan.scan_id}_seg.nii.gz")
        assert prob_img.get_data_dtype() == np.float32 and seg_img.get_data_dtype() == np.uint8
        prob = prob_img.get_fdata(dtype=np.float32)
        np.testing.assert_allclose(prob, expected_prob(load_scan(scan).image), atol=1e-6)
        seg = np.asarray(seg_img.dataobj)
        np.testing.assert_array_equal(seg.astype(bool), postprocess(prob, 0.5))
        assert seg.any()
    assert not list(out.glob(".*partial*")), "temporary files left behind"


@pytest.mark.parametrize(
    "codes,affine",
    [
        ("LAS", np.diag([-1.0, 1.0, 1.0, 1.0])),
        ("LPS", np.array([[-1.0, 0, 0, 10], [0, -1.2, 0, 20], [0, 0, 2.0, -5], [0, 0, 0, 1]])),
    ],
)
def test_predict_keeps_the_input_affine_and_orientation(tmp_path, codes, affine):
    ras_root = write_isbi(tmp_path / "ras", patients=1, timepoints=1)
    other_root = tmp_path / codes
    flips = tuple(ax for ax in range(3) if affine[ax, ax] < 0)  # same anatomy, stored flipped
    for src in ras_root.rglob("*.nii.gz"):
        dst = other_root / src.relative_to(ras_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        nib.save(
            nib.Nifti1Image(np.flip(nib.load(src).get_fdata(dtype=np.float32), flips), affine), dst
        )
    run = make_run(tmp_path / "run")
    for root, out in ((ras_root, tmp_path / "out_ras"), (other_root, tmp_path / "out_other")):
        result = run_cli("predict", run, root, "--out", out, "--threshold", 0.4, "--min-size", 5)
        assert result.exit_code == 0, result.output
    for suffix in ("_prob.nii.gz", "_seg.nii.gz"):
        ras = nib.load(tmp_path / "out_ras" / f"training01_01{suffix}")
        other = nib.load(tmp_path / "out_other" / f"training01_01{suffix}")
        assert nib.aff2axcodes(other.affine) == tuple(codes)
        np.testing.assert_allclose(other.affine, affine)
        np.testing.assert_allclose(other.get_fdata(), np.flip(ras.get_fdata(), flips), atol=1e-6)


def test_threshold_precedence_option_then_calibration_then_default(tmp_path):
    run = make_run(tmp_path / "run")
    assert resolve_binarisation(run)[1] == "default"
    write_json({"threshold": 0.37, "min_size": 10, "connectivity": 18}, run / "calibration.json")
    binarisation, source = resolve_binarisation(run)
    assert (binarisation.threshold, binarisation.min_size, source) == (0.37, 10, "calibration")
    binarisation, source = resolve_binarisation(run, threshold=0.6)
    assert (binarisation.threshold, binarisation.min_size, source) == (0.6, 10, "option")
    (run / "calibration.json").write_text("{not json")
    with pytest.raises(DataError, match="calibration.json: not a valid calibration file"):
        resolve_binarisation(run)


def test_run_folder_is_read_defensively(tmp_path):
    run = make_run(tmp_path / "run", modalities=("FLAIR", "mprage"), train_scans=["a", "b"])
    info = read_run(run)
    assert info.modalities == ("flair", "t1") and info.train_scans == ("a", "b") and info.rater == 1
    write_config(
        run, "fit", {"modalities": ["flair"], "rater": 2}, scans={"train": ["x"], "val": ["y"]}
    )
    info = read_run(run)
    assert info.train_scans == ("x",) and info.rater == 2
    write_config(run, "fit", {"rater": 1})
    with pytest.raises(DataError, match="no `modalities`"):
        read_run(run)


def test_predict_refuses_bad_outputs_and_inputs(tmp_path, isbi_root):
    run = make_run(tmp_path / "run")
    result = run_cli("predict", run, isbi_root, "--out", isbi_root / "pred")
    assert result.exit_code == 1 and "inside the input data" in result.stderr
    result = run_cli("predict", run, isbi_root, "--out", run)
    assert result.exit_code == 1 and "Error: Invalid value for `--out`" in result.stderr
    assert not (run / "training01_01_seg.nii.gz").exists()
    result = run_cli("predict", run, isbi_root, "--out", tmp_path / "p", "--threshold", 1.5)
    assert result.exit_code == 1 and "Expected a float in (0, 1]" in result.stderr
    assert not (tmp_path / "p").exists()
    result = run_cli(
        "predict", run, isbi_root, "--out", tmp_path / "p", "--scans", "training01_01,nope"
    )
    assert result.exit_code == 1 and "no scan nope" in result.stderr
    # a model trained on a modality the data lacks
    dwi = make_run(tmp_path / "dwi", modalities=("flair", "dwi"))
    result = run_cli("predict", dwi, isbi_root, "--out", tmp_path / "p")
    assert result.exit_code == 1 and "has no dwi image, which the model of" in result.stderr
    (run / "model.keras").write_bytes(b"not a keras archive")
    result = run_cli("predict", run, isbi_root, "--out", tmp_path / "p")
    assert result.exit_code == 1 and "model.keras: cannot load model" in result.stderr
    (run / "model.keras").unlink()
    result = run_cli("predict", run, isbi_root, "--out", tmp_path / "p")
    assert result.exit_code == 1 and "model.keras: not found" in result.stderr
    assert not (tmp_path / "p").exists()  # no failed command left an output folder behind


def test_predict_on_a_manifest_with_the_run_modalities(tmp_path, manifest):
    run = make_run(tmp_path / "run", modalities=("flair", "t2"))
    result = run_cli("predict", run, manifest, "--out", tmp_path / "pred", "--scans", "s2,s0")
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()[1:3]] == ["s2", "s0"]
    assert sorted(p.name for p in (tmp_path / "pred").glob("*_seg.nii.gz")) == [
        "s0_seg.nii.gz",
        "s2_seg.nii.gz",
    ]


def test_help_of_each_command_without_tensorflow():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom mssoft.cli.main import cli\n"
        "for name in ('calibrate', 'predict', 'evaluate'):\n"
        "    r = CliRunner().invoke(cli, [name, '--help'])\n"
        "    assert r.exit_code == 0, r.output\n"
        "    assert 'Usage: ' in r.output and '[default: ' in r.output, r.output\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_predict_with_mixed_precision_keeps_float32_outputs(tmp_path):
    import keras

    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=2)
    run = make_run(tmp_path / "run")
    # a model with a hidden layer (computed in bfloat16) before its float32 output layer
    channels = len(ISBI_MODALITIES)
    hidden = keras.layers.Conv2D(1, 1)
    model = keras.Sequential(
        [keras.Input((None, None, channels)), hidden, keras.layers.Activation("sigmoid")]
    )
    kernel = np.zeros((1, 1, channels, 1), np.float32)
    kernel[0, 0, 0, 0] = 2.0
    hidden.set_weights([kernel, np.full(1, -3.0, np.float32)])
    model.save(run / "model.keras")
    out = tmp_path / "pred"
    result = run_cli("predict", run, data, "--out", out, "--mixed-precision")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["config"]["mixed_precision"] is True
    for scan in discover_scans(data):
        prob = nib.load(out / f"{scan.scan_id}_prob.nii.gz").get_fdata(dtype=np.float32)
        # bfloat16 keeps 8 bits of mantissa: close to, but not exactly, the float32 result
        want = expected_prob(load_scan(scan).image)
        np.testing.assert_allclose(prob, want, atol=2e-2)
        assert np.abs(prob - want).max() > 1e-5  # computed in bfloat16 indeed


def test_mixed_precision_copy_of_the_unet_has_a_float32_head():
    from mssoft.nn.model_files import with_dtype_policy
    from mssoft.nn.unet import build_unet

    model = build_unet((None, None, 2), base_filters=2, depth=1)
    mixed = with_dtype_policy(model, "mixed_bfloat16")
    assert mixed.get_layer("head").dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in mixed.layers[1:-1]} == {"mixed_bfloat16"}
    x = np.random.default_rng(0).standard_normal((2, 16, 12, 2)).astype(np.float32)
    got = np.asarray(mixed.predict_on_batch(x))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(model.predict_on_batch(x)), atol=3e-2)


def test_one_scan_from_its_files_without_a_manifest(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=1)
    images = data / "training01" / "preprocessed"
    run = make_run(tmp_path / "run", modalities=("flair", "t2"))
    flair, t2 = images / "training01_01_flair_pp.nii.gz", images / "training01_01_t2_pp.nii.gz"
    out = tmp_path / "one"
    result = run_cli("predict", run, "--flair", flair, "--t2", t2, "--out", out)
    assert result.exit_code == 0, result.output
    seg = out / "training01_01_flair_pp_seg.nii.gz"
    assert seg.is_file() and (out / "lesions.csv").is_file() and (out / "qc.md").is_file()
    scan = discover_scans(data)[0]
    expected = postprocess(expected_prob(load_scan(scan, modalities=("flair", "t2")).image), 0.5)
    np.testing.assert_array_equal(np.asarray(nib.load(seg).dataobj).astype(bool), expected)
    missing = run_cli("predict", run, "--flair", flair, "--out", tmp_path / "two")
    assert missing.exit_code != 0 and not (tmp_path / "two").exists()
    assert "Error: Missing option `--t2`: the model of" in missing.output
    same_folder = run_cli("predict", run, "--flair", flair, "--t2", t2, "--out", images)
    assert same_folder.exit_code != 0 and "holds input file" in same_folder.output


def test_nnunet_naming_for_any_input(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=1)
    run = make_run(tmp_path / "run")
    out = tmp_path / "pred"
    result = run_cli("predict", run, data, "--out", out, "--naming", "nnunet", "--no-qc")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [
        "training01_01.nii.gz",
        "training01_01_prob.nii.gz",
    ]
    bids = run_cli("predict", run, data, "--out", tmp_path / "b", "--naming", "bids")
    assert bids.exit_code != 0 and "bids needs a BIDS dataset as DATA" in bids.output


def test_lesion_tables_of_an_ensemble_with_tta(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=2)
    runs = [make_run(tmp_path / f"run{k}") for k in (1, 2)]
    out = tmp_path / "pred"
    result = run_cli("predict", *runs, data, "--out", out, "--tta", "flip", "--threshold", 0.5)
    assert result.exit_code == 0, result.output
    rows = (out / "scans.csv").read_text().splitlines()
    assert len(rows) == 3 and f"{runs[0].resolve()};{runs[1].resolve()}" in rows[1]
    lesions = (out / "lesions.csv").read_text().splitlines()
    assert sum(int(r.split(",")[1]) for r in rows[1:]) == len(lesions) - 1
