"""``--augment strong``: intensity and spatial augmentation of training batches in ``tf.data``.

On top of the paper's rotation (:mod:`mssoft.nn.augment`), each slice of a batch draws its own
parameters (:func:`sample_strong`, from a stateless seed: the same seed gives the same batch) from
the ranges of :data:`STRONG_RANGES`, then:

1. **spatial**, image and target together (:func:`spatial_pair`): scaling about the slice centre,
   a left-right flip, and an elastic deformation (a random displacement on a coarse grid of
   control points, interpolated bicubically to every pixel). The image is resampled bilinearly;
   the target by **nearest neighbour**, so its values stay exactly those of the input (binary
   stays binary, soft values stay the rater's soft values). Points from outside the slice get 0.
2. **intensity**, image only, inside the brain (pixels where a channel is non-zero; the
   background stays 0) (:func:`intensity`): a smooth multiplicative bias field (exponential of a
   random quadratic polynomial), gamma on the slice's brain intensity range, a scale and shift per
   modality, a Gaussian blur, Gaussian noise.

Everything is vectorised over the batch (one resampling gather for the batch, one depthwise
convolution for every slice's own blur). Sampling is separate from applying, so a test can apply
a known transform.

Importing this module imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

__all__ = [
    "StrongRanges",
    "STRONG_RANGES",
    "sample_strong",
    "spatial_pair",
    "intensity",
    "strong_augment_pair",
]

#: Radius in pixels of the blur kernel (3 sigma at the largest blur).
_BLUR_RADIUS = 3


@dataclass(frozen=True)
class StrongRanges:
    """Ranges of the strong augmentation; each slice draws uniformly within them.

    Attributes
    ----------
    intensity_scale : (low, high)
        Factor on each modality's normalised intensities.
    intensity_shift : (low, high)
        Added to each modality's normalised intensities (units of the normalised scale, ~1 SD).
    gamma : (low, high)
        Exponent on each modality's brain intensities rescaled to [0, 1] within the slice
        (drawn log-uniformly).
    noise_std : (low, high)
        Standard deviation of additive Gaussian noise (normalised units).
    blur_sigma : (low, high)
        Gaussian blur sigma in pixels (0 = none).
    bias_strength : float
        Largest absolute coefficient of the log bias field's quadratic polynomial over the slice
        (coordinates in [-1, 1]); 0.3 gives a field of about 0.6-1.6 at the corners at most.
    scale : (low, high)
        Zoom factor about the slice centre (> 1 enlarges).
    flip_probability : float
        Probability of a left-right flip.
    elastic_pixels : float
        Largest displacement in pixels at each elastic control point (each slice draws its
        amplitude in [0, elastic_pixels]); the bicubic interpolation between control points
        overshoots it by up to about a third (about 5.5 pixels at most for 4).
    elastic_grid : int
        Control points along each side of the slice.
    """

    intensity_scale: tuple[float, float] = (0.8, 1.25)
    intensity_shift: tuple[float, float] = (-0.3, 0.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: tuple[float, float] = (0.0, 0.1)
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    bias_strength: float = 0.3
    scale: tuple[float, float] = (0.85, 1.15)
    flip_probability: float = 0.5
    elastic_pixels: float = 4.0
    elastic_grid: int = 5

    def record(self) -> dict[str, Any]:
        """JSON-ready ranges (for the run's ``config.json``)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: The ranges of ``--augment strong``.
STRONG_RANGES = StrongRanges()


def _uniform(shape: Any, seed: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=float(bounds[0]), maxval=float(bounds[1]), dtype=tf.float32
    )


def sample_strong(
    batch_size: Any,
    channels: int,
    height: Any,
    width: Any,
    seed: Any,
    ranges: StrongRanges = STRONG_RANGES,
) -> dict[str, tf.Tensor]:
    """Draw every slice's augmentation parameters from a stateless seed.

    Parameters
    ----------
    batch_size : int or scalar tensor
    channels : int
        Modalities per slice.
    height, width : int or scalar tensor
        Slice size in pixels.
    seed : tensor of shape (2,), int
        The same seed gives the same parameters.
    ranges : StrongRanges

    Returns
    -------
    dict of str to tf.Tensor
        ``scale`` (B,), ``flip`` (B,) of +-1, ``displacement`` (B, H, W, 2) in pixels (row,
        column), ``bias`` (B, 5) log-field coefficients, ``gamma`` (B, C), ``intensity_scale``
        (B, C), ``intensity_shift`` (B, C), ``blur_sigma`` (B,), ``noise_std`` (B,),
        ``noise`` (B, H, W, C) standard normal.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=11)
    b = tf.reshape(tf.cast(batch_size, tf.int32), [1])
    bc = tf.concat([b, [channels]], axis=0)
    grid = int(ranges.elastic_grid)
    amplitude = _uniform(b, seeds[0], (0.0, ranges.elastic_pixels))
    control = _uniform(tf.concat([b, [grid, grid, 2]], 0), seeds[1], (-1.0, 1.0))
    control = control * amplitude[:, None, None, None]
    displacement = tf.image.resize(control, tf.stack([height, width]), method="bicubic")
    log_gamma = _uniform(bc, seeds[2], tuple(math.log(g) for g in ranges.gamma))
    flips = tf.random.stateless_uniform(b, seed=seeds[3]) < ranges.flip_probability
    return {
        "scale": _uniform(b, seeds[4], ranges.scale),
        "flip": tf.where(flips, -1.0, 1.0),
        "displacement": displacement,
        "bias": _uniform(
            tf.concat([b, [5]], 0), seeds[5], (-ranges.bias_strength, ranges.bias_strength)
        ),
        "gamma": tf.exp(log_gamma),
        "intensity_scale": _uniform(bc, seeds[6], ranges.intensity_scale),
        "intensity_shift": _uniform(bc, seeds[7], ranges.intensity_shift),
        "blur_sigma": _uniform(b, seeds[8], ranges.blur_sigma),
        "noise_std": _uniform(b, seeds[9], ranges.noise_std),
        "noise": tf.random.stateless_normal(
            tf.concat([b, tf.stack([height, width]), [channels]], 0), seed=seeds[10]
        ),
    }


def _gather(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """``images[b, rows, cols]`` for integer (B, H, W) positions in a 1-pixel zero-padded frame."""
    shape = tf.shape(images)
    height, width = shape[1] + 2, shape[2] + 2
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    flat = tf.reshape(padded, tf.stack([shape[0], height * width, shape[3]]))
    rows = tf.clip_by_value(rows + 1, 0, height - 1)  # anything outside lands on the zero frame
    cols = tf.clip_by_value(cols + 1, 0, width - 1)
    index = tf.reshape(rows * width + cols, tf.stack([shape[0], -1]))
    return tf.reshape(tf.gather(flat, index, batch_dims=1), shape)


def _resample(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, nearest: bool) -> tf.Tensor:
    """Sample (B, H, W, C) at float (B, H, W) positions; 0 outside the slice."""
    if nearest:
        return _gather(
            images, tf.cast(tf.floor(rows + 0.5), tf.int32), tf.cast(tf.floor(cols + 0.5), tf.int32)
        )
    r0, c0 = tf.floor(rows), tf.floor(cols)
    wr, wc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    top = _gather(images, r0, c0) * (1 - wc) + _gather(images, r0, c0 + 1) * wc
    bottom = _gather(images, r0 + 1, c0) * (1 - wc) + _gather(images, r0 + 1, c0 + 1) * wc
    return top * (1 - wr) + bottom * wr


def spatial_pair(
    images: Any, targets: Any, params: dict[str, tf.Tensor]
) -> tuple[tf.Tensor, tf.Tensor]:
    """Scale, flip left-right and deform images and targets with the same per-slice transform.

    Parameters
    ----------
    images : tensor of shape (B, H, W, C)
        Axial slices; axis 1 runs left-right (RAS ``X``).
    targets : tensor of shape (B, H, W, 1)
    params : dict
        ``scale`` (B,), ``flip`` (B,) of +-1, ``displacement`` (B, H, W, 2) in pixels
        (:func:`sample_strong`).

    Returns
    -------
    images, targets : tf.Tensor, float32, shapes as given
        Output pixel ``(r, c)`` takes the input at
        ``(cr + flip (r - cr) / scale + d_r, cc + (c - cc) / scale + d_c)`` (``cr, cc`` the slice
        centre): bilinear for images, nearest neighbour for targets; 0 outside the slice.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    targets = tf.convert_to_tensor(targets, tf.float32)
    shape = tf.shape(images)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    rr, cc = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    centre_r, centre_c = (h - 1) / 2, (w - 1) / 2
    scale = params["scale"][:, None, None]
    flip = params["flip"][:, None, None]
    rows = centre_r + flip * (rr[None] - centre_r) / scale + params["displacement"][..., 0]
    cols = centre_c + (cc[None] - centre_c) / scale + params["displacement"][..., 1]
    out_images = _resample(images, rows, cols, nearest=False)
    out_targets = _resample(targets, rows, cols, nearest=True)
    out_images.set_shape(images.shape)
    out_targets.set_shape(targets.shape)
    return out_images, out_targets


def _blur(images: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Gaussian blur with each slice's own sigma (B,), one depthwise convolution per axis."""
    shape = tf.shape(images)
    offsets = tf.range(-_BLUR_RADIUS, _BLUR_RADIUS + 1, dtype=tf.float32)
    sigma = tf.maximum(sigma, 1e-3)[:, None]
    kernel = tf.exp(-0.5 * tf.square(offsets[None] / sigma))
    kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)  # (B, K)
    kernel = tf.repeat(kernel, shape[3], axis=0)  # (B*C, K), slice-major as the channels below
    stacked = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), tf.stack([1, shape[1], shape[2], -1]))
    along_rows = tf.transpose(kernel)[:, None, :, None]  # (K, 1, B*C, 1)
    along_cols = tf.transpose(kernel)[None, :, :, None]  # (1, K, B*C, 1)
    out = tf.nn.depthwise_conv2d(stacked, along_rows, [1, 1, 1, 1], "SAME")
    out = tf.nn.depthwise_conv2d(out, along_cols, [1, 1, 1, 1], "SAME")
    out = tf.reshape(out, tf.stack([shape[1], shape[2], shape[0], shape[3]]))
    return tf.transpose(out, [2, 0, 1, 3])


def intensity(images: Any, params: dict[str, tf.Tensor]) -> tf.Tensor:
    """Bias field, gamma, scale and shift, blur and noise inside the brain; background stays 0.

    Parameters
    ----------
    images : tensor of shape (B, H, W, C)
        Normalised slices, 0 outside the brain.
    params : dict
        ``bias`` (B, 5), ``gamma``, ``intensity_scale``, ``intensity_shift`` (B, C),
        ``blur_sigma``, ``noise_std`` (B,), ``noise`` (B, H, W, C) (:func:`sample_strong`).

    Returns
    -------
    tf.Tensor of float32, shape (B, H, W, C)
        0 wherever every channel of the input is 0.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    brain = tf.cast(tf.reduce_any(tf.not_equal(images, 0.0), axis=-1, keepdims=True), tf.float32)
    inside = brain > 0
    big = tf.constant(3.0e38, tf.float32)
    low = tf.reduce_min(tf.where(inside, images, big), axis=[1, 2], keepdims=True)
    high = tf.reduce_max(tf.where(inside, images, -big), axis=[1, 2], keepdims=True)
    has_brain = tf.reduce_any(inside, axis=[1, 2], keepdims=True)
    low = tf.where(has_brain, low, 0.0)
    span = tf.where(has_brain, tf.maximum(high - low, 1e-6), 1.0)
    # smooth multiplicative bias field on the intensities above the slice's brain minimum
    y = tf.linspace(-1.0, 1.0, shape[1])[:, None]
    x = tf.linspace(-1.0, 1.0, shape[2])[None, :]
    basis = tf.stack([y + 0 * x, x + 0 * y, y * y + 0 * x, x * x + 0 * y, y * x])  # (5, H, W)
    log_field = tf.einsum("bk,khw->bhw", params["bias"], basis)[..., None]
    unit = tf.clip_by_value((images - low) / span, 0.0, 1.0)
    unit = tf.pow(unit + 1e-12, params["gamma"][:, None, None, :])
    out = low + span * unit * tf.exp(log_field)
    out = out * params["intensity_scale"][:, None, None, :]
    out = out + params["intensity_shift"][:, None, None, :]
    out = _blur(out * brain, params["blur_sigma"])
    out = out + params["noise"] * params["noise_std"][:, None, None, None]
    return out * brain


def strong_augment_pair(
    images: Any, targets: Any, seed: Any, ranges: StrongRanges = STRONG_RANGES
) -> tuple[tf.Tensor, tf.Tensor]:
    """Draw and apply the strong augmentation to a batch (spatial, then intensity).

    Parameters
    ----------
    images : tensor of shape (B, H, W, C)
    targets : tensor of shape (B, H, W, 1)
    seed : tensor of shape (2,), int
    ranges : StrongRanges

    Returns
    -------
    images, targets : tf.Tensor
        Same shapes, float32; target values are a subset of the input's values and 0.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    params = sample_strong(shape[0], images.shape[-1], shape[1], shape[2], seed, ranges)
    images, targets = spatial_pair(images, targets, params)
    return intensity(images, params), targets
