"""The FLAIR-threshold baseline against an independent thresholding and labelling."""

import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.flair_baseline import (
    FLAIR_THRESHOLD_GRID,
    calibrate_flair_threshold,
    flair_dice_curve,
    flair_zscore,
    segment_flair_threshold,
)


def _scan(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flair = np.zeros((24, 24, 16), np.float32)
    flair[2:22, 2:22, 2:14] = rng.normal(100.0, 10.0, (20, 20, 12))
    truth = np.zeros(flair.shape, bool)
    truth[5:9, 5:9, 4:8] = True  # 64 voxels
    truth[14:17, 12:15, 6:9] = True  # 27 voxels
    flair[truth] += 35.0
    return flair, truth


def _independent(flair: np.ndarray, t: float, min_size: int = 18) -> np.ndarray:
    brain = flair != 0
    z = np.zeros(flair.shape)
    z[brain] = (flair[brain] - flair[brain].mean()) / flair[brain].std()
    labels, n = ndimage.label((z >= t) & brain, structure=ndimage.generate_binary_structure(3, 2))
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes > min_size
    return keep[labels]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


def test_zscore_is_zero_mean_unit_std_over_the_brain_and_zero_outside():
    flair, _ = _scan(0)
    z = flair_zscore(flair)
    brain = flair != 0
    assert abs(z[brain].mean()) < 1e-5 and abs(z[brain].std() - 1) < 1e-5
    assert not z[~brain].any()


@pytest.mark.parametrize("t", [1.0, 1.7, 2.5])
def test_segmentation_matches_an_independent_threshold_and_labelling(t):
    flair, _ = _scan(1)
    np.testing.assert_array_equal(segment_flair_threshold(flair, t), _independent(flair, t))


def test_dice_curve_matches_the_segmentation_at_every_threshold():
    flair, truth = _scan(2)
    grid = FLAIR_THRESHOLD_GRID[:25]
    curve = flair_dice_curve(flair, truth, grid)
    expected = [_dice(_independent(flair, t), truth) for t in grid]
    np.testing.assert_allclose(curve, expected, atol=1e-12)


def test_calibration_picks_the_best_mean_dice_threshold():
    scans = [_scan(s) for s in (3, 4, 5)]
    chosen = calibrate_flair_threshold([f for f, _ in scans], [m for _, m in scans])
    means = [
        np.mean([_dice(_independent(f, t), m) for f, m in scans]) for t in FLAIR_THRESHOLD_GRID
    ]
    assert chosen.threshold == pytest.approx(FLAIR_THRESHOLD_GRID[int(np.argmax(means))])
    assert chosen.mean_dice == pytest.approx(max(means))
    assert chosen.mean_dice > 0.5  # bright cubes are easy: the baseline finds them
    np.testing.assert_array_equal(
        chosen.segment(scans[0][0]), segment_flair_threshold(scans[0][0], chosen.threshold)
    )


def test_bad_inputs_are_refused():
    flair, truth = _scan(0)
    with pytest.raises(ValueError, match="3D"):
        flair_zscore(flair[..., 0])
    with pytest.raises(ValueError, match="> 0"):
        flair_dice_curve(flair, truth, [0.0, 1.0])
    with pytest.raises(ValueError, match="one reference per FLAIR"):
        calibrate_flair_threshold([flair], [])
