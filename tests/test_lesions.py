import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.lesions import (
    LesionDefinition,
    connectivity_structure,
    label_lesions,
    remove_small_lesions,
)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("seed", range(4))
def test_sparse_labelling_equals_scipy_including_numbering(connectivity, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((23, 31, 17)) < 0.015  # sparse: the graph-based path
    mask[0, :, 0] = True  # lesions touching the volume border
    mask[-1, -1, :] = True
    labels, n = label_lesions(mask, connectivity=connectivity)
    expected, m = ndimage.label(mask, structure=connectivity_structure(connectivity))
    assert n == m
    np.testing.assert_array_equal(labels, expected)


def test_dense_masks_use_scipy_and_agree():
    mask = np.random.default_rng(1).random((10, 12, 8)) < 0.4
    labels, n = label_lesions(mask)
    expected, m = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 2))
    assert n == m
    np.testing.assert_array_equal(labels, expected)


def test_corner_neighbours_are_one_lesion_only_with_26_connectivity():
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # share a corner only
    mask[1, 2, 1] = True  # a face with (1, 1, 1), an edge with (2, 2, 2)
    assert label_lesions(mask, connectivity=6)[1] == 2
    assert label_lesions(mask, connectivity=18)[1] == 1
    single = np.zeros((4, 4, 4), bool)
    single[1, 1, 1] = single[2, 2, 2] = True
    assert label_lesions(single, connectivity=18)[1] == 2
    assert label_lesions(single, connectivity=26)[1] == 1


def test_remove_small_lesions_keeps_strictly_more_than_min_size():
    mask = np.zeros((30, 30, 30), bool)
    mask[2:5, 2:5, 2:4] = True  # 18 voxels
    mask[10:13, 10:13, 10:12] = True
    mask[10, 10, 12] = True  # 19 voxels
    kept = remove_small_lesions(mask, min_size=18)
    assert kept.sum() == 19 and not kept[2:5, 2:5, 2:4].any()
    assert remove_small_lesions(mask, min_size=0).sum() == 37
    assert not remove_small_lesions(np.zeros((3, 3, 3)), min_size=0).any()
    with pytest.raises(ValueError, match="min_size"):
        LesionDefinition(18, -1)
    with pytest.raises(ValueError, match="connectivity"):
        label_lesions(mask, connectivity=8)
