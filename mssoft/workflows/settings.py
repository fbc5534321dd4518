"""Settings of the commands, validated on construction (no TensorFlow import).

:class:`MaskConfig` says how soft masks are built (``mssoft build-masks``, or ``mssoft fit`` on the
fly). :class:`TrainingSettings` holds every training option; :class:`TrainConfig` is one run of
``mssoft fit``: the training settings plus the run's data, folder and targets. The cv and demo
configurations compose a :class:`TrainingSettings`, so they accept every training option fit has
(the CLI builds all three from one set of options). The strategy name is checked by
:func:`mssoft.nn.distribute.get_strategy` when training starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.soft_masks import (
    SoftMaskParams,
    multi_rater_soft_mask,
    soft_mask_from_params,
)
from mssoft.choices import (
    AUGMENTATIONS,
    JIT_COMPILE_MODES,
    NORMALISATIONS,
    NORMALIZATIONS,
    OUTPUT_BIASES,
    SLICE_CACHES,
    SPLITS,
    TARGET_INTERPOLATIONS,
    one_of,
)
from mssoft.errors import ConfigError, DataError

__all__ = ["MaskConfig", "TrainingSettings", "TrainConfig", "TRAINING_CHOICES"]

#: Training settings with a fixed set of values (:mod:`mssoft.choices`): field -> allowed values.
#: ``strategy`` is checked by :func:`mssoft.nn.distribute.get_strategy` when training starts.
TRAINING_CHOICES: dict[str, tuple[str, ...]] = {
    "split": SPLITS,
    "augment": AUGMENTATIONS,
    "normalise": NORMALISATIONS,
    "slice_cache": SLICE_CACHES,
    "target_interpolation": TARGET_INTERPOLATIONS,
    "output_bias": OUTPUT_BIASES,
    "normalization": NORMALIZATIONS,
    "jit_compile": JIT_COMPILE_MODES,
}


def _check(ok: bool, option: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"Invalid value for `{option}`. Expected {expected}. Received: {value!r}")


def _positive_int(option: str, value: Any, minimum: int = 1) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    _check(ok, f"--{option}", f"an integer >= {minimum}", value)


def _as_rater_list(value: Any) -> list[int]:
    """Rater numbers from a sequence or a comma-separated string; ConfigError naming --raters."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        raters = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raters = []
    if not raters or any(r < 1 for r in raters):
        raise ConfigError(
            "Invalid value for `--raters`. Expected comma-separated integers >= 1 (e.g. 1,2). "
            f"Received: {value!r}"
        )
    return raters


def _as_tuple(value: Any) -> tuple[str, ...] | None:
    """A tuple of names from a sequence or one comma-separated string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return tuple(value)


@dataclass(frozen=True, init=False)
class MaskConfig:
    """How soft masks are built from one rater's (or several raters') binary masks.

    Built from keyword arguments: ``rater`` and ``raters``, and either ``params`` or the fields of
    :class:`~mssoft.arrays.soft_masks.SoftMaskParams` (``ratio``, ``gamma``, ``flair_threshold``,
    ``per_lesion``, ``ring``, ``ring_sigma``), e.g. ``MaskConfig(ratio=1.2, gamma=0.3)``. Every
    setting is validated once, on construction.

    Attributes
    ----------
    params : SoftMaskParams
        The validated soft-mask settings: ratio (dilated volume relative to the mask, >= 1), gamma
        (soft label of the ring, in [0, 1)), FLAIR threshold (``"pNN"``, an intensity or None),
        per-lesion growth, ring profile and its parameters.
    rater : int
        Whose binary mask is softened (the first of ``raters`` when those are given).
    raters : tuple of int or None
        Several raters (``--raters 1,2``): inside the union of their masks the label is the share
        of raters who marked the voxel; the ring is grown from the union. None (or one rater):
        ``rater`` alone.

    Raises
    ------
    ConfigError
        On construction, for an invalid rater, raters list or soft-mask setting.
    """

    params: SoftMaskParams
    rater: int
    raters: tuple[int, ...] | None

    def __init__(
        self,
        *,
        rater: int = 1,
        raters: Sequence[int] | str | None = None,
        params: SoftMaskParams | None = None,
        **options: Any,
    ) -> None:
        if params is None:
            try:
                params = SoftMaskParams(**options)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        elif options:
            raise TypeError(f"MaskConfig: give `params` or {', '.join(options)}, not both")
        if isinstance(rater, bool) or int(rater) != rater or rater < 1:
            raise ConfigError(
                f"Invalid value for `--rater`. Expected an integer >= 1. Received: {rater}"
            )
        group = None
        if raters is not None:
            chosen = tuple(dict.fromkeys(_as_rater_list(raters)))
            group, rater = (chosen if len(chosen) > 1 else None), chosen[0]
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "rater", rater)
        object.__setattr__(self, "raters", group)

    @property
    def all_raters(self) -> tuple[int, ...]:
        """The raters whose masks make the label: ``raters``, or ``(rater,)``."""
        return self.raters if self.raters is not None else (self.rater,)

    @property
    def is_binary(self) -> bool:
        """True when the label is one rater's binary mask: one rater, and settings that give the
        mask itself (``ratio == 1`` or ``gamma == 0``, :attr:`SoftMaskParams.is_binary`). The one
        answer to "is this binary" for masks, training, cv and the demo."""
        return self.params.is_binary and self.raters is None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready flat dictionary (``MaskConfig(**record)`` rebuilds it).

        The options beyond the paper appear only when used (``raters`` with several raters,
        ``ring`` when not constant, a ring parameter with the profile that reads it), so the
        record of the paper's settings, and runs recorded before these options existed, stay as
        they were.
        """
        record: dict[str, object] = {"rater": self.rater, **self.params.to_dict()}
        if self.raters is not None:
            record["raters"] = list(self.raters)
        return record

    def soft_mask(
        self,
        mask: np.ndarray | Sequence[np.ndarray],
        flair: np.ndarray,
        spacing: Sequence[float],
        *,
        source: str | Path = "FLAIR",
    ) -> np.ndarray:
        """The soft mask of one scan (:func:`mssoft.arrays.soft_masks.soft_mask_from_params`).

        Parameters
        ----------
        mask : ndarray of bool, shape (X, Y, Z), or a sequence of them
            This rater's binary mask (RAS), or the masks of ``all_raters`` in that order.
        flair : ndarray of shape (X, Y, Z)
            FLAIR intensities on the same grid.
        spacing : sequence of 3 float
            Voxel size in mm along each array axis.
        source : path-like
            Named in the error message (the FLAIR file).

        Returns
        -------
        ndarray of float32, shape (X, Y, Z)

        Raises
        ------
        DataError
            The mask cannot be built (e.g. a percentile threshold on an all-zero FLAIR).
        """
        try:
            if isinstance(mask, np.ndarray):
                return soft_mask_from_params(mask, flair, spacing=spacing, params=self.params)
            return multi_rater_soft_mask(list(mask), flair, spacing=spacing, params=self.params)
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """Every training option of ``mssoft fit``, shared by ``cv`` and ``demo``.

    Attributes
    ----------
    modalities : tuple of str or None
        Input channels in order; default every modality all scans have, FLAIR first.
    epochs : int
        Total number of epochs (a resumed run continues up to it).
    batch_size : int
        Global batch size (split over the replicas).
    learning_rate : float
        Adam learning rate.
    base_filters, depth : int
        U-Net width and number of poolings (:func:`mssoft.nn.unet.build_unet`).
    seed : int
        Seeds weights, split, shuffling and augmentation.
    val_fraction : float
        Share of validation slices (or patients, with ``split="patients"``), in [0, 1).
    split : {"slices", "patients"}
        Draw validation slices at random (the paper), or whole patients.
    rotation_degrees : float
        Random rotations are uniform in ``[-rotation_degrees, rotation_degrees]``; 0 disables.
    eps : float
        Stabiliser of :class:`mssoft.nn.losses.SoftDiceLoss`.
    strategy : {"auto", "default", "mirrored", "multiworker"}
        See :func:`mssoft.nn.distribute.get_strategy`.
    devices : tuple of str or None
        Devices for the strategy (e.g. ``("GPU:0", "GPU:1")``).
    mixed_precision : bool
        Train with ``mixed_bfloat16`` on CPU or ``mixed_float16`` on GPU (the head stays float32).
    augment : {"paper", "strong"}
        ``paper``: the random rotation alone; ``strong``: also intensity, noise, blur, bias-field,
        scaling, flip and elastic augmentation (:mod:`mssoft.nn.strong_augment`).
    normalise : {"zscore", "percentile", "histogram"}
        Intensity normalisation of every scan (:mod:`mssoft.arrays.intensity`), the same in
        training, calibration and prediction.
    slice_cache : {"auto", "memory", "disk"}
        Keep the training slices in memory or in an on-disk cache in the run folder;
        ``auto`` chooses by size (:func:`mssoft.workflows.training_data.slice_storage`).
    target_interpolation : {"nearest", "bilinear"}
        Resampling of the rotated targets: "nearest" keeps their label values (a binary target
        stays in {0, 1}, a soft one in {0, gamma, 1}); "bilinear" (the old behaviour, for
        comparison) blurs lesion borders into intermediate values. Images are always bilinear.
    output_bias : {"prior", "zero"}
        Initial bias of the sigmoid head: the logit of the lesion prior of the training targets
        (guards against the Dice-loss collapse), or 0 (probability 0.5 everywhere, the old
        behaviour).
    warmup_epochs : float
        Linear learning-rate warm-up over this many epochs' worth of steps (0 = none).
    normalization : {"none", "batch"}
        "none" is the paper's U-Net; "batch" adds batch normalisation after each 3x3 convolution.
    jit_compile : {"auto", "on", "off"}
        Compile the training step (and the calibration and prediction of ``cv``/``demo``) with
        XLA: ``auto`` is Keras's choice (XLA on a GPU, not on a CPU-only machine, where it was
        measured 2-8x slower: docs/explanation/performance-cv.md). A speed option: results
        differ only by floating-point round-off.
    """

    modalities: tuple[str, ...] | None = None
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 1e-4
    base_filters: int = 32
    depth: int = 4
    seed: int = 0
    val_fraction: float = 0.2
    split: str = "slices"
    rotation_degrees: float = 5.0
    eps: float = 1e-6
    strategy: str = "auto"
    devices: tuple[str, ...] | None = None
    mixed_precision: bool = False
    augment: str = "paper"
    normalise: str = "zscore"
    slice_cache: str = "auto"
    target_interpolation: str = "nearest"
    output_bias: str = "prior"
    warmup_epochs: float = 1.0
    normalization: str = "none"
    jit_compile: str = "auto"

    def __post_init__(self) -> None:
        for name in ("modalities", "devices"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("base_filters", 1), ("depth", 1)):
            _positive_int(name.replace("_", "-"), getattr(self, name), minimum)
        _positive_int("seed", self.seed, 0)
        _check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "--learning-rate",
            "a float > 0",
            self.learning_rate,
        )
        _check(
            0.0 <= self.val_fraction < 1.0, "--val-fraction", "a float in [0, 1)", self.val_fraction
        )
        _check(
            0.0 <= self.rotation_degrees <= 180.0,
            "--rotation-degrees",
            "a float in [0, 180]",
            self.rotation_degrees,
        )
        _check(self.eps > 0, "eps", "a float > 0", self.eps)
        _check(
            math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0,
            "--warmup-epochs",
            "a float >= 0",
            self.warmup_epochs,
        )
        for name, choices in TRAINING_CHOICES.items():
            value = getattr(self, name)
            _check(value in choices, f"--{name.replace('_', '-')}", one_of(choices), value)

    @property
    def keras_jit_compile(self) -> bool | str:
        """``jit_compile`` as Keras's ``Model.compile`` takes it: ``"auto"``, True or False."""
        return {"auto": "auto", "on": True, "off": False}[self.jit_compile]

    def settings(self) -> dict[str, Any]:
        """The training settings alone, as keyword arguments (also of a :class:`TrainConfig`)."""
        return {f.name: getattr(self, f.name) for f in fields(TrainingSettings)}

    def record(self) -> dict[str, Any]:
        """JSON-ready training settings."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.settings().items()}


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainingSettings):
    """One ``mssoft fit`` run: the training settings plus its data, folder and targets.

    Attributes
    ----------
    data : Path
        ISBI 2015 data folder or CSV manifest.
    out : Path
        Run folder (created; must be new or empty unless ``resume``).
    masks : Path or None
        ``build-masks`` output folder with the soft masks to train on.
    mask : MaskConfig or None
        Build soft masks on the fly instead (cannot be combined with ``masks``). None, or a binary
        MaskConfig (ratio 1 or gamma 0), trains on the rater's binary masks: the paper's baseline.
    rater : int or None
        Whose masks; default 1 (or the rater of ``masks`` / ``mask``).
    patients : tuple of str or None
        Train (and validate) on these patients' scans only; default all scans with masks.
    resume : bool
        Continue the run in ``out`` from its last completed epoch.

    The training options are those of :class:`TrainingSettings`;
    ``TrainConfig.from_settings(settings, data=..., out=...)`` builds one from them.
    """

    data: Path
    out: Path
    masks: Path | None = None
    mask: MaskConfig | None = None
    rater: int | None = None
    patients: tuple[str, ...] | None = None
    resume: bool = False

    @classmethod
    def from_settings(cls, settings: TrainingSettings, **run: Any) -> TrainConfig:
        """A run of ``settings``; ``run`` gives ``data``, ``out`` and the other run fields."""
        return cls(**{**settings.settings(), **run})

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        if self.masks is not None:
            object.__setattr__(self, "masks", Path(self.masks))
        object.__setattr__(self, "patients", _as_tuple(self.patients))
        if self.rater is not None:
            _positive_int("rater", self.rater)
        if self.masks is not None and self.mask is not None:
            raise ConfigError(
                "Invalid value for `--masks`: soft masks from a folder cannot be combined with "
                "--ratio/--gamma/--flair-threshold/--per-lesion (those build masks on the fly)"
            )
