import nibabel as nib
import numpy as np
import pytest
from conftest import save, write_isbi

from mssoft.errors import ConfigError, DataError
from mssoft.files.scans import (
    check_scan,
    discover_scans,
    load_scan,
    patients_of,
    raters_of,
    resolve_modalities,
)


def test_isbi_layout_is_detected(tmp_path):
    root = write_isbi(tmp_path / "d", patients=2, timepoints=2, test_patients=1)
    scans = discover_scans(root)
    assert [s.scan_id for s in scans] == [
        "test03_01",
        "test03_02",
        "training01_01",
        "training01_02",
        "training02_01",
        "training02_02",
    ]
    training = [s for s in scans if s.scan_id.startswith("training")]
    assert patients_of(training) == ["training01", "training02"]
    assert list(training[0].images) == ["flair", "t1", "t2", "pd"]
    assert training[0].images["t1"].name == "training01_01_mprage_pp.nii.gz"
    assert raters_of(training) == [1, 2]
    assert raters_of(scans) == []  # test scans have no masks
    assert scans[0].masks == {}


def test_manifest_relative_paths_and_defaults(manifest):
    scans = discover_scans(manifest)
    assert [s.scan_id for s in scans] == ["s0", "s1", "s2"]
    assert [s.patient_id for s in scans] == ["p0", "p0", "p1"]
    assert list(scans[0].images) == ["flair", "t2"]
    assert scans[0].images["flair"].is_file() and scans[0].masks[1].is_file()
    assert resolve_modalities(scans) == ("flair", "t2")


def test_manifest_errors_name_the_file(tmp_path, manifest):
    text = manifest.read_text().splitlines()
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join([text[0], text[1].replace("s0_flair.nii", "nope.nii")]) + "\n")
    with pytest.raises(DataError, match=r"broken.csv:2: flair file not found: .*nope.nii"):
        discover_scans(broken)
    noflair = tmp_path / "noflair.csv"
    noflair.write_text("scan,t1\na,x.nii\n")
    with pytest.raises(DataError, match="no 'flair' column"):
        discover_scans(noflair)
    every_layout = "no nnU-Net dataset .*, ISBI 2015 layout .* nor BIDS dataset"
    with pytest.raises(DataError, match=every_layout):
        discover_scans(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        discover_scans(tmp_path / "absent")


def test_modalities_subset_alias_and_missing(isbi_root):
    scans = discover_scans(isbi_root)
    assert resolve_modalities(scans, "flair,mprage") == ("flair", "t1")
    with pytest.raises(ConfigError, match="scan training01_01 has no dwi"):
        resolve_modalities(scans, ["flair", "dwi"])


def test_load_scan_stacks_channels_and_mask(isbi_root):
    scan = discover_scans(isbi_root)[0]
    loaded = load_scan(scan, modalities=("flair", "t2"), rater=1)
    assert loaded.image.shape == (24, 28, 20, 2)
    assert loaded.mask.dtype == bool and loaded.mask.any()
    np.testing.assert_array_equal(loaded.image[..., 1], nib.load(scan.images["t2"]).get_fdata())


def test_scan_file_problems_are_named(isbi_root):
    scan = discover_scans(isbi_root)[0]
    with pytest.raises(DataError, match="no mask for rater 3"):
        load_scan(scan, rater=3)
    # a T2 on another grid
    save(np.zeros((24, 28, 21), np.float32), np.eye(4), scan.images["t2"])
    with pytest.raises(
        DataError, match=r"t2_pp.nii.gz: shape \(24, 28, 21\) differs from .*flair_pp"
    ):
        check_scan(scan)
    # a non-binary mask
    save(np.full((24, 28, 20), 0.5, np.float32), np.eye(4), scan.masks[2])
    with pytest.raises(DataError, match=r"mask2.nii.gz: mask is not binary \(values 0.5\)"):
        load_scan(scan, modalities=["flair"], rater=2)
    save(np.full((24, 28, 20), np.nan, np.float32), np.eye(4), scan.masks[2])
    with pytest.raises(DataError, match="mask2.nii.gz: mask holds 13440 NaN"):
        load_scan(scan, modalities=["flair"], rater=2)


def test_isbi_layout_one_level_deeper(tmp_path):
    write_isbi(tmp_path / "isbi2015" / "training", patients=1, timepoints=1)
    write_isbi(tmp_path / "isbi2015" / "testdata", patients=0, timepoints=1, test_patients=1)
    scans = discover_scans(tmp_path / "isbi2015")
    assert [s.scan_id for s in scans] == ["test01_01", "training01_01"]


def test_a_new_layout_is_one_registry_entry(tmp_path, monkeypatch):
    from mssoft.files import scans as scans_module
    from mssoft.files.scan_files import ScanFiles, ScanLayout

    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "case1_0000.nii.gz").write_bytes(b"")
    bare = ScanLayout(
        name="bare",
        description="bare folder (<case>_0000.nii.gz)",
        detect=lambda root: any(root.glob("*_0000.nii.gz")),
        discover=lambda root, *, label=None: [
            ScanFiles(p.name[: -len("_0000.nii.gz")], "p", {"flair": p})
            for p in sorted(root.glob("*_0000.nii.gz"))
        ],
    )
    with pytest.raises(DataError, match="nor BIDS dataset"):
        discover_scans(folder)
    monkeypatch.setattr(scans_module, "LAYOUTS", (*scans_module.LAYOUTS, bare))
    assert [s.scan_id for s in discover_scans(folder)] == ["case1"]
    with pytest.raises(DataError, match="BIDS dataset .* nor bare folder"):
        discover_scans(tmp_path / "bare" / "..")  # a folder of no layout names every layout
