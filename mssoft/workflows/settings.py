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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.intensity import METHODS
from mssoft.arrays.soft_masks import (
    FlairThreshold,
    SoftMaskParams,
    multi_rater_soft_mask,
    soft_mask_from_params,
)
from mssoft.errors import ConfigError, DataError

__all__ = [
    "MaskConfig",
    "TrainingSettings",
    "TrainConfig",
    "AUGMENTATIONS",
    "NORMALISATIONS",
    "JIT_COMPILE_MODES",
]

#: Values of ``--augment``: the paper's rotation alone, or the strong set added to it.
AUGMENTATIONS = ("paper", "strong")
#: Values of ``--normalise`` (:data:`mssoft.arrays.intensity.METHODS`).
NORMALISATIONS = METHODS
#: Values of ``--jit-compile``: Keras's choice (XLA on GPUs, not on CPU-only machines), or forced.
JIT_COMPILE_MODES = ("auto", "on", "off")


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


@dataclass(frozen=True)
class MaskConfig:
    """How soft masks are built from one rater's (or several raters') binary masks.

    Attributes
    ----------
    rater : int
        Whose binary mask is softened (the first of ``raters`` when those are given).
    ratio : float
        Dilated volume relative to the mask (>= 1; 1.2 is "120 %").
    gamma : float
        Soft label of the ring, in [0, 1).
    flair_threshold : str, float or None
        ``"pNN"`` (percentile of brain FLAIR), an absolute intensity, or None (no exclusion).
    per_lesion : bool
        Grow each lesion to ``ratio`` times its own volume.
    raters : tuple of int or None
        Several raters (``--raters 1,2``): inside the union of their masks the label is the share
        of raters who marked the voxel; the ring is grown from the union. None (or one rater):
        ``rater`` alone.
    ring : {"constant", "linear", "gaussian"}
        Profile of the ring's values (constant = the paper).
    ring_sigma : float
        Width in mm of the gaussian ring profile.
    """

    rater: int = 1
    ratio: float = 1.2
    gamma: float = 0.3
    flair_threshold: FlairThreshold = "p50"
    per_lesion: bool = False
    raters: tuple[int, ...] | None = None
    ring: str = "constant"
    ring_sigma: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.rater, bool) or int(self.rater) != self.rater or self.rater < 1:
            raise ConfigError(
                f"Invalid value for `--rater`. Expected an integer >= 1. Received: {self.rater}"
            )
        if self.raters is not None:
            raters = tuple(dict.fromkeys(_as_rater_list(self.raters)))
            object.__setattr__(self, "raters", raters if len(raters) > 1 else None)
            object.__setattr__(self, "rater", raters[0])
        params = self.params  # the one validation of ratio, gamma, threshold and ring
        object.__setattr__(self, "flair_threshold", params.flair_threshold)
        object.__setattr__(self, "ring_sigma", params.ring_sigma)

    @property
    def all_raters(self) -> tuple[int, ...]:
        """The raters whose masks make the label: ``raters``, or ``(rater,)``."""
        return self.raters if self.raters is not None else (self.rater,)

    @property
    def params(self) -> SoftMaskParams:
        """The validated soft-mask settings (:class:`mssoft.arrays.soft_masks.SoftMaskParams`).

        Raises
        ------
        ConfigError
            Invalid ratio, gamma or FLAIR threshold.
        """
        try:
            return SoftMaskParams(
                self.ratio,
                self.gamma,
                self.flair_threshold,
                self.per_lesion,
                self.ring,
                self.ring_sigma,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def is_binary(self) -> bool:
        """True when the label is one rater's binary mask (one rater, ``ratio == 1`` or
        ``gamma == 0``)."""
        return self.params.is_binary and self.raters is None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dictionary of the fields.

        The options beyond the paper appear only when used (``raters`` with several raters,
        ``ring`` when not constant, ``ring_sigma`` with a gaussian ring), so the record of the
        paper's settings, and runs recorded before these options existed, stay as they were.
        """
        record = asdict(self)
        if self.raters is None:
            del record["raters"]
        else:
            record["raters"] = list(self.raters)
        if self.ring == "constant":
            del record["ring"]
        if self.ring != "gaussian":
            del record["ring_sigma"]
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
            self.split in ("slices", "patients"), "--split", "'slices' or 'patients'", self.split
        )
        _check(
            0.0 <= self.rotation_degrees <= 180.0,
            "--rotation-degrees",
            "a float in [0, 180]",
            self.rotation_degrees,
        )
        _check(self.eps > 0, "eps", "a float > 0", self.eps)
        _check(self.augment in AUGMENTATIONS, "--augment", "'paper' or 'strong'", self.augment)
        _check(
            self.normalise in NORMALISATIONS,
            "--normalise",
            "'zscore', 'percentile' or 'histogram'",
            self.normalise,
        )
        _check(
            self.slice_cache in ("auto", "memory", "disk"),
            "--slice-cache",
            "'auto', 'memory' or 'disk'",
            self.slice_cache,
        )
        _check(
            self.target_interpolation in ("nearest", "bilinear"),
            "--target-interpolation",
            "'nearest' or 'bilinear'",
            self.target_interpolation,
        )
        _check(
            self.output_bias in ("prior", "zero"),
            "--output-bias",
            "'prior' or 'zero'",
            self.output_bias,
        )
        _check(
            math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0,
            "--warmup-epochs",
            "a float >= 0",
            self.warmup_epochs,
        )
        _check(
            self.normalization in ("none", "batch"),
            "--normalization",
            "'none' or 'batch'",
            self.normalization,
        )
        _check(
            self.jit_compile in JIT_COMPILE_MODES,
            "--jit-compile",
            "'auto', 'on' or 'off'",
            self.jit_compile,
        )

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
