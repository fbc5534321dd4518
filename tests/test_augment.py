import numpy as np
import pytest

from mssoft.nn.augment import (
    rotate,
    rotate_pair,
    rotate_targets,
    rotation_transforms,
    sample_angles,
)


def pattern(n=9):
    """An asymmetric test image: every pixel distinct."""
    return np.arange(n * n, dtype=np.float32).reshape(n, n)


def test_quarter_turns_are_exact_permutations():
    x = pattern()
    batch = np.stack([x, x, x, x])[..., None]  # (4, 9, 9, 1)
    out = np.asarray(rotate(batch, np.array([0.0, 90.0, 180.0, -90.0], np.float32)))[..., 0]
    np.testing.assert_allclose(out[0], x, atol=1e-4)
    np.testing.assert_allclose(out[1], np.rot90(x, 1), atol=1e-4)
    np.testing.assert_allclose(out[2], np.rot90(x, 2), atol=1e-4)
    np.testing.assert_allclose(out[3], np.rot90(x, -1), atol=1e-4)


def test_image_and_target_get_the_same_transform():
    rng = np.random.default_rng(0)
    mask = rng.choice([0.0, 0.3, 1.0], size=(6, 16, 20, 1)).astype(np.float32)
    image = np.concatenate([mask * 2.0, -mask], axis=-1)  # two channels that mirror the mask
    angles = rng.uniform(-5, 5, size=6).astype(np.float32)
    # bilinear targets: exactly the image's resampling
    images, masks = (
        np.asarray(a) for a in rotate_pair(image, mask, angles, target_interpolation="bilinear")
    )
    assert images.shape == (6, 16, 20, 2) and masks.shape == (6, 16, 20, 1)
    np.testing.assert_allclose(images[..., :1], 2.0 * masks, atol=1e-5)
    np.testing.assert_allclose(images[..., 1:], -masks, atol=1e-5)
    # nearest targets (the default): the same transform, resampled at the nearest pixel
    _, nearest = rotate_pair(image, mask, angles)
    same_map = rotate(mask, angles, interpolation="NEAREST")
    np.testing.assert_array_equal(np.asarray(nearest), np.asarray(same_map))
    square = mask[:1, :16, :16]
    _, quarter = rotate_pair(np.zeros_like(square), square, np.array([90.0], np.float32))
    np.testing.assert_allclose(
        np.asarray(quarter)[0, ..., 0], np.rot90(square[0, ..., 0]), atol=1e-5
    )


def _tilt(weights):
    """Angle (degrees, in [0, 180)) of the principal axis of a weighted pixel cloud."""
    rows, cols = np.indices(weights.shape)
    cov = np.cov(np.stack([cols.ravel(), rows.ravel()]).astype(float), aweights=weights.ravel())
    major = np.linalg.eigh(cov)[1][:, -1]
    return float(np.degrees(np.arctan2(major[1], major[0])) % 180)


def test_rotated_known_pattern_stays_aligned():
    """A bar rotated by 4 degrees: nearest-neighbour target and bilinear image coincide."""
    image = np.zeros((1, 41, 41, 1), np.float32)
    image[0, 17:24, 6:35] = 1.0  # a horizontal bar, 7 x 29 pixels, centred on (20, 20)
    images, targets = (np.asarray(a) for a in rotate_pair(image, image, np.float32([4.0])))
    img, tgt = images[0, ..., 0], targets[0, ..., 0]
    rows, cols = np.indices(img.shape)
    for weights in (img, tgt):  # both stay centred on the slice centre
        assert np.average(rows, weights=weights) == pytest.approx(20.0, abs=0.05)
        assert np.average(cols, weights=weights) == pytest.approx(20.0, abs=0.05)
    assert _tilt(img) == pytest.approx(_tilt(tgt), abs=1.0)  # the same tilt (up to pixels)
    assert min(_tilt(img), 180 - _tilt(img)) == pytest.approx(4.0, abs=0.5)  # of 4 degrees
    # pixels fully inside the rotated bar are lesion in the target; pixels the image leaves
    # empty are background
    assert np.all(tgt[img > 0.99] == 1.0) and np.all(tgt[img == 0.0] == 0.0)


def test_rotated_targets_keep_binary_and_soft_values():
    binary = np.zeros((3, 32, 32, 1), np.float32)
    binary[:, 3:29, 6:26] = 1.0
    soft = binary * 0.3
    soft[:, 8:24, 10:22] = 1.0
    angles = np.float32([5.0, -4.3, 3.7])
    for target, values in ((binary, [0.0, 1.0]), (soft, [0.0, 0.3, 1.0])):
        rotated = np.asarray(rotate_targets(target, angles))
        assert set(np.unique(rotated).tolist()) == set(np.float32(values).tolist())
        assert not np.array_equal(rotated, target)
        blurred = np.asarray(rotate_targets(target, angles, interpolation="bilinear"))
        assert (~np.isin(blurred, np.float32(values))).any()  # the old behaviour blurs
    with pytest.raises(ValueError, match="target_interpolation"):
        rotate_targets(binary, angles, interpolation="cubic")


def test_sample_angles_are_seeded_and_bounded():
    a = np.asarray(sample_angles(1000, np.array([1, 2])))
    b = np.asarray(sample_angles(1000, np.array([1, 2])))
    c = np.asarray(sample_angles(1000, np.array([1, 3])))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= -5.0 and a.max() <= 5.0 and a.min() < -4.5 and a.max() > 4.5
    assert np.all(np.asarray(sample_angles(10, np.array([1, 2]), max_degrees=0.0)) == 0.0)


def test_rotation_keeps_the_centre_fixed():
    t = np.asarray(rotation_transforms(np.array([37.0], np.float32), 11, 15))[0]
    cx, cy = 7.0, 5.0  # ((W - 1) / 2, (H - 1) / 2)
    assert t[0] * cx + t[1] * cy + t[2] == pytest.approx(cx, abs=1e-5)
    assert t[3] * cx + t[4] * cy + t[5] == pytest.approx(cy, abs=1e-5)
