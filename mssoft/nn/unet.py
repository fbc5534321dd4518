"""The 2D U-Net of the paper (Fig. 3), as a functional Keras model of built-in layers only.

The model holds no custom layer, so a saved ``model.keras`` loads with plain
``keras.saving.load_model(path, compile=False)`` in a process that never imports mssoft (the
compiled loss and metric, :mod:`mssoft.nn.losses`, and the optimizer's learning-rate warm-up,
:mod:`mssoft.nn.warmup`, are registered once mssoft's modules are imported). The price: the
slice height and width must be multiples of :func:`input_multiple` ``(depth) = 2 ** depth``. The
callers pad: training batches (:func:`mssoft.nn.dataset.make_dataset`) and whole scans
(:func:`mssoft.nn.inference.predict_volume`) are zero-padded at the end of each axis and the
probabilities cropped back.

Importing this module imports Keras (and TensorFlow); ``import mssoft`` does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras

import mssoft.nn.warmup  # noqa: F401  (registers the learning-rate schedule of saved models)
from mssoft.choices import NORMALIZATIONS
from mssoft.errors import ConfigError

__all__ = ["build_unet", "input_multiple"]


def input_multiple(depth: int) -> int:
    """What the slice height and width of a U-Net of ``depth`` poolings must be multiples of.

    Parameters
    ----------
    depth : int
        Number of 2x2 poolings (>= 1).

    Returns
    -------
    int
        ``2 ** depth`` (16 for the default depth 4).
    """
    return 2 ** _check_int("depth", depth, 1)


def _conv_pair(x: Any, filters: int, prefix: str, normalization: str = "none") -> Any:
    """Two 3x3 convolutions with ReLU ('same' padding), named ``<prefix>_conv1`` and ``_conv2``.

    With ``normalization="batch"`` each convolution (without bias) is followed by a batch
    normalisation ``<prefix>_norm{i}`` and then the ReLU ``<prefix>_relu{i}``.
    """
    for i in (1, 2):
        if normalization == "batch":
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
                name=f"{prefix}_conv{i}",
            )(x)
            x = keras.layers.BatchNormalization(name=f"{prefix}_norm{i}")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu{i}")(x)
        else:
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer="he_normal",
                name=f"{prefix}_conv{i}",
            )(x)
    return x


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"Invalid value for `{name}`. Expected an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return value


def build_unet(
    input_shape: Sequence[int | None],
    *,
    base_filters: int = 32,
    depth: int = 4,
    dropout: float = 0.0,
    name: str = "unet",
    output_bias: float = 0.0,
    normalization: str = "none",
) -> keras.Model:
    """Build the 2D U-Net of Kats et al. (Fig. 3) with a sigmoid lesion-probability head.

    Contracting path: ``depth`` levels of two 3x3 conv + ReLU and a 2x2 max-pooling; a bottleneck
    of two 3x3 convs; expansive path: per level a 2x2 stride-2 transposed convolution,
    concatenation with the skip connection and two 3x3 convs; then a 1x1 convolution with sigmoid.
    Level ``k`` (1-based) has ``base_filters * 2 ** (k - 1)`` filters, the bottleneck
    ``base_filters * 2 ** depth``. Only built-in Keras layers: the slice height and width must
    be multiples of ``2 ** depth`` (:func:`input_multiple`); zero-pad other slices at the end of
    each axis and crop the output back (:func:`mssoft.nn.inference.predict_volume` does).

    Layers are named ``enc{k}_conv{1,2}``, ``enc{k}_pool``, ``bottleneck_conv{1,2}``,
    ``dec{k}_up``, ``dec{k}_concat``, ``dec{k}_conv{1,2}`` and ``head``. The head (1x1
    convolution and sigmoid) is float32 under any mixed-precision policy, so the output is always
    float32.

    Parameters
    ----------
    input_shape : sequence of 3 ints or None
        ``(H, W, C)``; ``H`` and ``W`` are None (any multiple of ``2 ** depth``, the usual choice
        for a model that is saved) or multiples of ``2 ** depth``; ``C`` (number of modalities)
        must be given.
    base_filters : int
        Filters of the first level, >= 1.
    depth : int
        Number of poolings, >= 1.
    dropout : float
        Dropout rate before the bottleneck convs, in [0, 1); 0 adds no dropout layer.
    name : str
        Model name.
    output_bias : float
        Initial bias of the head's 1x1 convolution (a logit). 0 starts every pixel at probability
        0.5; ``log(p / (1 - p))`` starts it at the lesion prior ``p``, which keeps the first Dice
        steps from driving the whole output into the saturated, all-zero region of the sigmoid
        (see :func:`mssoft.nn.warmup.prior_logit`).
    normalization : {"none", "batch"}
        "none" is the paper's U-Net; "batch" adds batch normalisation after every 3x3 convolution.

    Returns
    -------
    keras.Model
        Input ``(batch, H, W, C)`` float32 (z-scored slices, ``H`` and ``W`` multiples of
        ``2 ** depth``), output ``(batch, H, W, 1)`` float32 probabilities.

    Raises
    ------
    ConfigError
        Invalid shape (a fixed side that is not a multiple of ``2 ** depth``), width, depth or
        dropout.

    Examples
    --------
    >>> model = build_unet((None, None, 4), base_filters=4, depth=2)
    >>> model.output_shape
    (None, None, None, 1)
    """
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ConfigError(f"Invalid value for `input_shape`. Expected (H, W, C). Received: {shape}")
    _check_int("channels", shape[2], 1)
    _check_int("base_filters", base_filters, 1)
    multiple = input_multiple(depth)
    for size in shape[:2]:
        if size is not None and _check_int("input_shape", size, 1) % multiple:
            raise ConfigError(
                f"Invalid value for `input_shape`: {shape}; a fixed height or width must be a "
                f"multiple of 2 ** depth = {multiple} (or None)"
            )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(
            f"Invalid value for `dropout`. Expected a float in [0, 1). Received: dropout={dropout}"
        )
    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"Invalid value for `--normalization`. Expected one of {', '.join(NORMALIZATIONS)}. "
            f"Received: {normalization!r}"
        )
    if not math.isfinite(output_bias):
        raise ConfigError(
            f"Invalid value for `output_bias`. Expected a finite float. Received: {output_bias}"
        )

    inputs = keras.Input(shape=shape, name="slices")
    x = inputs

    # === Contracting path ===
    skips = []
    for level in range(1, depth + 1):
        x = _conv_pair(x, base_filters * 2 ** (level - 1), f"enc{level}", normalization)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)

    # === Bottleneck ===
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)
    x = _conv_pair(x, base_filters * 2**depth, "bottleneck", normalization)

    # === Expansive path ===
    for level in range(depth, 0, -1):
        filters = base_filters * 2 ** (level - 1)
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"dec{level}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([skips[level - 1], x])
        x = _conv_pair(x, filters, f"dec{level}", normalization)

    # === Head (float32 under mixed precision) ===
    outputs = keras.layers.Conv2D(
        1,
        1,
        activation="sigmoid",
        dtype="float32",
        bias_initializer=keras.initializers.Constant(float(output_bias)),
        name="head",
    )(x)
    return keras.Model(inputs, outputs, name=name)
