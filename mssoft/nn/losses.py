"""Training objective and training-time metric: the soft Dice loss (paper Eq. 3) and binarised Dice.

Both are Keras objects registered as ``mssoft>SoftDiceLoss`` and ``mssoft>BinarisedDice`` so that
a saved ``model.keras`` loads in a fresh process after ``import mssoft.nn.losses``, without
``custom_objects``. Importing this module imports Keras (and TensorFlow); ``import mssoft`` does
not.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

import mssoft.nn.warmup  # noqa: F401  (registers the learning-rate warm-up of a compiled model)
from mssoft.errors import ConfigError

__all__ = ["SoftDiceLoss", "BinarisedDice", "soft_dice_loss"]


def _reduce_axes(tensor: Any) -> list[int]:
    """Every axis but the batch axis."""
    return list(range(1, len(tensor.shape)))


def soft_dice_loss(y_true: Any, y_pred: Any, eps: float = 1e-6) -> Any:
    """Per-sample soft Dice loss ``-sum(T * P) / (0.5 * sum(P) + 0.5 * sum(T) + eps)``.

    Parameters
    ----------
    y_true : tensor of shape (batch, H, W, 1) or (batch, ...)
        Soft target ``T`` in [0, 1].
    y_pred : tensor of the same shape
        Predicted probabilities ``P`` in [0, 1].
    eps : float
        Added to the denominator so that an empty target with an empty prediction gives 0 (and a
        finite gradient) instead of 0/0.

    Returns
    -------
    tensor of shape (batch,)
        One loss value per sample, in [-1, 0] (-1 is a perfect match).
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    axes = _reduce_axes(y_pred)
    overlap = ops.sum(y_true * y_pred, axis=axes)
    size = 0.5 * ops.sum(y_pred, axis=axes) + 0.5 * ops.sum(y_true, axis=axes)
    return -overlap / (size + eps)


@keras.saving.register_keras_serializable(package="mssoft")
class SoftDiceLoss(keras.losses.Loss):
    """Soft Dice loss of Kats et al. (ISBI 2019), Eq. 3, computed per slice.

    For a soft target ``T`` (the soft mask) and predicted probabilities ``P``, summing over the
    pixels of each slice::

        loss = -sum(T * P) / (0.5 * sum(P) + 0.5 * sum(T) + eps)

    With a binary ``T`` this is the plain Dice loss (paper Eq. 2, up to the sign convention:
    ``-Dice`` rather than ``1 - Dice``), so the binary baseline and the soft-label method share one
    loss. The value lies in [-1, 0]; -1 means a perfect match. A slice with an empty target has
    loss 0 whatever the prediction (training data keeps only slices with a lesion).

    ``call`` returns one value per sample, shape ``(batch,)``, which Keras then averages: a loss
    that returned a scalar would be scaled wrongly by ``tf.distribute`` (gradients multiplied by
    the number of replicas under ``MirroredStrategy``).

    Parameters
    ----------
    eps : float
        Stabiliser added to the denominator, > 0. It only matters for (near) empty slices: with
        any lesion pixel in ``T`` the denominator is at least 0.5.
    name, reduction, dtype
        As for :class:`keras.losses.Loss`. ``dtype`` defaults to ``keras.config.floatx()``
        (float32), also under a mixed-precision policy.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.ones((1, 2, 2, 1), "float32")
    >>> float(SoftDiceLoss(reduction=None)(t, t)[0])  # doctest: +ELLIPSIS
    -0.99999...
    """

    def __init__(
        self,
        eps: float = 1e-6,
        name: str = "soft_dice_loss",
        reduction: str | None = "sum_over_batch_size",
        dtype: Any = None,
    ) -> None:
        if not eps > 0:
            raise ConfigError(f"Invalid value for `eps`. Expected a float > 0. Received: eps={eps}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.eps = float(eps)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return soft_dice_loss(y_true, y_pred, self.eps)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "eps": self.eps}


@keras.saving.register_keras_serializable(package="mssoft")
class BinarisedDice(keras.metrics.Metric):
    """Dice of the binarised prediction against the binarised target, pooled over all pixels seen.

    The prediction counts as lesion where ``P >= threshold`` and the target where
    ``T >= target_threshold``. With soft masks ``S = M + gamma * D`` and ``gamma < 0.5`` (the
    default 0.3) the binarised target is exactly the rater's mask ``M``; a ring with
    ``gamma >= 0.5`` would count as lesion. True positives, false positives and false negatives
    are summed over every pixel of every batch since the last reset (one "global" Dice per epoch,
    not a mean of per-slice values), so the result is ``2 TP / (2 TP + FP + FN)``; with no
    lesion pixel in both target and prediction it is 1 (docs/design.md §7).

    This is a training monitor; the reported per-scan metrics come from :mod:`mssoft.arrays.metrics`
    after calibration of the threshold.

    Parameters
    ----------
    threshold : float
        Probability threshold of the prediction, in (0, 1).
    target_threshold : float
        Threshold of the (soft) target, in (0, 1].
    name, dtype
        As for :class:`keras.metrics.Metric`.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        target_threshold: float = 0.5,
        name: str = "dice",
        dtype: Any = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ConfigError(
                f"Invalid value for `threshold`. Expected a float in (0, 1). "
                f"Received: threshold={threshold}"
            )
        if not 0.0 < target_threshold <= 1.0:
            raise ConfigError(
                f"Invalid value for `target_threshold`. Expected a float in (0, 1]. "
                f"Received: target_threshold={target_threshold}"
            )
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.target_threshold = float(target_threshold)
        self.true_positives = self.add_variable(
            shape=(), initializer="zeros", name="true_positives"
        )
        self.false_positives = self.add_variable(
            shape=(), initializer="zeros", name="false_positives"
        )
        self.false_negatives = self.add_variable(
            shape=(), initializer="zeros", name="false_negatives"
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        if sample_weight is not None:
            raise ValueError("BinarisedDice does not support sample weights")
        # One pass of cheap element-wise work: two comparisons, one product and three sums.
        # FP = sum(pred) - TP and FN = sum(true) - TP (exact: the counts are integers, and
        # float32 holds them exactly up to 2**24 pixels per batch).
        pred = ops.cast(ops.greater_equal(ops.cast(y_pred, "float32"), self.threshold), "float32")
        true = ops.cast(
            ops.greater_equal(ops.cast(y_true, "float32"), self.target_threshold), "float32"
        )
        true_positives = ops.sum(pred * true)
        self.true_positives.assign_add(ops.cast(true_positives, self.dtype))
        self.false_positives.assign_add(ops.cast(ops.sum(pred) - true_positives, self.dtype))
        self.false_negatives.assign_add(ops.cast(ops.sum(true) - true_positives, self.dtype))

    def result(self) -> Any:
        tp2 = 2.0 * self.true_positives
        denominator = tp2 + self.false_positives + self.false_negatives
        return ops.where(
            denominator > 0, tp2 / ops.maximum(denominator, 1.0), ops.ones_like(denominator)
        )

    def reset_state(self) -> None:
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(ops.zeros_like(variable))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "target_threshold": self.target_threshold,
        }
