import numpy as np
import pytest

from mssoft.nn.augment import rotate, rotate_pair, rotation_transforms, sample_angles


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


def test_image_and_mask_get_the_same_rotation():
    rng = np.random.default_rng(0)
    mask = rng.choice([0.0, 0.3, 1.0], size=(6, 16, 20, 1)).astype(np.float32)
    image = np.concatenate([mask * 2.0, -mask], axis=-1)  # two channels that mirror the mask
    angles = rng.uniform(-5, 5, size=6).astype(np.float32)
    images, masks = (np.asarray(a) for a in rotate_pair(image, mask, angles))
    assert images.shape == (6, 16, 20, 2) and masks.shape == (6, 16, 20, 1)
    np.testing.assert_allclose(images[..., :1], 2.0 * masks, atol=1e-5)
    np.testing.assert_allclose(images[..., 1:], -masks, atol=1e-5)
    square = mask[:1, :16, :16]
    _, quarter = rotate_pair(np.zeros_like(square), square, np.array([90.0], np.float32))
    np.testing.assert_allclose(
        np.asarray(quarter)[0, ..., 0], np.rot90(square[0, ..., 0]), atol=1e-5
    )


def test_bilinear_keeps_soft_values_nearest_does_not():
    mask = np.zeros((1, 32, 32, 1), np.float32)
    mask[0, 8:24, 8:24] = 0.3
    mask[0, 12:20, 12:20] = 1.0
    angle = np.array([4.0], np.float32)
    _, rotated = rotate_pair(np.zeros_like(mask), mask, angle)
    values = np.unique(np.round(np.asarray(rotated), 4))
    assert values.min() >= 0.0 and values.max() <= 1.0
    graded = values[~np.isin(values, [0.0, 0.3, 1.0])]
    assert graded.size > 10  # interpolated soft values along every edge
    nearest = np.asarray(rotate(mask, angle, interpolation="NEAREST"))
    assert np.all(np.isin(nearest, np.float32([0.0, 0.3, 1.0])))


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
