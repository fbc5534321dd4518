import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.soft_masks import (
    dilation_region,
    parse_flair_threshold,
    resolve_flair_threshold,
    soft_mask,
)


def random_mask(shape=(30, 34, 26), n=6, seed=0):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(n):
        c = rng.uniform(5, np.array(shape) - 5)
        r = rng.uniform(1.0, 3.5, size=3)
        mask |= ((((grid.T - c) / r) ** 2).sum(-1) <= 1).T
    return mask


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.9, 1.1, 3.0)])
@pytest.mark.parametrize("ratio", [1.1, 1.2, 1.5, 3.0])
def test_ring_is_exact_size_and_nearest_first(spacing, ratio):
    mask = random_mask()
    region = dilation_region(mask, spacing=spacing, ratio=ratio)
    assert not (region & mask).any()
    assert region.sum() == round((ratio - 1) * mask.sum())
    # nearest-first: every excluded eligible voxel is at least as far (mm) as every included one
    dist = ndimage.distance_transform_edt(~mask, sampling=spacing)
    assert dist[region].max() <= dist[~region & ~mask].min()


def test_ties_are_broken_deterministically_and_spread_over_all_lesions():
    mask = np.zeros((7, 7, 7), bool)
    mask[3, 3, 3] = True
    # the 6 face neighbours tie at 1 mm; ratio 4 keeps 3 of them, always the same 3
    region = dilation_region(mask, spacing=(1, 1, 1), ratio=4.0)
    assert region.sum() == 3
    assert ndimage.distance_transform_edt(~mask)[region].max() == 1.0
    np.testing.assert_array_equal(region, dilation_region(mask, spacing=(1, 1, 1), ratio=4.0))
    # twelve identical cubes: a partly used first shell must not go to the low-index cubes only
    cubes = np.zeros((60, 60, 20), bool)
    corners = [(x, y) for x in range(2, 60, 15) for y in range(2, 60, 20)]
    for x, y in corners:
        cubes[x : x + 4, y : y + 4, 8:12] = True
    region = dilation_region(cubes, spacing=(1, 1, 1), ratio=1.2)
    per_cube = [region[x - 1 : x + 5, y - 1 : y + 5, 7:13].sum() for x, y in corners]
    assert sum(per_cube) == round(0.2 * cubes.sum())
    mean = np.mean(per_cube)  # 12.8 of the 96 tied face-neighbour voxels of each cube
    assert min(per_cube) > 0.4 * mean and max(per_cube) < 1.6 * mean, per_cube


def test_soft_values_and_flair_exclusion():
    mask = random_mask(seed=1)
    rng = np.random.default_rng(2)
    flair = rng.uniform(1, 100, mask.shape).astype(np.float32)
    soft = soft_mask(mask, flair, spacing=(1, 1, 1), ratio=1.3, gamma=0.3, flair_threshold="p50")
    assert soft.dtype == np.float32
    assert set(np.unique(soft).tolist()) == {0.0, np.float32(0.3), 1.0}
    np.testing.assert_array_equal(soft == 1, mask)
    region = dilation_region(mask, spacing=(1, 1, 1), ratio=1.3)
    t = np.percentile(flair[flair != 0], 50)
    np.testing.assert_array_equal(soft == np.float32(0.3), region & (flair >= t))
    assert 0 < (soft == np.float32(0.3)).sum() < region.sum()
    # an absolute threshold above everything drops the whole ring
    high = soft_mask(mask, flair, spacing=(1, 1, 1), ratio=1.3, flair_threshold=1000.0)
    np.testing.assert_array_equal(high, mask.astype(np.float32))
    # 'none' keeps the whole ring and needs no FLAIR
    none = soft_mask(mask, None, spacing=(1, 1, 1), ratio=1.3, flair_threshold="none")
    np.testing.assert_array_equal(none == np.float32(0.3), region)


def test_percentile_is_over_brain_voxels_only():
    flair = np.zeros((10, 10, 10), np.float32)
    flair[:5] = np.arange(1, 501).reshape(5, 10, 10)
    assert resolve_flair_threshold(flair, "p50") == pytest.approx(250.5)
    assert parse_flair_threshold("P90") == "p90"
    assert parse_flair_threshold(" none ") is None
    assert parse_flair_threshold("12.5") == 12.5
    for bad in ("p150", "median", "nan"):
        with pytest.raises(ValueError, match="flair-threshold"):
            parse_flair_threshold(bad)


def test_binary_special_cases_reproduce_the_mask():
    mask = random_mask(seed=3)
    flair = np.ones(mask.shape, np.float32)
    for kwargs in ({"ratio": 1.0}, {"gamma": 0.0}):
        out = soft_mask(mask, flair, spacing=(1, 1, 1), **kwargs)
        np.testing.assert_array_equal(out, mask.astype(np.float32))
    empty = soft_mask(np.zeros((5, 5, 5)), np.ones((5, 5, 5)), spacing=(1, 1, 1))
    assert not empty.any()


def test_input_is_not_modified_and_bad_parameters_rejected():
    mask = random_mask(seed=4).astype(np.uint8)
    before = mask.copy()
    soft_mask(mask, None, spacing=(1, 1, 1), flair_threshold=None)
    np.testing.assert_array_equal(mask, before)
    with pytest.raises(ValueError, match="--ratio"):
        soft_mask(mask, None, spacing=(1, 1, 1), ratio=0.9, flair_threshold=None)
    with pytest.raises(ValueError, match="--gamma"):
        soft_mask(mask, None, spacing=(1, 1, 1), gamma=1.0, flair_threshold=None)
    with pytest.raises(ValueError, match="spacing"):
        soft_mask(mask, None, spacing=(1, 0, 1), flair_threshold=None)
    with pytest.raises(ValueError, match="flair"):
        soft_mask(mask, None, spacing=(1, 1, 1), flair_threshold="p50")


def test_per_lesion_grows_each_lesion_from_its_own_voxels():
    mask = np.zeros((40, 20, 20), bool)
    mask[3:6, 8:11, 8:11] = True  # 27 voxels
    mask[20:30, 5:15, 5:15] = True  # 1000 voxels, far away
    region = dilation_region(mask, spacing=(1, 1, 1), ratio=1.2, per_lesion=True)
    small = region[:12].sum()
    large = region[12:].sum()
    assert small == round(0.2 * 27) and large == round(0.2 * 1000)
    # globally, the nearest-first ring is not split that way (the small lesion gets more)
    glob = dilation_region(mask, spacing=(1, 1, 1), ratio=1.2)
    assert glob.sum() == round(0.2 * 1027)
    assert glob[:12].sum() != small


def test_ring_reaches_volume_border_and_caps_at_available_voxels():
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = True
    region = dilation_region(mask, spacing=(1, 1, 1), ratio=1000.0)
    assert region.sum() == 63  # every other voxel
    edge = np.zeros((10, 10, 10), bool)
    edge[0, :, :] = True
    region = dilation_region(edge, spacing=(1, 1, 1), ratio=1.5)
    assert region.sum() == 50 and region[1].sum() == 50


def test_large_scan_matches_full_distance_transform_reference():
    # a realistic brain-size volume with anisotropic voxels, checked against a full-volume EDT
    shape = (90, 108, 60)
    mask = random_mask(shape, n=25, seed=5)
    spacing = (1.0, 1.0, 2.5)
    region = dilation_region(mask, spacing=spacing, ratio=1.2)
    dist = ndimage.distance_transform_edt(~mask, sampling=spacing)
    k = round(0.2 * mask.sum())
    # independent reference: full-volume EDT, ties in Knuth-hash order of the flat index
    scrambled = (np.arange(mask.size, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    order = np.lexsort((scrambled, dist.ravel()))
    order = order[~mask.ravel()[order]][:k]
    expected = np.zeros(mask.size, bool)
    expected[order] = True
    np.testing.assert_array_equal(region.ravel(), expected)
