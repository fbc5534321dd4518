"""A kept compiled model trains as a fresh one: same starting state, same trained weights."""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mssoft.nn.model_reuse import keep_compiled_models, kept_or_built
from mssoft.workflows.fit import build_model
from mssoft.workflows.settings import TrainConfig

#: Largest weight difference allowed between a kept and a fresh model after the same training:
#: the same graph on the same values (none was seen; oneDNN may only reorder a reduction).
WEIGHT_TOLERANCE = 1e-6


def _config(base_filters=4):
    return TrainConfig(data=Path("."), out=Path("."), base_filters=base_filters, depth=2)


def _batches(seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(12, 16, 16, 1)).astype(np.float32)
    targets = (images > 1.0).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)
    options = tf.data.Options()
    options.autotune.enabled = False  # no tuning thread to wait for when fit drops it
    return data.with_options(options)


def _builder(seed, config, prior=0.05):
    def build():
        keras.utils.set_random_seed(seed)
        return build_model(config, 1, lesion_prior=prior, steps_per_epoch=3)

    return build


def _train(model, seed):
    model.fit(_batches(seed), epochs=2, verbose=0, shuffle=False)
    return [w.numpy() for w in model.weights]


def test_a_kept_model_trains_to_the_weights_of_a_fresh_one():
    config = _config()
    fresh = _train(_builder(2, config, prior=0.1)(), seed=20)
    with keep_compiled_models():
        first = kept_or_built(_builder(1, config), key="unet")
        _train(first, seed=10)  # trained: weights and Adam moments far from a new model's
        again = kept_or_built(_builder(2, config, prior=0.1), key="unet")
        assert again is first
        assert int(again.optimizer.iterations.numpy()) == 0
        reused = _train(again, seed=20)
    assert len(reused) == len(fresh)
    for a, b in zip(reused, fresh, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_TOLERANCE)


def test_only_the_same_key_and_variables_inside_the_context_are_reused():
    config = _config()
    outside = kept_or_built(_builder(0, config), key="unet")
    assert kept_or_built(_builder(0, config), key="unet") is not outside
    with keep_compiled_models():
        first = kept_or_built(_builder(0, config), key="unet")
        _train(first, seed=0)
        assert kept_or_built(_builder(0, config), key=None) is not first
        other = kept_or_built(_builder(0, config), key="other")
        assert other is not first
        _train(other, seed=0)
        # the same key but other variables (a misuse of the key): a new model, kept instead
        wider = kept_or_built(_builder(0, _config(base_filters=8)), key="other")
        assert wider is not other
        assert wider.count_params() > other.count_params()
    with keep_compiled_models():  # a new context keeps nothing of the last one
        assert kept_or_built(_builder(0, config), key="other") is not other


def test_a_context_inside_another_shares_its_kept_model():
    """As ``mssoft cv``'s run_cells, called once per cell inside an outer context."""
    config = _config()
    with keep_compiled_models():
        with keep_compiled_models():
            first = kept_or_built(_builder(0, config), key="unet")
            _train(first, seed=0)
        with keep_compiled_models():
            assert kept_or_built(_builder(1, config), key="unet") is first


def test_a_kept_model_that_never_trained_is_replaced():
    """Its optimizer has no moments yet: the variables differ, so the new model is trained."""
    config = _config()
    with keep_compiled_models():
        untrained = kept_or_built(_builder(0, config), key="unet")
        assert kept_or_built(_builder(0, config), key="unet") is not untrained
