"""--augment strong: each transform keeps image and target aligned and target values exact."""

import numpy as np
import pytest
import tensorflow as tf

from mssoft.arrays.slices import SliceSet
from mssoft.nn.dataset import make_dataset
from mssoft.nn.strong_augment import (
    STRONG_RANGES,
    intensity,
    sample_strong,
    spatial_pair,
    strong_augment_pair,
)

B, H, W = 4, 40, 48


def pattern():
    """Blocks of 8 pixels: the image's one channel equals the target (1 on a checkerboard)."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    board = (((rows // 8) + (cols // 8)) % 2).astype(np.float32)
    board[:4] = 0  # a border row band: where 'outside the slice' is visible after zooming out
    target = np.stack([board * (0.3 + 0.7 * (k % 2)) for k in range(B)])[..., None]
    return target.copy(), target.copy()  # image, target


def identity_params(**changes):
    params = {
        "scale": tf.ones([B]),
        "flip": tf.ones([B]),
        "displacement": tf.zeros([B, H, W, 2]),
        "bias": tf.zeros([B, 5]),
        "gamma": tf.ones([B, 1]),
        "intensity_scale": tf.ones([B, 1]),
        "intensity_shift": tf.zeros([B, 1]),
        "blur_sigma": tf.zeros([B]),
        "noise_std": tf.zeros([B]),
        "noise": tf.zeros([B, H, W, 1]),
    }
    params.update({k: tf.constant(v, tf.float32) for k, v in changes.items()})
    return params


def check_aligned(image, target, original_target):
    image, target = np.asarray(image)[..., 0], np.asarray(target)[..., 0]
    # target values are exactly input values (or 0 from outside the slice)
    for k in range(B):
        assert set(np.unique(target[k])) <= set(np.unique(original_target[k])) | {0.0}
    # where the bilinear image is not in a transition, it agrees with the nearest target
    level = original_target.max(axis=(1, 2, 3))[:, None, None]
    clear = np.abs(image / level - 0.5) > 0.35
    agree = (image / level > 0.5) == (target / level > 0.5)
    assert clear.mean() > 0.5
    assert agree[clear].mean() > 0.99


def test_identity_parameters_change_nothing():
    image, target = pattern()
    params = identity_params()
    out_image, out_target = spatial_pair(image, target, params)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_target, target)
    np.testing.assert_allclose(intensity(image, params), image, atol=1e-5)


def test_flip_mirrors_the_left_right_axis_of_image_and_target():
    image, target = pattern()
    out_image, out_target = spatial_pair(image, target, identity_params(flip=[-1.0] * B))
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_target, target[:, ::-1])


@pytest.mark.parametrize("scale", [0.85, 1.15])
def test_scaling_keeps_image_and_target_aligned(scale):
    image, target = pattern()
    out_image, out_target = spatial_pair(image, target, identity_params(scale=[scale] * B))
    check_aligned(out_image, out_target, target)
    assert not np.array_equal(out_target, target)
    # the centre stays where it is; a zoom-in enlarges the blocks
    changed = np.mean(np.asarray(out_target) != target)
    assert changed > 0.05


def test_elastic_deformation_keeps_image_and_target_aligned():
    image, target = pattern()
    params = sample_strong(B, 1, H, W, tf.constant([3, 4], tf.int64))
    moved = identity_params()
    moved["displacement"] = params["displacement"]
    assert float(tf.reduce_max(tf.abs(params["displacement"]))) > 0.5
    out_image, out_target = spatial_pair(image, target, moved)
    check_aligned(out_image, out_target, target)
    assert not np.array_equal(out_target, target)


def test_full_strong_augmentation_keeps_targets_exact_and_background_zero():
    image, target = pattern()
    image = image + 1.0  # every pixel is brain
    image[:, :, :6] = 0.0  # background columns
    out_image, out_target = strong_augment_pair(image, target, tf.constant([1, 2], tf.int64))
    for k in range(B):
        assert set(np.unique(out_target[k])) <= set(np.unique(target[k])) | {0.0}
    # background (0 after the same spatial transform) stays 0 through the intensity transforms
    params = sample_strong(B, 1, H, W, tf.constant([1, 2], tf.int64))
    moved = np.asarray(spatial_pair(image, target, params)[0])
    assert np.any(moved == 0) and np.any(moved != 0)
    np.testing.assert_array_equal(np.asarray(out_image)[moved == 0], 0.0)
    assert not np.allclose(np.asarray(out_image)[moved != 0], moved[moved != 0], atol=1e-3)


@pytest.mark.parametrize(
    "name, value",
    [
        ("bias", [[0.3, -0.3, 0.2, 0.1, -0.2]] * B),
        ("gamma", [[1.5]] * B),
        ("intensity_scale", [[1.2]] * B),
        ("intensity_shift", [[0.3]] * B),
        ("blur_sigma", [1.0] * B),
    ],
)
def test_each_intensity_transform_changes_only_the_brain(name, value):
    image, _ = pattern()
    image = image + np.linspace(0.5, 1.0, W, dtype=np.float32)[None, None, :, None]
    image[:, :, :6] = 0.0
    out = np.asarray(intensity(image, identity_params(**{name: value})))
    assert np.all(out[image == 0] == 0)
    assert not np.allclose(out[image != 0], image[image != 0], atol=1e-3)


def test_noise_is_added_inside_the_brain_only():
    image, _ = pattern()
    image = image + 0.5
    image[:, :, :6] = 0.0
    noise = tf.random.stateless_normal([B, H, W, 1], seed=[5, 6])
    out = np.asarray(intensity(image, identity_params(noise_std=[0.1] * B, noise=noise)))
    assert np.all(out[image == 0] == 0)
    assert 0.05 < np.std(out - image) < 0.15


def test_sampling_is_seeded_and_within_the_ranges():
    a = sample_strong(64, 2, H, W, tf.constant([7, 8], tf.int64))
    b = sample_strong(64, 2, H, W, tf.constant([7, 8], tf.int64))
    c = sample_strong(64, 2, H, W, tf.constant([7, 9], tf.int64))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["scale"], c["scale"])
    low, high = STRONG_RANGES.scale
    assert low <= float(tf.reduce_min(a["scale"])) and float(tf.reduce_max(a["scale"])) <= high
    assert set(np.unique(a["flip"])) == {-1.0, 1.0}
    # control points within +-elastic_pixels; bicubic interpolation between them overshoots a bit
    assert float(tf.reduce_max(tf.abs(a["displacement"]))) <= 1.5 * STRONG_RANGES.elastic_pixels
    g_low, g_high = STRONG_RANGES.gamma
    assert g_low - 1e-6 <= float(tf.reduce_min(a["gamma"]))
    assert float(tf.reduce_max(a["gamma"])) <= g_high + 1e-6


def test_dataset_with_strong_augmentation_is_deterministic_and_exact():
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(6, 24, 24, 2)).astype(np.float32)]
    targets = [(rng.random((6, 24, 24, 1)) > 0.8).astype(np.float32) * 0.3]
    targets[0][:, 8:16, 8:16] = 1.0
    slices = SliceSet(images, targets, [np.arange(6)], ["s"], ["p"], [6], ("flair", "t2"), None)

    def batches():
        # the strong set alone (the paper's rotation resamples targets on its own terms)
        data = make_dataset(
            slices, np.arange(6), batch_size=3, training=True, seed=4, max_degrees=0, strong=True
        )
        return [(x.numpy(), y.numpy()) for x, y in data]

    first, second = batches(), batches()
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        assert set(np.unique(y1)) <= set(np.float32([0.0, 0.3, 1.0]))
