import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.arrays.soft_masks import dilation_region


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_build_masks_on_isbi_layout(tmp_path, isbi_root):
    out = tmp_path / "soft"
    result = run(
        "build-masks",
        isbi_root,
        "--out",
        out,
        "--ratio",
        1.2,
        "--gamma",
        0.3,
        "--flair-threshold",
        "none",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and lines[-1].startswith("total\tscans=4")
    assert "training01_01\tlesion_voxels=" in lines[0]
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "build-masks"
    assert config["config"] == {
        "rater": 1,
        "ratio": 1.2,
        "gamma": 0.3,
        "flair_threshold": None,
        "per_lesion": False,
    }
    assert config["versions"]["nibabel"]
    for scan in ("training01_01", "training01_02", "training02_01", "training02_02"):
        img = nib.load(out / f"{scan}_softmask.nii.gz")
        mask = nib.load(isbi_root / scan[:10] / "masks" / f"{scan}_mask1.nii.gz").get_fdata() > 0
        soft = img.get_fdata(dtype=np.float32)
        assert img.get_data_dtype() == np.float32
        np.testing.assert_array_equal(soft == 1, mask)
        assert (soft == np.float32(0.3)).sum() == round(0.2 * mask.sum())
    assert not list(out.glob(".*partial*")), "temporary files left behind"


@pytest.mark.parametrize(
    "codes,affine",
    [
        ("LAS", np.diag([-1.0, 1.0, 1.0, 1.0])),
        ("LPS", np.array([[-1.0, 0, 0, 10], [0, -1.2, 0, 20], [0, 0, 2.0, -5], [0, 0, 0, 1]])),
    ],
)
def test_output_keeps_input_orientation_and_equals_ras_computation(tmp_path, codes, affine):
    ras_root = write_isbi(tmp_path / "ras", patients=1, timepoints=1)
    other_root = tmp_path / codes
    # the same anatomy stored in another orientation: flip the array axes that the affine flips
    flips = tuple(ax for ax in range(3) if affine[ax, ax] < 0)
    for src in ras_root.rglob("*.nii.gz"):
        data = nib.load(src).get_fdata(dtype=np.float32)
        dst = other_root / src.relative_to(ras_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.flip(data, flips), affine), dst)
    out = tmp_path / f"out_{codes}"
    result = run("build-masks", other_root, "--out", out, "--flair-threshold", "p50")
    assert result.exit_code == 0, result.output
    img = nib.load(out / "training01_01_softmask.nii.gz")
    assert nib.aff2axcodes(img.affine) == tuple(codes)
    np.testing.assert_allclose(img.affine, affine)
    mask_file = nib.load(other_root / "training01" / "masks" / "training01_01_mask1.nii.gz")
    soft = img.get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(soft == 1, mask_file.get_fdata() > 0)
    # the RAS-space computation with the file's spacing, flipped back, gives the same mask
    ras_mask = np.flip(mask_file.get_fdata() > 0, flips)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    flair = np.flip(
        nib.load(
            other_root / "training01" / "preprocessed" / "training01_01_flair_pp.nii.gz"
        ).get_fdata(),
        flips,
    )
    region = dilation_region(ras_mask, spacing=spacing, ratio=1.2)
    region &= flair >= np.percentile(flair[flair != 0], 50)
    np.testing.assert_array_equal(np.flip(soft == np.float32(0.3), flips), region)


def test_build_masks_on_manifest_per_lesion_rater(tmp_path, manifest):
    out = tmp_path / "soft"
    result = run(
        "build-masks",
        manifest,
        "--out",
        out,
        "--per-lesion",
        "--ratio",
        1.5,
        "--gamma",
        0.25,
        "--flair-threshold",
        "none",
    )
    assert result.exit_code == 0, result.output
    soft = nib.load(out / "s0_softmask.nii.gz").get_fdata(dtype=np.float32)
    assert set(np.unique(soft).tolist()) <= {0.0, np.float32(0.25), 1.0}
    assert (soft == np.float32(0.25)).any()
    result = run("build-masks", manifest, "--out", tmp_path / "r2", "--rater", 2)
    assert result.exit_code == 1
    assert "no mask for rater 2" in result.stderr
    assert not (tmp_path / "r2" / "s0_softmask.nii.gz").exists()


def test_refuses_to_write_into_data_and_to_overwrite(tmp_path, isbi_root):
    before = sorted(p.name for p in isbi_root.rglob("*"))
    result = run("build-masks", isbi_root, "--out", isbi_root / "training01" / "soft")
    assert result.exit_code == 1 and "inside the input data" in result.stderr
    assert sorted(p.name for p in isbi_root.rglob("*")) == before
    out = tmp_path / "soft"
    assert run("build-masks", isbi_root, "--out", out).exit_code == 0
    again = run("build-masks", isbi_root, "--out", out)
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    assert run("build-masks", isbi_root, "--out", out, "--overwrite").exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = run("build-masks", isbi_root, "--out", other)
    assert result.exit_code == 1 and "not an mssoft output folder" in result.stderr


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--gamma", "1.5", "--gamma"),
        ("--ratio", "0.8", "--ratio"),
        ("--flair-threshold", "median", "--flair-threshold"),
        ("--rater", "0", "--rater"),
    ],
)
def test_bad_options_give_one_line_and_nonzero_exit(tmp_path, isbi_root, option, value, message):
    result = run("build-masks", isbi_root, "--out", tmp_path / "o", option, value)
    assert result.exit_code != 0
    assert message in result.stderr
    assert result.stderr.strip().count("\n") <= 3  # usage lines at most, no traceback
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_bad_data_file_is_named(tmp_path, isbi_root):
    bad = isbi_root / "training02" / "masks" / "training02_01_mask1.nii.gz"
    bad.write_bytes(b"garbage")
    result = run("build-masks", isbi_root, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert f"Error: {bad}: cannot read NIfTI" in result.stderr
    assert not list((tmp_path / "o").glob("*softmask*"))


def test_help_and_version():
    result = run("--help")
    assert result.exit_code == 0 and "build-masks" in result.stdout
    result = run("build-masks", "--help")
    assert "--flair-threshold" in result.stdout and "default: p50" in result.stdout
    assert run("--version").stdout.startswith("mssoft, version")
