"""BIDS datasets as DATA: anat images, lesion masks from derivatives, errors, the CLI."""

import json

import numpy as np
import pytest
from conftest import blob_scan, save
from test_predict import make_run, run_cli

from mssoft.errors import DataError
from mssoft.files.scans import discover_scans, load_scan

AFFINE = np.diag([-1.0, 1.0, 1.0, 1.0])
SUFFIXES = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w"}


def write_bids(root, sessions=(("01", "01"), ("01", "02"), ("02", None))):
    """Subjects/sessions with FLAIR, T1w, T2w; lesion masks of raters 1 and 2 in derivatives."""
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9"}))
    for k, (sub, ses) in enumerate(sessions):
        images, mask = blob_scan(seed=k)
        stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        folder = f"sub-{sub}" + (f"/ses-{ses}" if ses else "") + "/anat"
        for modality, suffix in SUFFIXES.items():
            save(images[modality], AFFINE, root / folder / f"{stem}_{suffix}.nii.gz")
        (root / folder / f"{stem}_FLAIR.json").write_text("{}")  # sidecars are ignored
        save(images["pd"], AFFINE, root / folder / f"{stem}_T2starw.nii.gz")  # not a modality
        lesions = root / "derivatives" / "lesions" / folder
        save(mask.astype(np.uint8), AFFINE, lesions / f"{stem}_label-lesion_mask.nii.gz")
        other = mask.copy()
        other[tuple(np.argwhere(mask)[0])] = False
        save(other.astype(np.uint8), AFFINE, lesions / f"{stem}_label-lesion_desc-rater2_mask.nii")
    return root


def test_subjects_and_sessions_become_scans_with_derivative_masks(tmp_path):
    root = write_bids(tmp_path / "bids")
    scans = discover_scans(root)
    assert [s.scan_id for s in scans] == ["sub-01_ses-01", "sub-01_ses-02", "sub-02"]
    assert [s.patient_id for s in scans] == ["sub-01", "sub-01", "sub-02"]
    assert list(scans[0].images) == ["flair", "t1", "t2"]
    assert scans[0].images["t1"].name == "sub-01_ses-01_T1w.nii.gz"
    assert sorted(scans[2].masks) == [1, 2]
    assert scans[2].masks[2].name == "sub-02_label-lesion_desc-rater2_mask.nii"
    loaded = load_scan(scans[0], rater=1)
    np.testing.assert_array_equal(loaded.mask, blob_scan(seed=0)[1][::-1])  # LAS file, RAS array


def test_ambiguous_or_incomplete_bids_data_is_one_clear_error(tmp_path):
    root = write_bids(tmp_path / "a", sessions=(("01", None),))
    extra = root / "sub-01" / "anat" / "sub-01_acq-fast_T1w.nii.gz"
    extra.write_bytes((root / "sub-01" / "anat" / "sub-01_T1w.nii.gz").read_bytes())
    with pytest.raises(
        DataError,
        match=r"acq-fast_T1w.nii.gz: a second T1w image for sub-01 \(first: .*sub-01_T1w.nii.gz\)",
    ):
        discover_scans(root)
    root = write_bids(tmp_path / "b", sessions=(("01", None),))
    (root / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz").unlink()
    with pytest.raises(DataError, match=r"anat: sub-01 has no \*_FLAIR.nii\[.gz\] image"):
        discover_scans(root)
    root = write_bids(tmp_path / "c", sessions=(("01", None),))
    orphan = root / "derivatives" / "lesions" / "sub-09" / "anat"
    save(np.zeros((2, 2, 2), np.uint8), AFFINE, orphan / "sub-09_label-lesion_mask.nii.gz")
    with pytest.raises(DataError, match=r"sub-09_label-lesion_mask.nii.gz: lesion mask without"):
        discover_scans(root)
    second = root / "derivatives" / "other" / "sub-01" / "anat"
    save(np.zeros((2, 2, 2), np.uint8), AFFINE, second / "sub-01_label-lesion_mask.nii.gz")
    (orphan / "sub-09_label-lesion_mask.nii.gz").unlink()
    with pytest.raises(DataError, match=r"a second rater-1 lesion mask"):
        discover_scans(root)


def test_build_masks_and_predict_read_bids(tmp_path):
    root = write_bids(tmp_path / "bids")
    result = run_cli("build-masks", root, "--out", tmp_path / "masks", "--rater", 2)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "masks").glob("sub-*_softmask.nii.gz"))) == 3
    run = make_run(tmp_path / "run", modalities=("flair", "t1", "t2"))
    result = run_cli("predict", run, root, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    anat = tmp_path / "pred" / "sub-01" / "ses-02" / "anat"
    assert (anat / "sub-01_ses-02_space-orig_label-lesion_mask.nii.gz").is_file()  # BIDS names
    flat = run_cli("predict", run, root, "--out", tmp_path / "flat", "--naming", "mssoft")
    assert flat.exit_code == 0, flat.output
    assert (tmp_path / "flat" / "sub-01_ses-02_seg.nii.gz").is_file()
