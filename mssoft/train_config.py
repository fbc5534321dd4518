"""Configuration of a training run: :class:`TrainConfig` (no TensorFlow import).

:func:`mssoft.train.fit` consumes it; ``mssoft fit`` builds it from its options. The strategy
name is checked by :func:`mssoft.distribute.get_strategy` when training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mssoft.build_masks import MaskConfig
from mssoft.errors import ConfigError

__all__ = ["TrainConfig"]


def _check(ok: bool, option: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"Invalid value for `{option}`. Expected {expected}. Received: {value!r}")


def _positive_int(option: str, value: Any, minimum: int = 1) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    _check(ok, f"--{option}", f"an integer >= {minimum}", value)


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``mssoft fit`` needs.

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
    modalities : tuple of str or None
        Input channels in order; default every modality all scans have, FLAIR first.
    patients : tuple of str or None
        Train (and validate) on these patients' scans only; default all scans with masks.
    epochs : int
        Total number of epochs (a resumed run continues up to it).
    batch_size : int
        Global batch size (split over the replicas).
    learning_rate : float
        Adam learning rate.
    base_filters, depth : int
        U-Net width and number of poolings (:func:`mssoft.model.build_unet`).
    seed : int
        Seeds weights, split, shuffling and augmentation.
    val_fraction : float
        Share of validation slices (or patients, with ``split="patients"``), in [0, 1).
    split : {"slices", "patients"}
        Draw validation slices at random (the paper), or whole patients.
    rotation_degrees : float
        Random rotations are uniform in ``[-rotation_degrees, rotation_degrees]``; 0 disables.
    eps : float
        Stabiliser of :class:`mssoft.losses.SoftDiceLoss`.
    strategy : {"auto", "default", "mirrored", "multiworker"}
        See :func:`mssoft.distribute.get_strategy`.
    devices : tuple of str or None
        Devices for the strategy (e.g. ``("GPU:0", "GPU:1")``).
    mixed_precision : bool
        Train with ``mixed_bfloat16`` on CPU or ``mixed_float16`` on GPU (the head stays float32).
    resume : bool
        Continue the run in ``out`` from its last completed epoch.
    """

    data: Path
    out: Path
    masks: Path | None = None
    mask: MaskConfig | None = None
    rater: int | None = None
    modalities: tuple[str, ...] | None = None
    patients: tuple[str, ...] | None = None
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
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        if self.masks is not None:
            object.__setattr__(self, "masks", Path(self.masks))
        for name in ("modalities", "patients", "devices"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("base_filters", 1), ("depth", 1)):
            _positive_int(name.replace("_", "-"), getattr(self, name), minimum)
        _positive_int("seed", self.seed, 0)
        if self.rater is not None:
            _positive_int("rater", self.rater)
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
            "rotation_degrees",
            "a float in [0, 180]",
            self.rotation_degrees,
        )
        _check(self.eps > 0, "eps", "a float > 0", self.eps)
        if self.masks is not None and self.mask is not None:
            raise ConfigError(
                "Invalid value for `--masks`: soft masks from a folder cannot be combined with "
                "--ratio/--gamma/--flair-threshold/--per-lesion (those build masks on the fly)"
            )
