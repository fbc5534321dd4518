import keras
import numpy as np
import pytest
import tensorflow as tf

from mssoft.errors import ConfigError
from mssoft.nn.losses import BinarisedDice, SoftDiceLoss


def eq3(t, p, eps=1e-6):
    """Paper Eq. 3 per sample, in NumPy: -sum(T P) / (0.5 sum(P) + 0.5 sum(T) + eps)."""
    axes = tuple(range(1, t.ndim))
    return -(t * p).sum(axes) / (0.5 * p.sum(axes) + 0.5 * t.sum(axes) + eps)


def test_hand_computed_value():
    # T = [1, 1, 0, 0], P = [1, .5, .5, 0]: sum(TP) = 1.5, sum(P) = 2, sum(T) = 2 -> -1.5 / 2.
    t = np.array([1, 1, 0, 0], np.float32).reshape(1, 2, 2, 1)
    p = np.array([1, 0.5, 0.5, 0], np.float32).reshape(1, 2, 2, 1)
    assert float(SoftDiceLoss(eps=1e-9)(t, p)) == pytest.approx(-0.75, abs=1e-6)


@pytest.mark.parametrize("binary", [False, True])
def test_matches_numpy_reference_per_sample(binary):
    rng = np.random.default_rng(0)
    t = rng.uniform(size=(5, 12, 10, 1)).astype(np.float32)  # shape (batch, H, W, 1)
    if binary:
        t = (t > 0.7).astype(np.float32)
    p = rng.uniform(size=t.shape).astype(np.float32)
    per_sample = SoftDiceLoss(reduction=None)(t, p)
    assert tuple(per_sample.shape) == (5,)
    np.testing.assert_allclose(np.asarray(per_sample), eq3(t, p), rtol=1e-5)
    # The default reduction averages the per-sample values.
    assert float(SoftDiceLoss()(t, p)) == pytest.approx(eq3(t, p).mean(), rel=1e-5)


def test_binary_target_gives_plain_dice():
    rng = np.random.default_rng(1)
    t = (rng.uniform(size=(3, 8, 8, 1)) > 0.6).astype(np.float32)
    p = (rng.uniform(size=t.shape) > 0.5).astype(np.float32)
    dice = 2 * (t * p).sum((1, 2, 3)) / (t.sum((1, 2, 3)) + p.sum((1, 2, 3)))
    np.testing.assert_allclose(np.asarray(SoftDiceLoss(reduction=None)(t, p)), -dice, rtol=1e-5)


def test_gradient_finite_at_all_zero_inputs():
    t = tf.zeros((2, 4, 4, 1))
    p = tf.zeros((2, 4, 4, 1))
    with tf.GradientTape() as tape:
        tape.watch(p)
        loss = SoftDiceLoss()(t, p)
    grad = tape.gradient(loss, p).numpy()
    assert float(loss) == 0.0
    assert np.all(np.isfinite(grad))


def test_invalid_eps():
    with pytest.raises(ConfigError, match="eps"):
        SoftDiceLoss(eps=0)


def test_loss_serialisation_round_trip():
    loss = SoftDiceLoss(eps=1e-3, name="sd")
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"] == "mssoft>SoftDiceLoss"
    again = keras.saving.deserialize_keras_object(config)
    assert isinstance(again, SoftDiceLoss) and again.eps == 1e-3 and again.name == "sd"
    assert again.get_config() == loss.get_config()


def test_binarised_dice_matches_numpy_over_batches():
    rng = np.random.default_rng(2)
    metric = BinarisedDice()
    tp = fp = fn = 0
    for _ in range(3):
        t = rng.choice([0.0, 0.3, 1.0], size=(2, 6, 6, 1)).astype(np.float32)
        p = rng.uniform(size=t.shape).astype(np.float32)
        metric.update_state(t, p)
        truth, pred = t >= 0.5, p >= 0.5  # the ring (0.3) is not lesion
        tp += np.sum(truth & pred)
        fp += np.sum(~truth & pred)
        fn += np.sum(truth & ~pred)
    assert float(metric.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 1.0  # nothing seen: empty reference and prediction


def test_binarised_dice_empty_and_disjoint():
    metric = BinarisedDice()
    zeros = np.zeros((1, 4, 4, 1), np.float32)
    metric.update_state(zeros, zeros)
    assert float(metric.result()) == 1.0
    ones = np.ones_like(zeros)
    metric.update_state(ones, zeros)
    assert float(metric.result()) == 0.0


def test_binarised_dice_config_and_validation():
    metric = BinarisedDice(threshold=0.4, target_threshold=1.0, name="d")
    config = keras.saving.serialize_keras_object(metric)
    assert config["registered_name"] == "mssoft>BinarisedDice"
    again = keras.saving.deserialize_keras_object(config)
    assert again.threshold == 0.4 and again.target_threshold == 1.0
    with pytest.raises(ConfigError, match="threshold"):
        BinarisedDice(threshold=1.0)
    with pytest.raises(ConfigError, match="target_threshold"):
        BinarisedDice(target_threshold=0.0)
