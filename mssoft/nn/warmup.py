"""Guards against the Dice-loss collapse: a learning-rate warm-up and the lesion-prior output bias.

A U-Net trained with the Dice loss can *collapse*: within a few epochs every output probability
falls to (numerically) zero, the loss reads exactly 0 and training never recovers: the logits have
sunk into the saturated region of the sigmoid, where its derivative ``p (1 - p)`` is zero in
float32, and no gradient reaches the network any more. The likely push there: the head's sigmoid
starts at 0.5 on every pixel (output bias 0), so the first steps see almost only false positives
(lesions cover a few percent of a slice) and push the whole output down, and full-size Adam steps
from the first batch overshoot. Two remedies within the paper's method:

* :func:`prior_logit`: start the head's bias at the logit of the lesion prior (the share of
  target mass in the training slices), so the first steps need not drive the output down.
* :class:`LinearWarmup`: raise the learning rate linearly from ``peak / steps`` to ``peak`` over
  the first steps, so Adam's first, poorly estimated steps are small.

Importing this module imports Keras (and TensorFlow); ``import mssoft`` does not.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mssoft.errors import ConfigError

__all__ = ["LinearWarmup", "prior_logit"]


def prior_logit(prior: float, *, floor: float = 1e-4) -> float:
    """The logit ``log(p / (1 - p))`` of a lesion prior ``p``, clipped to ``[floor, 1 - floor]``.

    Parameters
    ----------
    prior : float
        Share of lesion in the training targets (mean target value), in [0, 1].
    floor : float
        Clip of ``p`` away from 0 and 1, so the logit is finite.

    Returns
    -------
    float
        The initial head bias that makes the untrained network predict ``p`` everywhere.
    """
    if not math.isfinite(prior) or not 0.0 <= prior <= 1.0:
        raise ConfigError(f"Invalid lesion prior. Expected a float in [0, 1]. Received: {prior}")
    p = min(max(float(prior), floor), 1.0 - floor)
    return math.log(p / (1.0 - p))


@keras.saving.register_keras_serializable(package="mssoft")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly to ``peak`` over ``warmup_steps`` steps, then constant.

    Step ``s`` (0-based) gets ``peak * min(1, (s + 1) / warmup_steps)``; ``warmup_steps = 0``
    is a constant ``peak``.

    Parameters
    ----------
    peak : float
        Learning rate after the warm-up, > 0.
    warmup_steps : int
        Length of the warm-up in optimizer steps (batches), >= 0.
    """

    def __init__(self, peak: float, warmup_steps: int) -> None:
        if not (math.isfinite(peak) and peak > 0):
            raise ConfigError(f"Invalid value for `--learning-rate`. Received: {peak}")
        if int(warmup_steps) < 0:
            raise ConfigError(f"Invalid value for `warmup_steps`. Received: {warmup_steps}")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        if self.warmup_steps == 0:
            return ops.convert_to_tensor(self.peak, "float32")
        return self.peak * ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}
