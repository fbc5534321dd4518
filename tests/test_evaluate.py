import csv
import json
import math
import re

import nibabel as nib
import numpy as np
import pytest
from conftest import write_isbi
from scipy import ndimage
from test_predict import make_run, run_cli

from mssoft.files.folders import write_config
from mssoft.files.scans import discover_scans

STRUCTURE_18 = ndimage.generate_binary_structure(3, 2)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def fake_predictions(folder, segs, affine=None, command="predict"):
    """A predict-like output folder holding the given segmentations."""
    affine = np.eye(4) if affine is None else affine
    folder.mkdir(parents=True)
    write_config(
        folder,
        command,
        {
            "threshold": 0.5,
            "min_size": 18,
            "connectivity": 18,
            "lesion_definition": "18-connected components of > 18 voxels",
        },
    )
    for scan_id, seg in segs.items():
        nib.save(
            nib.Nifti1Image(np.asarray(seg, np.uint8), affine), folder / f"{scan_id}_seg.nii.gz"
        )
    return folder


def rater_masks(data, rater):
    return {s.scan_id: nib.load(s.masks[rater]).get_fdata() > 0 for s in discover_scans(data)}


def by_hand(seg_file, ref_file):
    """Every metric straight from the two NIfTI files, with scipy and a loop over lesions."""
    seg_img, ref_img = nib.load(seg_file), nib.load(ref_file)
    seg, ref = seg_img.get_fdata() > 0, ref_img.get_fdata() > 0
    voxel_ml = abs(np.linalg.det(ref_img.affine[:3, :3])) / 1000
    ref_labels, n_ref = ndimage.label(ref, STRUCTURE_18)
    seg_labels, n_seg = ndimage.label(seg, STRUCTURE_18)
    inter = int((seg & ref).sum())
    detected = sum(bool(seg[ref_labels == k].any()) for k in range(1, n_ref + 1))
    false = sum(not ref[seg_labels == k].any() for k in range(1, n_seg + 1))
    nan = float("nan")
    return {
        "dice": 2 * inter / (seg.sum() + ref.sum()) if seg.sum() + ref.sum() else 1.0,
        "ppv": inter / seg.sum() if seg.sum() else nan,
        "tpr": inter / ref.sum() if ref.sum() else nan,
        "ltpr": detected / n_ref if n_ref else nan,
        "lfpr": false / n_seg if n_seg else nan,
        "abs_volume_diff_ml": abs(int(seg.sum()) - int(ref.sum())) * voxel_ml,
        "rel_volume_diff": abs(int(seg.sum()) - int(ref.sum())) / ref.sum() if ref.sum() else nan,
        "ref_volume_ml": ref.sum() * voxel_ml,
        "pred_volume_ml": seg.sum() * voxel_ml,
        "ref_voxels": ref.sum(),
        "pred_voxels": seg.sum(),
        "overlap_voxels": inter,
        "ref_lesions": n_ref,
        "pred_lesions": n_seg,
        "detected_ref_lesions": detected,
        "false_pred_lesions": false,
    }


def assert_row_matches(row, expected):
    for name, value in expected.items():
        got = float(row[name])
        if math.isnan(value):
            assert row[name] == "nan", name
        else:
            assert got == pytest.approx(float(value), rel=1e-12, abs=1e-15), name


def test_evaluate_predict_output_reproducibly_with_inter_rater(tmp_path):
    affine = np.diag([1.2, 1.0, 2.0, 1.0])  # 2.4 mm^3 voxels
    data = write_isbi(tmp_path / "isbi", patients=2, timepoints=2, affine=affine)
    run = make_run(tmp_path / "run")
    assert (
        run_cli("predict", run, data, "--out", tmp_path / "pred", "--threshold", 0.6).exit_code == 0
    )
    result = run_cli(
        "evaluate", tmp_path / "pred", data, "--out", tmp_path / "eval", "--inter-rater"
    )
    assert result.exit_code == 0, result.output

    rows = read_rows(tmp_path / "eval" / "metrics.csv")
    assert len(rows) == 4 * 3  # 4 scans x (rater 1, rater 2, rater 1 vs 2)
    assert {(r["source"], r["rater"]) for r in rows} == {
        ("pred", "1"),
        ("pred", "2"),
        ("rater1", "2"),
    }
    for row in rows:
        assert_row_matches(row, by_hand(row["seg_file"], row["ref_file"]))
        assert float(row["voxel_volume_ml"]) == pytest.approx(0.0024)
    # rater 2 = rater 1 minus one voxel: agreement known in closed form
    for row in (r for r in rows if r["source"] == "rater1"):
        n = int(row["pred_voxels"])
        assert int(row["ref_voxels"]) == n - 1
        assert float(row["dice"]) == pytest.approx(2 * (n - 1) / (2 * n - 1))
        assert float(row["ppv"]) == pytest.approx((n - 1) / n) and float(row["tpr"]) == 1.0

    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert [g["label"] for g in summary["groups"]] == ["Rater 1", "Rater 2", "R1 vs R2"]
    for group in summary["groups"]:
        members = [
            r for r in rows if (r["source"], int(r["rater"])) == (group["source"], group["rater"])
        ]
        assert group["n_scans"] == 4
        for name in ("dice", "ppv", "tpr", "ltpr", "lfpr", "rel_volume_diff"):
            assert group["means"][name] == pytest.approx(np.mean([float(r[name]) for r in members]))
        corr = np.corrcoef(
            [float(r["pred_volume_ml"]) for r in members],
            [float(r["ref_volume_ml"]) for r in members],
        )[0, 1]
        assert group["volume_correlation"] == pytest.approx(corr)
        m = group["means"]
        assert group["isbi_score"] == pytest.approx(
            m["dice"] / 8 + m["ppv"] / 8 + (1 - m["lfpr"]) / 4 + m["ltpr"] / 4 + corr / 4
        )
    scores = [g["isbi_score"] for g in summary["groups"] if g["source"] == "pred"]
    assert summary["isbi_raw_score"] == pytest.approx(np.mean(scores))
    assert summary["postprocessing"] == "prob >= 0.6, then 18-connected components of > 18 voxels"

    lines = result.stdout.splitlines()
    assert lines[0].split() == ["Rater", "1", "Rater", "2", "R1", "vs", "R2"]
    dice = [g["means"]["dice"] for g in summary["groups"]]
    assert lines[1].split() == ["Dice", "(%)", *(f"{100 * d:.1f}" for d in dice)]
    assert re.fullmatch(r"Precision \(%\)(\s+\d+\.\d){3}", lines[2])
    assert re.fullmatch(r"Recall \(%\)(\s+\d+\.\d){3}", lines[3])
    for title in ("LTPR (%)", "LFPR (%)", "Vol. corr", "ISBI raw score (%)"):
        assert any(line.startswith(title) for line in lines), title
    config = json.loads((tmp_path / "eval" / "config.json").read_text())
    assert config["command"] == "evaluate" and config["config"]["inter_rater"] is True

    # calibration of the probability maps, recomputed from the files by hand
    calibration = summary["calibration"]["references"]
    assert list(calibration) == ["rater1", "rater2", "raters_mean"]  # no truth in this data
    assert (tmp_path / "eval" / "reliability.png").stat().st_size > 0
    scans = {s.scan_id: s for s in discover_scans(data)}
    pooled = {k: [] for k in calibration}
    for row in (r for r in rows if r["source"] == "pred"):
        scan = scans[row["scan"]]
        prob = nib.load(tmp_path / "pred" / f"{row['scan']}_prob.nii.gz").get_fdata()
        brain = nib.load(scan.images["flair"]).get_fdata() != 0
        refs = {k: nib.load(scan.masks[k]).get_fdata() for k in (1, 2)}
        refs = {"rater1": refs[1], "rater2": refs[2], "raters_mean": (refs[1] + refs[2]) / 2}
        p = prob[brain]
        bins = np.minimum((p * 15).astype(int), 14)
        for label, ref in refs.items():
            y = ref[brain]
            ece = sum(abs(p[bins == b].sum() - y[bins == b].sum()) for b in range(15)) / p.size
            brier = np.mean((p - y) ** 2)
            pooled[label].append((p, y))
            got = calibration[label]["per_scan"][row["scan"]]
            assert got["ece"] == pytest.approx(ece) and got["brier"] == pytest.approx(brier)
            if label == f"rater{row['rater']}":
                assert float(row["ece"]) == pytest.approx(ece)
            if label == "raters_mean":
                assert float(row["ece_raters_mean"]) == pytest.approx(ece)
        assert row["ece_truth"] == "nan"
    for label, parts in pooled.items():
        p = np.concatenate([a for a, _ in parts[::2]])  # each scan appears in two pred rows
        y = np.concatenate([b for _, b in parts[::2]])
        assert calibration[label]["pooled"]["n_voxels"] == p.size
        assert calibration[label]["pooled"]["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert any(line.startswith("Calibration") for line in lines)


def test_empty_predictions_are_nan_not_zero(tmp_path, isbi_root):
    masks = rater_masks(isbi_root, 1)
    segs = {scan_id: mask for scan_id, mask in masks.items()}
    segs["training01_01"] = np.zeros_like(masks["training01_01"])
    pred = fake_predictions(tmp_path / "pred", segs)
    result = run_cli("evaluate", pred, isbi_root, "--out", tmp_path / "eval", "--rater", 1)
    assert result.exit_code == 0, result.output
    rows = {r["scan"]: r for r in read_rows(tmp_path / "eval" / "metrics.csv")}
    assert len(rows) == 4
    empty = rows["training01_01"]
    assert (empty["dice"], empty["ppv"], empty["lfpr"], empty["tpr"]) == (
        "0.0",
        "nan",
        "nan",
        "0.0",
    )
    assert rows["training01_02"]["dice"] == "1.0"
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    (group,) = summary["groups"]
    assert (
        group["nan_counts"]["ppv"] == 1 and group["means"]["ppv"] == 1.0
    )  # mean of the other three
    assert group["means"]["dice"] == pytest.approx(0.75)
    assert "Undefined (NaN, left out of the means): Rater 1: ppv 1, lfpr 1" in result.stdout
    assert result.stdout.splitlines()[0].split() == ["Rater", "1"]


def test_bad_predictions_are_named(tmp_path, isbi_root):
    masks = rater_masks(isbi_root, 1)
    ok = dict(masks)

    def evaluate(pred, *extra):
        return run_cli("evaluate", pred, isbi_root, "--out", tmp_path / f"eval_{pred.name}", *extra)

    partial = fake_predictions(tmp_path / "partial", {"training01_01": ok["training01_01"]})
    result = evaluate(partial)
    assert result.exit_code == 1
    assert "no segmentation (<scan>_seg.nii.gz or <case>.nii.gz) for 3 of 4 scans" in result.stderr
    assert "training01_02, training02_01, training02_02 (use --scans" in result.stderr
    assert evaluate(partial, "--scans", "training01_01").exit_code == 0

    shape = fake_predictions(tmp_path / "shape", {**ok, "training02_01": np.zeros((24, 28, 21))})
    result = evaluate(shape)
    assert result.exit_code == 1
    assert re.search(
        r"shape/training02_01_seg.nii.gz: shape \(24, 28, 21\) differs from "
        r".*training02_01_mask1.nii.gz shape \(24, 28, 20\)",
        result.stderr,
    )

    shifted = fake_predictions(tmp_path / "shifted", ok, affine=np.diag([1.0, 1.0, 1.1, 1.0]))
    result = evaluate(shifted)
    assert result.exit_code == 1 and re.search(
        r"shifted/training01_01_seg.nii.gz: affine differs from "
        r".*training01_01_mask1.nii.gz",
        result.stderr,
    )

    nonbinary = dict(ok)
    nonbinary["training01_02"] = ok["training01_02"].astype(np.float32)
    nonbinary["training01_02"][0, 0, 0] = 2.0  # 0/1/2; a 0/2 mask would be read as binary
    folder = fake_predictions(tmp_path / "nonbinary", nonbinary)
    result = evaluate(folder)
    assert result.exit_code == 1
    assert re.search(
        r"nonbinary/training01_02_seg.nii.gz: mask is not binary \(values 0, 1, 2\)", result.stderr
    )
    assert not (tmp_path / "eval_nonbinary" / "metrics.csv").exists()

    other = fake_predictions(tmp_path / "other", ok, command="build-masks")
    result = evaluate(other)
    assert result.exit_code == 1 and "expected `mssoft predict`" in result.stderr


def test_rater_choice_and_output_guards(tmp_path, isbi_root):
    pred = fake_predictions(tmp_path / "pred", rater_masks(isbi_root, 2))
    result = run_cli("evaluate", pred, isbi_root, "--out", tmp_path / "e2", "--rater", 2)
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "e2" / "metrics.csv")
    assert {r["rater"] for r in rows} == {"2"} and {r["dice"] for r in rows} == {"1.0"}
    result = run_cli("evaluate", pred, isbi_root, "--out", tmp_path / "e2", "--rater", 2)
    assert result.exit_code == 1 and "pass --overwrite" in result.stderr
    result = run_cli("evaluate", pred, isbi_root, "--out", tmp_path / "e5", "--rater", 5)
    assert result.exit_code == 1 and "no scan of" in result.stderr and "rater 5" in result.stderr
    result = run_cli("evaluate", pred, isbi_root, "--out", pred)
    assert result.exit_code == 1 and "Invalid value for `--out`" in result.stderr
    result = run_cli("evaluate", pred, isbi_root, "--out", isbi_root / "eval")
    assert result.exit_code == 1 and "inside the input data" in result.stderr
    single = write_isbi(tmp_path / "one", patients=1, timepoints=1)
    for mask2 in single.rglob("*_mask2.nii.gz"):
        mask2.unlink()
    result = run_cli(
        "evaluate",
        pred,
        single,
        "--out",
        tmp_path / "e3",
        "--inter-rater",
        "--scans",
        "training01_01",
    )
    assert result.exit_code == 1 and "Invalid value for `--inter-rater`" in result.stderr
