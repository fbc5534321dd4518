"""The allowed values of every option with a fixed set of choices, defined once.

The command line (``click.Choice(CONSTANT)``) and the validation of the settings objects and
library functions read the same tuple, so a new value is added here (and implemented where the
option acts) rather than in several lists. No import beyond the standard library: every layer,
and the CLI before TensorFlow is loaded, may use it. Ring profiles are the one exception: their
names are the keys of :data:`mssoft.arrays.soft_masks.RING_PROFILES`, beside their formulas.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "JIT_COMPILE_MODES",
    "AUGMENTATIONS",
    "NORMALISATIONS",
    "NORMALIZATIONS",
    "OUTPUT_BIASES",
    "SLICE_CACHES",
    "SPLITS",
    "STRATEGIES",
    "TARGET_INTERPOLATIONS",
    "TTA_MODES",
    "one_of",
]

#: ``--augment``: the paper's rotation alone, or the strong set added to it.
AUGMENTATIONS = ("paper", "strong")
#: ``--normalise``: intensity normalisation (:mod:`mssoft.arrays.intensity`).
NORMALISATIONS = ("zscore", "percentile", "histogram")
#: ``--normalization``: layer normalisation in the U-Net (:func:`mssoft.nn.unet.build_unet`).
NORMALIZATIONS = ("none", "batch")
#: ``--output-bias``: initial bias of the sigmoid head.
OUTPUT_BIASES = ("prior", "zero")
#: ``--slice-cache``: where the training slices are kept.
SLICE_CACHES = ("auto", "memory", "disk")
#: ``--split``: validation slices drawn at random (the paper) or whole patients.
SPLITS = ("slices", "patients")
#: ``--strategy``: distribution strategies (:func:`mssoft.nn.distribute.get_strategy`).
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
#: ``--target-interpolation``: resampling of rotated targets.
TARGET_INTERPOLATIONS = ("nearest", "bilinear")
#: ``--tta``: test-time augmentation of calibration and prediction.
TTA_MODES = ("none", "flip")
#: ``--jit-compile``: Keras's choice (XLA on GPUs, not on CPU-only machines), or forced.
JIT_COMPILE_MODES = ("auto", "on", "off")


def one_of(choices: Sequence[str]) -> str:
    """The choices as an error message lists them: ``'a', 'b' or 'c'``.

    >>> one_of(("slices", "patients"))
    "'slices' or 'patients'"
    """
    quoted = [f"'{c}'" for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
