import numpy as np
import pytest

from mssoft.arrays.lesions import remove_small_lesions
from mssoft.arrays.postprocess import (
    Binarisation,
    binarise,
    bounding_box,
    keep_large_lesions,
    postprocess,
)
from mssoft.errors import ConfigError


def line_of(n, shape=(30, 5, 5)):
    """n voxels in a row along axis 0: one lesion of n voxels under any connectivity."""
    prob = np.zeros(shape, np.float32)
    prob[2 : 2 + n, 2, 2] = 0.9
    return prob


def test_component_of_exactly_min_size_is_removed_and_one_more_is_kept():
    assert postprocess(line_of(18), 0.5, min_size=18).sum() == 0
    assert postprocess(line_of(19), 0.5, min_size=18).sum() == 19
    # min_size 0 keeps a single voxel
    assert postprocess(line_of(1), 0.5, min_size=0).sum() == 1


def test_threshold_is_inclusive_in_the_probability_type():
    prob = np.zeros((3, 3, 3), np.float32)
    prob[1, 1, 1] = np.float32(0.3)  # float32(0.3) > 0.3 in float64; equal in float32
    prob[0, 0, 0] = np.nextafter(np.float32(0.3), np.float32(0))  # just below
    prob[2, 2, 2] = np.nan
    mask = binarise(prob, 0.3)
    assert mask[1, 1, 1] and not mask[0, 0, 0] and not mask[2, 2, 2]
    assert mask.sum() == 1
    # float64 probabilities compare in float64
    assert binarise(np.array([[[0.3, 0.29999999]]]), 0.3).tolist() == [[[True, False]]]


def test_corner_neighbours_are_separate_lesions_under_18_connectivity():
    # two 10-voxel bars that touch only at one corner: (9, 2, 2) and (10, 3, 3)
    prob = np.zeros((25, 6, 6), np.float32)
    prob[0:10, 2, 2] = 0.9
    prob[10:20, 3, 3] = 0.9
    assert postprocess(prob, 0.5, min_size=18, connectivity=18).sum() == 0  # two lesions of 10
    assert postprocess(prob, 0.5, min_size=18, connectivity=26).sum() == 20  # one lesion of 20
    # sharing an edge joins them under 18-connectivity (not under 6)
    edge = np.zeros((25, 6, 6), np.float32)
    edge[0:10, 2, 2] = 0.9
    edge[10:20, 3, 2] = 0.9  # (9,2,2)-(10,3,2) share an edge
    assert postprocess(edge, 0.5, min_size=18, connectivity=18).sum() == 20
    assert postprocess(edge, 0.5, min_size=18, connectivity=6).sum() == 0


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("min_size", [0, 3, 18])
def test_cropped_removal_equals_whole_volume_removal(connectivity, min_size):
    rng = np.random.default_rng(connectivity + min_size)
    mask = rng.random((30, 26, 22)) < 0.2
    mask[:4] = False
    expected = remove_small_lesions(mask, min_size=min_size, connectivity=connectivity)
    np.testing.assert_array_equal(
        keep_large_lesions(mask, min_size=min_size, connectivity=connectivity), expected
    )
    assert expected.any() and not expected.all()


def test_empty_and_full_inputs():
    assert bounding_box(np.zeros((3, 4, 5), bool)) is None
    assert bounding_box(np.ones((3, 4, 5), bool)) == (slice(0, 3), slice(0, 4), slice(0, 5))
    assert postprocess(np.zeros((4, 4, 4), np.float32), 0.5).dtype == bool
    assert not postprocess(np.zeros((4, 4, 4), np.float32), 0.5).any()
    assert postprocess(np.ones((4, 4, 4), np.float32), 1.0).all()  # 64 voxels at prob 1 >= 1


def test_binarisation_records_and_validates():
    b = Binarisation(0.41, 18)
    assert b.describe() == "prob >= 0.41, then 18-connected components of > 18 voxels"
    assert b.to_dict() == {
        "threshold": 0.41,
        "min_size": 18,
        "connectivity": 18,
        "rule": "prob >= threshold",
        "lesion_definition": "18-connected components of > 18 voxels",
    }
    np.testing.assert_array_equal(b.apply(line_of(19)), postprocess(line_of(19), 0.41))
    for bad in (0, 0.0, -0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ConfigError, match=r"`--threshold`. Expected a float in \(0, 1\]"):
            Binarisation(bad)
    with pytest.raises(ConfigError, match="min_size"):
        Binarisation(0.5, -1)
    with pytest.raises(ConfigError, match="connectivity"):
        Binarisation(0.5, 18, 8)
