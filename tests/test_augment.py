import numpy as np
import pytest

from mssoft.arrays.rotation import rotate_pairs, rotate_slices, rotation_matrices
from mssoft.nn.augment import sample_angles


def rotate(batch, angles, *, interpolation="bilinear"):
    return rotate_slices(batch, angles, interpolation=interpolation)


def rotate_targets(targets, angles, *, interpolation="nearest"):
    return rotate_pairs(
        np.zeros_like(targets), targets, angles, target_interpolation=interpolation
    )[1]


def rotate_pair(images, targets, angles, *, target_interpolation="nearest"):
    return rotate_pairs(images, targets, angles, target_interpolation=target_interpolation)


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
    same_map = rotate(mask, angles, interpolation="nearest")
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
    t = rotation_matrices(np.array([37.0]), 11, 15)[0].ravel()
    cx, cy = 7.0, 5.0  # ((W - 1) / 2, (H - 1) / 2)
    assert t[0] * cx + t[1] * cy + t[2] == pytest.approx(cx, abs=1e-9)
    assert t[3] * cx + t[4] * cy + t[5] == pytest.approx(cy, abs=1e-9)


def _bilinear_reference(image, matrix):
    """Exact bilinear resampling of one (H, W) image at the output-to-input map, 0 outside."""
    h, w = image.shape
    rows, cols = np.indices((h, w), dtype=np.float64)
    sx = matrix[0, 0] * cols + matrix[0, 1] * rows + matrix[0, 2]
    sy = matrix[1, 0] * cols + matrix[1, 1] * rows + matrix[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    out = np.zeros((h, w))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            y, x = y0 + dy, x0 + dx
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            out += np.where(inside, wy * wx * image[y.clip(0, h - 1), x.clip(0, w - 1)], 0.0)
    return out


def test_bilinear_rotation_matches_exact_resampling_within_a_32nd_of_a_pixel():
    """OpenCV's weights sit on a 1/32-pixel grid: on a smooth image the error is that small."""
    rows, cols = np.indices((40, 52), dtype=np.float64)
    smooth = np.sin(rows / 6.0) + np.cos(cols / 9.0) + 0.05 * rows  # slope <= ~0.23 per pixel
    angles = np.array([4.7, -3.1, 0.0])
    got = rotate(np.repeat(smooth[None, ..., None], 3, axis=0), angles)[..., 0]
    for k, matrix in enumerate(rotation_matrices(angles, 40, 52)):
        want = _bilinear_reference(smooth, matrix)
        inner = (slice(3, -3), slice(3, -3))  # away from the border, where 0 is blended in
        np.testing.assert_allclose(got[k][inner], want[inner], atol=0.25 / 32)


@pytest.mark.parametrize("channels", [1, 3, 4, 6])
def test_every_channel_gets_the_same_rotation(channels):
    rng = np.random.default_rng(channels)
    base = rng.standard_normal((2, 23, 31)).astype(np.float32)
    stack = np.stack([base * (c + 1) for c in range(channels)], axis=-1)
    angles = np.array([3.3, -4.9])
    out = rotate(stack, angles)
    assert out.shape == stack.shape and out.dtype == np.float32
    for c in range(channels):
        np.testing.assert_allclose(out[..., c], out[..., 0] * (c + 1), rtol=1e-5, atol=1e-5)


def test_rotation_writes_into_a_zero_padded_batch():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((3, 21, 19, 2)).astype(np.float32)
    angles = np.array([2.0, -5.0, 0.5])
    padded = np.full((3, 32, 32, 2), 7.0, np.float32)  # stale values must not survive
    out = rotate_slices(images, angles, out=padded)
    assert out is padded
    np.testing.assert_array_equal(out[:, :21, :19], rotate_slices(images, angles))
    assert not out[:, 21:].any() and not out[:, :, 19:].any()
    with pytest.raises(ValueError, match="out"):
        rotate_slices(images, angles, out=np.zeros((3, 20, 32, 2), np.float32))
    with pytest.raises(ValueError, match="angles"):
        rotate_slices(images, angles[:2])
