"""``mssoft predict`` on BIDS data writes a BIDS derivative dataset that the validator accepts."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from mssoft.cli.main import cli
from test_predict import make_run

from mssoft.errors import ConfigError
from mssoft.files.folders import prepare_output_folder
from mssoft.files.scans import discover_scans
from mssoft.synthetic import write_bids_dataset

SHAPE = (24, 28, 20)
STEM = "sub-01_ses-02_space-orig_label-lesion"


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def derivative(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "ds"
    write_bids_dataset(root, n_subjects=2, sessions=2, shape=SHAPE, modalities=("flair", "t1"))
    run = make_run(tmp_path_factory.mktemp("runs") / "run", modalities=("flair", "t1"))
    out = root / "derivatives" / "mssoft"
    result = run_cli("predict", run, root, "--out", out)
    assert result.exit_code == 0, result.output
    return root, out, run


def test_outputs_are_named_and_described_as_bids_derivatives(derivative):
    root, out, run = derivative
    anat = out / "sub-01" / "ses-02" / "anat"
    prob = nib.load(anat / f"{STEM}_probseg.nii.gz")
    mask = nib.load(anat / f"{STEM}_mask.nii.gz")
    flair = nib.load(root / "sub-01" / "ses-02" / "anat" / "sub-01_ses-02_FLAIR.nii.gz")
    assert prob.get_data_dtype() == np.float32 and mask.get_data_dtype() == np.uint8
    assert np.allclose(mask.affine, flair.affine) and mask.shape == flair.shape
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "mssoft"
    assert str(run.resolve()) in description["GeneratedBy"][0]["Description"]
    assert description["DatasetLinks"] == {"raw": "../.."}
    sidecar = json.loads((anat / f"{STEM}_mask.json").read_text())
    assert sidecar["Type"] == "Lesion" and sidecar["Threshold"] == 0.5
    assert sidecar["Sources"] == [f"bids::sub-01/ses-02/anat/{STEM}_probseg.nii.gz"]
    sources = json.loads((anat / f"{STEM}_probseg.json").read_text())["Sources"]
    assert sources == [
        "bids:raw:sub-01/ses-02/anat/sub-01_ses-02_FLAIR.nii.gz",
        "bids:raw:sub-01/ses-02/anat/sub-01_ses-02_T1w.nii.gz",
    ]
    header = (out / "lesions.tsv").read_text().splitlines()[0].split("\t")
    assert header[:4] == ["scan", "lesion", "voxels", "volume_ml"]
    assert len((out / "scans.tsv").read_text().splitlines()) == 5  # header + 4 scans
    assert json.loads((out / "lesions.json").read_text())["volume_ml"]["Units"] == "mL"


def test_the_raw_dataset_still_reads_with_its_own_masks_only(derivative):
    root, _, _ = derivative
    scans = discover_scans(root)
    assert all("derivatives/manual" in str(s.masks[1]) for s in scans)


def test_other_places_inside_bids_data_stay_refused(derivative, tmp_path):
    root, _, _ = derivative
    for inside in (root / "sub-01", root / "derivatives", root / "code" / "out"):
        with pytest.raises(ConfigError, match="inside the input data"):
            prepare_output_folder(inside, command="predict", data=root)
    isbi_like = tmp_path / "plain"
    (isbi_like / "derivatives").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside the input data"):
        prepare_output_folder(isbi_like / "derivatives" / "x", command="predict", data=isbi_like)


# the official BIDS validator, a binary shipped by the bids-validator-deno package (test extra)
_BESIDE_PYTHON = Path(sys.executable).parent / "bids-validator-deno"
VALIDATOR = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.is_file() else shutil.which("bids-validator-deno")


@pytest.mark.skipif(VALIDATOR is None, reason="bids-validator-deno (test extra) not installed")
def test_the_official_validator_accepts_the_derivative_dataset(derivative):
    _, out, _ = derivative
    proc = subprocess.run(
        [VALIDATOR, "--format", "json", str(out)], capture_output=True, text=True, timeout=300
    )
    report = json.loads(proc.stdout)
    issues = report["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert errors == [], errors
    assert sorted(report["summary"]["subjects"]) == ["01", "02"]  # it read the subjects' files
    assert sorted(report["summary"]["sessions"]) == ["01", "02"]
