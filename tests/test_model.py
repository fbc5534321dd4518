import keras
import numpy as np
import pytest

from mssoft.errors import ConfigError
from mssoft.nn.unet import CropToReference, PadToMultiple, build_unet


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(33, 17), (32, 32), (5, 47)])
def test_any_slice_size_and_channel_count(channels, size):
    model = build_unet((None, None, channels), base_filters=4, depth=2)
    x = np.random.default_rng(0).normal(size=(2, *size, channels)).astype(np.float32)
    y = model.predict(x, verbose=0)  # shape (2, H, W, 1)
    assert y.shape == (2, *size, 1)
    assert y.dtype == np.float32
    assert np.all((y >= 0) & (y <= 1))


def test_fixed_input_size_and_layer_names():
    model = build_unet((20, 28, 2), base_filters=4, depth=3)
    assert model.output_shape == (None, 20, 28, 1)
    names = [layer.name for layer in model.layers]
    for name in [
        "pad",
        "enc1_conv1",
        "enc3_pool",
        "bottleneck_conv2",
        "dec3_up",
        "dec1_concat",
        "dec1_conv2",
        "crop",
        "head",
    ]:
        assert name in names
    assert model.get_layer("pad").compute_output_shape((None, 20, 28, 2)) == (None, 24, 32, 2)
    # Level k has base * 2**(k-1) filters, the bottleneck base * 2**depth.
    assert model.get_layer("enc2_conv1").filters == 8
    assert model.get_layer("bottleneck_conv1").filters == 32
    assert model.get_layer("dec1_up").strides == (2, 2)


def test_pad_and_crop_are_inverse():
    x = np.random.default_rng(1).normal(size=(1, 7, 9, 2)).astype(np.float32)
    padded = np.asarray(PadToMultiple(4)(x))
    assert padded.shape == (1, 8, 12, 2)
    assert np.all(padded[:, 7:] == 0) and np.all(padded[:, :, 9:] == 0)
    np.testing.assert_array_equal(np.asarray(CropToReference()(padded, x)), x)


def test_head_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_unet((None, None, 2), base_filters=4, depth=2)
        assert model.get_layer("enc1_conv1").compute_dtype == "bfloat16"
        y = model(np.zeros((1, 9, 11, 2), np.float32))
        assert y.dtype == "float32" and tuple(y.shape) == (1, 9, 11, 1)
    finally:
        keras.config.set_dtype_policy(previous)


def test_save_and_load_keep_outputs(tmp_path):
    model = build_unet((None, None, 3), base_filters=4, depth=2, dropout=0.1)
    x = np.random.default_rng(2).normal(size=(1, 13, 19, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


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
