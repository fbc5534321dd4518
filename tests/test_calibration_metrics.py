"""Expected calibration error, Brier score and their bins (pure NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from mssoft.arrays.calibration_metrics import (
    BinStats,
    bin_stats,
    brier_score,
    expected_calibration_error,
)


def test_perfectly_calibrated_map_has_ece_near_zero() -> None:
    rng = np.random.default_rng(0)
    prob = rng.uniform(0, 1, size=(60, 60, 60))
    reference = rng.uniform(0, 1, size=prob.shape) < prob  # lesion with probability p
    stats = bin_stats(prob, reference)
    assert stats.n_voxels == prob.size and stats.n_bins == 15
    assert expected_calibration_error(stats) < 0.01
    # a miscalibrated map (probabilities squared) is far from it
    assert expected_calibration_error(bin_stats(prob**2, reference)) > 0.1


def test_constant_map_by_hand() -> None:
    reference = np.zeros((10, 10, 10), bool)
    reference[:3] = True  # 30 % lesion
    where = np.ones(reference.shape, bool)
    where[9] = False  # 900 voxels counted, 300 of them lesion
    stats = bin_stats(np.full(reference.shape, 0.2), reference, where)
    assert stats.n_voxels == 900
    assert stats.counts[3] == 900  # 0.2 * 15 = 3: the fourth bin
    assert expected_calibration_error(stats) == pytest.approx(abs(0.2 - 300 / 900))
    # Brier: 300 voxels (0.2 - 1)^2 + 600 voxels 0.2^2, over 900
    assert brier_score(stats) == pytest.approx((300 * 0.64 + 600 * 0.04) / 900)


def test_pooled_bins_add_up_and_bin_edges() -> None:
    a = bin_stats(np.array([0.0, 0.5, 1.0]), np.array([0, 1, 1]))
    b = bin_stats(np.array([0.99, 1 / 15]), np.array([1.0, 0.5]))
    pooled = a + b
    assert pooled.counts.tolist() == [1, 1, 0, 0, 0, 0, 0, 1] + [0] * 6 + [2]
    assert pooled.n_voxels == 5
    assert expected_calibration_error(pooled) == pytest.approx(
        (abs(0 - 0) + abs(1 / 15 - 0.5) + abs(0.5 - 1) + abs(1.99 - 2)) / 5
    )
    assert np.isnan(expected_calibration_error(BinStats.empty()))
    record = pooled.to_dict()
    assert record["bin_counts"][0] == 1 and record["bin_mean_prob"][2] is None
    with pytest.raises(ValueError, match="shapes differ"):
        bin_stats(np.zeros(3), np.zeros(4))
