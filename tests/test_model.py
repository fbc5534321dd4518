import keras
import numpy as np
import pytest

from mssoft.arrays.slices import pad_slices
from mssoft.errors import ConfigError
from mssoft.nn.unet import build_unet, input_multiple


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(36, 20), (32, 32), (4, 48)])
def test_any_multiple_of_the_slice_size_and_channel_count(channels, size):
    model = build_unet((None, None, channels), base_filters=4, depth=2)
    x = np.random.default_rng(0).normal(size=(2, *size, channels)).astype(np.float32)
    y = model.predict(x, verbose=0)  # shape (2, H, W, 1)
    assert y.shape == (2, *size, 1)
    assert y.dtype == np.float32
    assert np.all((y >= 0) & (y <= 1))


def test_fixed_input_size_and_layer_names_and_only_built_in_layers():
    model = build_unet((24, 32, 2), base_filters=4, depth=3)
    assert model.output_shape == (None, 24, 32, 1)
    names = [layer.name for layer in model.layers]
    for name in [
        "enc1_conv1",
        "enc3_pool",
        "bottleneck_conv2",
        "dec3_up",
        "dec1_concat",
        "dec1_conv2",
        "head",
    ]:
        assert name in names
    assert "pad" not in names and "crop" not in names
    # Level k has base * 2**(k-1) filters, the bottleneck base * 2**depth.
    assert model.get_layer("enc2_conv1").filters == 8
    assert model.get_layer("bottleneck_conv1").filters == 32
    assert model.get_layer("dec1_up").strides == (2, 2)
    modules = {type(layer).__module__.split(".")[0] for layer in model.layers}
    assert modules == {"keras"}, modules


def test_input_multiple_and_fixed_sizes_that_are_not_multiples():
    assert [input_multiple(d) for d in (1, 2, 4)] == [2, 4, 16]
    with pytest.raises(ConfigError, match="multiple of 2 \\*\\* depth = 8"):
        build_unet((20, 24, 2), base_filters=4, depth=3)
    with pytest.raises(ConfigError, match="depth"):
        input_multiple(0)


def test_pad_slices_pads_at_the_end_and_keeps_multiples_as_they_are():
    x = np.random.default_rng(1).normal(size=(1, 7, 9, 2)).astype(np.float32)
    padded = pad_slices(x, 4)
    assert padded.shape == (1, 8, 12, 2)
    assert np.all(padded[:, 7:] == 0) and np.all(padded[:, :, 9:] == 0)
    np.testing.assert_array_equal(padded[:, :7, :9], x)
    assert pad_slices(padded, 4) is padded
    assert pad_slices(x, 1) is x
    with pytest.raises(ValueError, match="multiple"):
        pad_slices(x, 0)


def test_head_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_unet((None, None, 2), base_filters=4, depth=2)
        assert model.get_layer("enc1_conv1").compute_dtype == "bfloat16"
        y = model(np.zeros((1, 8, 12, 2), np.float32))
        assert y.dtype == "float32" and tuple(y.shape) == (1, 8, 12, 1)
    finally:
        keras.config.set_dtype_policy(previous)


def test_save_and_load_keep_outputs(tmp_path):
    model = build_unet((None, None, 3), base_filters=4, depth=2, dropout=0.1)
    x = np.random.default_rng(2).normal(size=(1, 12, 20, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_models_of_earlier_versions_with_padding_layers_still_load(tmp_path):
    from mssoft.nn.inference import predict_volume
    from mssoft.nn.legacy_layers import CropToReference, PadToMultiple
    from mssoft.nn.model_files import load_run_model

    inputs = keras.Input((None, None, 2))
    x = PadToMultiple(4, name="pad")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.UpSampling2D(2)(x)
    x = CropToReference(name="crop")(x, inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    old = keras.Model(inputs, outputs)
    (tmp_path / "run").mkdir()
    old.save(tmp_path / "run" / "model.keras")
    loaded = load_run_model(tmp_path / "run")
    image = np.random.default_rng(3).uniform(1, 2, size=(7, 9, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(
        predict_volume(loaded, image), predict_volume(old, image, multiple=1), atol=1e-6
    )


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((None, None), {}, "input_shape"),
        ((None, None, None), {}, "channels"),
        ((None, None, 0), {}, "channels"),
        ((None, None, 1), {"depth": 0}, "depth"),
        ((None, None, 1), {"base_filters": 2.5}, "base_filters"),
        ((None, None, 1), {"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_arguments(shape, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_unet(shape, **kwargs)


def test_make_dataset_pads_batches_to_the_multiple_after_rotation():
    from mssoft.arrays.slices import SliceSet
    from mssoft.nn.dataset import make_dataset

    rng = np.random.default_rng(4)
    images = [rng.normal(size=(3, 10, 13, 2)).astype(np.float32)]
    targets = [(rng.uniform(size=(3, 10, 13, 1)) > 0.5).astype(np.float32)]
    slices = SliceSet(images, targets, [np.arange(3)], ["s"], ["p"], [3], ("flair", "t2"), None)
    for training in (False, True):
        batches = list(
            make_dataset(slices, np.arange(3), batch_size=2, training=training, multiple=8)
        )
        x, y = (np.concatenate([np.asarray(b[i]) for b in batches]) for i in (0, 1))
        assert x.shape == (3, 16, 16, 2) and y.shape == (3, 16, 16, 1)
        assert np.all(x[:, 10:] == 0) and np.all(x[:, :, 13:] == 0) and np.all(y[:, 10:] == 0)
        if not training:
            np.testing.assert_array_equal(x[:, :10, :13], images[0])
    with pytest.raises(ConfigError, match="multiple"):
        make_dataset(slices, np.arange(3), batch_size=2, training=False, multiple=0)
