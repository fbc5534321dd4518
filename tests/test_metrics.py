import math

import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.metrics import (
    MEAN_FIELDS,
    ScanMetrics,
    isbi_score,
    nanmean,
    scan_metrics,
    summarise,
    volume_correlation,
)

nan = math.nan


def vol(*voxels, shape=(6, 6, 6)):
    mask = np.zeros(shape, bool)
    for v in voxels:
        mask[v] = True
    return mask


def check(m: ScanMetrics, **expected):
    for name, value in expected.items():
        got = getattr(m, name)
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got), f"{name}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(value), f"{name}: expected {value}, got {got}"


def test_hand_computed_example():
    # ref: lesion A = 4 voxels (0,0,0..3), lesion B = 2 voxels (4,4,4..5): |R| = 6, 2 lesions
    ref = vol((0, 0, slice(0, 4)), (4, 4, slice(4, 6)))
    # pred: 3 voxels on A (0,0,1..3) plus a separate 1-voxel lesion far away (2,5,0): |P| = 4
    pred = vol((0, 0, slice(1, 4)), (2, 5, 0))
    m = scan_metrics(pred, ref, spacing_mm=(1.0, 2.0, 0.5))  # 1 mm^3 = 0.001 mL per voxel
    check(
        m,
        overlap_voxels=3,
        pred_voxels=4,
        ref_voxels=6,
        dice=2 * 3 / (4 + 6),  # 0.6
        ppv=3 / 4,
        tpr=3 / 6,
        ref_lesions=2,
        pred_lesions=2,
        detected_ref_lesions=1,  # A is hit, B is not
        ltpr=1 / 2,
        false_pred_lesions=1,  # the lone voxel touches no reference voxel
        lfpr=1 / 2,
        ref_volume_ml=0.006,
        pred_volume_ml=0.004,
        abs_volume_diff_ml=0.002,
        rel_volume_diff=2 / 6,
        voxel_volume_ml=0.001,
    )


def test_empty_reference():
    m = scan_metrics(vol((1, 1, 1), (1, 1, 2)), vol())
    check(
        m,
        dice=0.0,
        ppv=0.0,
        tpr=nan,
        ltpr=nan,
        lfpr=1.0,
        rel_volume_diff=nan,
        abs_volume_diff_ml=0.002,
        ref_lesions=0,
        pred_lesions=1,
    )


def test_empty_prediction():
    m = scan_metrics(vol(), vol((1, 1, 1)))
    check(
        m,
        dice=0.0,
        ppv=nan,
        tpr=0.0,
        ltpr=0.0,
        lfpr=nan,
        rel_volume_diff=1.0,
        abs_volume_diff_ml=0.001,
        ref_lesions=1,
        pred_lesions=0,
    )


def test_both_empty():
    m = scan_metrics(vol(), vol())
    check(
        m,
        dice=1.0,
        ppv=nan,
        tpr=nan,
        ltpr=nan,
        lfpr=nan,
        rel_volume_diff=nan,
        abs_volume_diff_ml=0.0,
        ref_lesions=0,
        pred_lesions=0,
        overlap_voxels=0,
    )


def test_touching_lesions_are_one_lesion():
    # two 2x2x2 reference cubes sharing a face form one lesion; the prediction hits one cube only
    ref = vol((slice(0, 2), slice(0, 2), slice(0, 2)), (slice(2, 4), slice(0, 2), slice(0, 2)))
    pred = vol((0, 0, 0))
    m = scan_metrics(pred, ref)
    check(m, ref_lesions=1, detected_ref_lesions=1, ltpr=1.0, lfpr=0.0)


def test_corner_touching_voxels_are_two_lesions_under_18_connectivity():
    ref = vol((1, 1, 1), (2, 2, 2))  # share only a corner
    pred = vol((1, 1, 1))
    check(scan_metrics(pred, ref), ref_lesions=2, detected_ref_lesions=1, ltpr=0.5)
    check(scan_metrics(pred, ref, connectivity=26), ref_lesions=1, ltpr=1.0)
    # sharing an edge: one lesion under 18, two under 6
    edge = vol((1, 1, 1), (2, 2, 1))
    check(scan_metrics(pred, edge), ref_lesions=1, ltpr=1.0)
    check(scan_metrics(pred, edge, connectivity=6), ref_lesions=2, ltpr=0.5)
    # the same rule for predicted lesions (LFPR): the far corner voxel is its own false lesion
    check(scan_metrics(vol((1, 1, 1), (2, 2, 2)), vol((1, 1, 1))), pred_lesions=2, lfpr=0.5)


def _brute_force(pred, ref, connectivity):
    """Independent reference: whole-volume labelling and a loop over lesions."""
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    structure = ndimage.generate_binary_structure(3, rank)
    ref_labels, n_ref = ndimage.label(ref, structure)
    pred_labels, n_pred = ndimage.label(pred, structure)
    detected = sum(bool(pred[ref_labels == k].any()) for k in range(1, n_ref + 1))
    false = sum(not ref[pred_labels == k].any() for k in range(1, n_pred + 1))
    inter = (pred & ref).sum()
    return dict(
        dice=2 * inter / (pred.sum() + ref.sum()),
        ppv=inter / pred.sum(),
        tpr=inter / ref.sum(),
        ltpr=detected / n_ref,
        lfpr=false / n_pred,
        ref_lesions=n_ref,
        pred_lesions=n_pred,
    )


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_matches_an_independent_implementation(connectivity):
    rng = np.random.default_rng(connectivity)
    shape = (28, 24, 20)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.53  # blobs
    pred = (ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.53) | (rng.random(shape) < 0.01)
    ref[:3] = False  # the masks do not fill the volume: exercises the bounding box
    m = scan_metrics(pred, ref, connectivity=connectivity)
    expected = _brute_force(pred, ref, connectivity)
    check(m, **expected)
    assert 0 < m.ltpr < 1 and 0 < m.lfpr < 1


def test_input_validation():
    with pytest.raises(ValueError, match="one shape"):
        scan_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="spacing_mm"):
        scan_metrics(vol(), vol(), spacing_mm=(1, 0, 1))


def test_volume_correlation_is_pearson_and_nan_when_undefined():
    x, y = [1.0, 2.0, 4.0, 3.5], [1.1, 2.5, 3.9, 3.0]
    assert volume_correlation(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert math.isnan(volume_correlation([1.0], [2.0]))
    assert math.isnan(volume_correlation([1.0, 1.0], [2.0, 3.0]))  # constant: no warning either


def test_nanmean_counts_and_never_warns():
    assert nanmean([1.0, nan, 3.0]) == (2.0, 1)
    mean, n = nanmean([nan, nan])
    assert math.isnan(mean) and n == 2


def test_summary_means_skip_nan_and_isbi_score():
    # scan 1: 4 hit of 4 ref, pred 5 (one extra separate voxel) ; scan 2: empty prediction
    ref1 = vol((0, 0, slice(0, 4)))
    pred1 = vol((0, 0, slice(0, 4)), (4, 4, 4))
    ref2 = vol((1, 1, slice(0, 2)))
    s = summarise([scan_metrics(pred1, ref1), scan_metrics(vol(), ref2)])
    assert s.n_scans == 2
    assert s.means["dice"] == pytest.approx((8 / 9 + 0.0) / 2)
    assert (
        s.means["ppv"] == pytest.approx(4 / 5) and s.nan_counts["ppv"] == 1
    )  # scan 2 has no prediction
    assert s.means["lfpr"] == pytest.approx(1 / 2) and s.nan_counts["lfpr"] == 1
    assert s.means["ltpr"] == pytest.approx((1 + 0) / 2) and s.nan_counts["ltpr"] == 0
    # volumes (mL): pred 0.005, 0.0 ; ref 0.004, 0.002 -> correlation of two points = 1
    assert s.volume_correlation == pytest.approx(1.0)
    expected = (
        s.means["dice"] / 8
        + s.means["ppv"] / 8
        + (1 - s.means["lfpr"]) / 4
        + s.means["ltpr"] / 4
        + 1 / 4
    )
    assert s.isbi_score == pytest.approx(expected)
    assert sum(s.isbi_terms.values()) == pytest.approx(expected)
    assert set(MEAN_FIELDS) == set(s.means) == set(s.nan_counts)
    assert math.isnan(isbi_score(0.5, 0.5, 0.5, 0.5, nan))
