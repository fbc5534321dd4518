"""Realism statistics (mssoft.arrays.realism) against independent scipy.ndimage computations,
and the benchmarks/realism.py report on a generated ISBI data set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.flair_baseline import FLAIR_THRESHOLD_GRID, segment_flair_threshold
from mssoft.arrays.realism import (
    lesion_contrast,
    lesion_sizes,
    mimic_share,
    rater_agreement,
    scan_realism,
    set_realism,
)
from mssoft.synthetic import write_isbi_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "realism.py"
FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def _volume(seed: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """A brain (random intensities inside a box, 0 outside), bright lesions and two raters."""
    rng = np.random.default_rng(seed)
    flair = np.zeros((30, 32, 20), dtype=np.float32)
    flair[3:27, 3:29, 2:18] = rng.normal(100.0, 10.0, (24, 26, 16))
    truth = np.zeros(flair.shape, dtype=bool)
    truth[6:11, 6:11, 5:9] = True  # 100 voxels
    truth[15:18, 15:19, 10:12] = True  # 24 voxels
    truth[20, 20, 15] = truth[21, 21, 16] = True  # diagonal pair: one 26-connected lesion
    truth[24, 6, 4] = True  # a single voxel
    flair[truth] = rng.normal(150.0, 15.0, int(truth.sum()))
    flair[12:14, 25:28, 3:6] = 170.0  # a bright non-lesion patch (mimic)
    rater2 = ndimage.binary_dilation(truth, iterations=1) & (flair > 0)
    rater2[24, 6, 4] = False
    return flair, {1: truth, 2: rater2}


def test_contrast_and_mimics_match_direct_computations():
    flair, masks = _volume(0)
    lesion = masks[1]
    brain = flair != 0
    median, p10 = lesion_contrast(flair, lesion)
    assert median == pytest.approx(np.median(flair[lesion]) / np.median(flair[brain]))
    assert p10 == pytest.approx(np.percentile(flair[lesion], 10) / np.median(flair[brain]))
    others = flair[brain & ~lesion]
    expected = np.mean(others > np.median(flair[lesion]))
    assert mimic_share(flair, lesion) == pytest.approx(expected)
    assert 18 / others.size <= mimic_share(flair, lesion) < 0.01  # the bright patch counts
    empty = np.zeros_like(lesion)
    assert np.isnan(mimic_share(flair, empty)) and np.isnan(lesion_contrast(flair, empty)[0])


def test_lesion_sizes_are_26_connected_components():
    _, masks = _volume(1)
    labels, n = ndimage.label(masks[1], structure=FULL)
    expected = sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True)
    assert lesion_sizes(masks[1]).tolist() == expected == [100, 24, 2, 1]
    assert lesion_sizes(masks[1], connectivity=6).tolist() == [100, 24, 1, 1, 1]


def test_rater_agreement_matches_direct_computations():
    flair, masks = _volume(2)
    a, b = masks[1], masks[2]
    agreement = rater_agreement(a, b, (1, 2))
    assert agreement.dice == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()))
    labels_a, n_a = ndimage.label(a, structure=FULL)
    touched_a = len(set(np.unique(labels_a[b])) - {0}) / n_a
    labels_b, n_b = ndimage.label(b, structure=FULL)
    touched_b = len(set(np.unique(labels_b[a])) - {0}) / n_b
    assert agreement.touched_a == pytest.approx(touched_a) == pytest.approx(3 / 4)
    # rater 2's shell around rater 1's single voxel (which rater 2 left out) touches nothing
    assert agreement.touched_b == pytest.approx(touched_b)
    assert touched_b == pytest.approx(3 / 4)


def test_set_threshold_is_the_best_mean_and_own_threshold_the_best_per_scan():
    scans = []
    for seed in range(3):
        flair, masks = _volume(seed)
        scans.append(scan_realism(flair, masks, scan_id=f"s{seed}"))
    result = set_realism(scans)
    grid = FLAIR_THRESHOLD_GRID
    for rater in (1, 2):
        dices = np.array(
            [
                [_dice(segment_flair_threshold(f, t), m[rater]) for t in grid]
                for f, m in (_volume(seed) for seed in range(3))
            ]
        )
        best = int(np.argmax(dices.mean(axis=0)))
        assert result.set_threshold[rater] == pytest.approx(grid[best])
        np.testing.assert_allclose(result.set_dice[rater], dices[:, best], atol=1e-9)
        np.testing.assert_allclose(result.own_dice[rater], dices.max(axis=1), atol=1e-9)
    assert result.mean("lesion_count") == pytest.approx(4.0)
    assert result.size_quantiles()[0.5] == pytest.approx(np.median(result.pooled_sizes()))
    summary = result.to_dict()["summary"]
    assert summary["n_scans"] == 3 and summary["agreement"][0]["raters"] == [1, 2]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.sum(a & b)) / total


def _script():
    spec = importlib.util.spec_from_file_location("realism_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_script_on_generated_data(tmp_path, capsys):
    data = tmp_path / "data"
    write_isbi_dataset(data, n_patients=2, timepoints=1, shape=(32, 40, 24), seed=3)
    out = tmp_path / "realism.json"
    assert _script().main([str(data), "--json", str(out), "--modalities", "flair,t1"]) == 0
    printed = capsys.readouterr().out
    assert "training01_01" in printed and "mean of 2" in printed and "lesion/brain t1" in printed
    record = json.loads(out.read_text())
    assert [r["scan"] for r in record["scans"]] == ["training01_01", "training02_01"]
    assert set(record["summary"]["flair_threshold"]) == {"1", "2"}


def test_report_script_refuses_bad_data_in_one_line(tmp_path, capsys):
    module = _script()
    assert module.main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "missing" in err and "\n" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert module.main([str(empty)]) == 2
    assert capsys.readouterr().err.startswith("Error: ")
    data = tmp_path / "data"
    write_isbi_dataset(data, n_patients=1, timepoints=1, shape=(32, 40, 24), seed=3)
    assert module.main([str(data), "--modalities", "flair,dwi"]) == 2
    assert "dwi" in capsys.readouterr().err
