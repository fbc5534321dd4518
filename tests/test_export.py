"""Models that travel: plain-Keras loading, `mssoft export`, and predict from an export folder."""

import json
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

TINY = ["--base-filters", "4", "--depth", "2", "--batch-size", "4"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A calibrated 1-epoch run on scans whose slices (22 x 27) are not multiples of 4."""
    base = tmp_path_factory.mktemp("export")
    data = write_isbi(base / "data", shape=(22, 27, 10))
    result = run(
        "fit", data, "--out", base / "run", "--epochs", 1, "--modalities", "flair,t2", *TINY
    )
    assert result.exit_code == 0, result.output
    result = run("calibrate", base / "run", data)
    assert result.exit_code == 0, result.output
    return base, data, base / "run"


def test_run_records_the_input_multiple_and_pads_training_slices(trained):
    _, _, run_dir = trained
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["input_multiple"] == 4 and config["slice_shape"] == [22, 27]


PLAIN_KERAS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    model = keras.saving.load_model(sys.argv[1])  # the inference model: no compile=False needed
    y = model.predict(np.zeros((2, 24, 28, 2), "float32"), verbose=0)
    assert "mssoft" not in sys.modules, "mssoft was imported"
    print("SHAPE", y.shape, y.dtype, float(y.min()) >= 0.0, float(y.max()) <= 1.0)
    """
)

@pytest.mark.slow
def test_model_loads_with_plain_keras_in_a_process_without_mssoft(trained):
    _, _, run_dir = trained
    for code, expected in [(PLAIN_KERAS, "SHAPE (2, 24, 28, 1) float32 True True")]:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(run_dir / "model.keras")],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert expected in proc.stdout


@pytest.fixture(scope="module")
def exported(trained):
    base, data, run_dir = trained
    result = run("export", run_dir, "--out", base / "exp")
    assert result.exit_code == 0, result.output
    return base / "exp"


def test_export_writes_the_saved_model_and_its_description(trained, exported):
    _, _, run_dir = trained
    assert (exported / "1" / "saved_model.pb").is_file()
    info = json.loads((exported / "mssoft.json").read_text())
    calibration = json.loads((run_dir / "calibration.json").read_text())
    assert info["format"] == "mssoft-export" and info["saved_model"] == "1"
    assert info["modalities"] == ["flair", "t2"]
    assert info["normalisation"]["method"] == "zscore"
    assert info["input_multiple"] == 4
    b = info["binarisation"]
    assert (b["threshold"], b["min_size"], b["connectivity"], b["source"]) == (
        calibration["threshold"],
        calibration["min_size"],
        calibration["connectivity"],
        "calibration",
    )
    assert set(info["training"]) >= {"voxel_size_mm", "orientation", "rater", "train_scans"}
    assert info["signature"]["input"]["name"] == "slices"
    inputs = info["inputs"]
    assert inputs["skull_stripped"] is True and inputs["co_registered"] is True
    assert inputs["voxel_size_mm"] == info["training"]["voxel_size_mm"] == [1.0, 1.0, 1.0]
    assert inputs["voxel_size_tolerance"] == 0.2 and "20 %" in inputs["voxel_size_rule"]
    assert inputs["orientation"] == info["training"]["orientation"]
    assert "trilinear" in inputs["resampling"]
    assert info["versions"]["tensorflow"] and info["run_config"]["command"] == "fit"
    # the export folder is an output folder of its own: not again without --overwrite
    again = run("export", run_dir, "--out", exported)
    assert again.exit_code != 0 and "--overwrite" in again.output
    into_run = run("export", run_dir, "--out", run_dir)
    assert into_run.exit_code != 0 and "Error:" in into_run.output


def test_predict_from_an_export_folder_gives_the_run_outputs(trained, exported):
    base, data, run_dir = trained
    for source, out in [(run_dir, base / "pred_run"), (exported, base / "pred_exp")]:
        result = run("predict", source, data, "--out", out, "--scans", "training01_01")
        assert result.exit_code == 0, result.output
        assert "threshold_source=calibration" in result.output
        assert (out / "lesions.csv").is_file() and (out / "scans.csv").is_file()
    for suffix in ("_prob.nii.gz", "_seg.nii.gz"):
        a = nib.load(base / "pred_run" / f"training01_01{suffix}").get_fdata()
        b = nib.load(base / "pred_exp" / f"training01_01{suffix}").get_fdata()
        assert a.shape == (22, 27, 10)
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


PLAIN_TENSORFLOW = textwrap.dedent(
    """
    import json, sys
    import nibabel as nib
    import numpy as np
    import tensorflow as tf

    export, scan_files = sys.argv[1], sys.argv[2:]
    info = json.load(open(export + "/mssoft.json"))
    model = tf.saved_model.load(export + "/" + info["saved_model"])
    serve = model.signatures["serving_default"]
    channels = []
    for path in scan_files:  # in the order of info["modalities"]
        x = np.asarray(nib.as_closest_canonical(nib.load(path)).dataobj, dtype=np.float64)
        inside = (x != 0) & np.isfinite(x)
        z = np.zeros(x.shape, np.float32)
        z[inside] = (x[inside] - x[inside].mean()) / (x[inside].std() or 1.0)
        channels.append(z)
    volume = np.stack(channels, axis=-1)  # (X, Y, Z, C) in RAS+
    slices = np.moveaxis(volume, 2, 0)  # axial slices (Z, X, Y, C)
    prob = serve(slices=tf.constant(slices))["probabilities"].numpy()[..., 0]
    np.save(export + "/../plain_tf_prob.npy", np.moveaxis(prob, 0, 2))  # back to (X, Y, Z)
    assert "mssoft" not in sys.modules, "mssoft was imported"
    print("OK", prob.shape)
    """
)


@pytest.mark.slow
def test_saved_model_runs_in_plain_tensorflow_like_mssoft_predict(trained, exported):
    base, data, _ = trained
    files = [
        data / "training01" / "preprocessed" / f"training01_01_{name}_pp.nii.gz"
        for name in ("flair", "t2")
    ]
    if not (base / "pred_run").exists():
        result = run(
            "predict", exported, data, "--out", base / "pred_run", "--scans", "training01_01"
        )
        assert result.exit_code == 0, result.output
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_TENSORFLOW, str(exported), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK (10, 22, 27)" in proc.stdout
    plain = np.load(base / "plain_tf_prob.npy")
    mssoft_prob = nib.load(base / "pred_run" / "training01_01_prob.nii.gz").get_fdata()
    np.testing.assert_allclose(plain, mssoft_prob, atol=1e-5, rtol=0)


def test_export_help_and_errors_without_tensorflow(tmp_path):
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom mssoft.cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['export', '--help'])\n"
        "assert r.exit_code == 0 and 'SavedModel' in r.output, r.output\n"
        f"r = CliRunner().invoke(cli, ['export', {str(tmp_path)!r}, '--out', 'x'])\n"
        "assert r.exit_code != 0 and r.output.startswith('Error: '), r.output\n"
        "print(r.output.strip().count(chr(10)), 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 False"


def test_predict_refuses_a_broken_export_folder(tmp_path, isbi_root):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "mssoft.json").write_text(
        json.dumps({"format": "mssoft-export", "format_version": 1})
    )
    result = run("predict", folder, isbi_root, "--out", tmp_path / "pred")
    assert result.exit_code != 0
    assert result.output.startswith("Error: ") and "saved_model.pb" in result.output
    assert not (tmp_path / "pred").exists()
