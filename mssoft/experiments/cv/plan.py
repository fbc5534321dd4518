"""Planning a leave-one-patient-out sweep: folds, grid points, repeats and their folders.

Pure bookkeeping, no training: :mod:`mssoft.experiments.cv.run` runs the cells this module lays
out. Each *cell* is one (held-out patient, grid point, repeat) combination with a folder of its
own (a grid point is ratio, gamma and the variants beyond the paper: raters, ring profile,
test-time augmentation); a cell is finished when its ``result.json`` exists, so an interrupted
sweep resumes by skipping finished
cells, and several machines sharing the output folder can each run a shard of the cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mssoft.arrays.soft_masks import RING_MODES, validate_soft_mask_params
from mssoft.choices import TTA_MODES
from mssoft.errors import ConfigError
from mssoft.files.layout import CV_CELLS_DIR
from mssoft.files.scans import Scan, patients_of
from mssoft.workflows.settings import MaskConfig

__all__ = [
    "FLAIR_VARIANT",
    "FLAIR_POINT",
    "Fold",
    "GridPoint",
    "Cell",
    "parse_float_list",
    "parse_shard",
    "leave_one_patient_out",
    "grid_points",
    "with_binary_point",
    "plan_cells",
]


#: Variant of the FLAIR-threshold baseline's pseudo grid point in the sweep's rows
#: (:mod:`mssoft.experiments.cv.baseline`).
FLAIR_VARIANT = "flair-threshold"
#: The baseline's pseudo grid point (ratio, gamma, variant); no real point has ratio 0.
FLAIR_POINT = (0.0, 0.0, FLAIR_VARIANT)


@dataclass(frozen=True)
class Fold:
    """One leave-one-patient-out fold.

    Attributes
    ----------
    held_out : str
        Patient id whose scans (all time points) are predicted and evaluated.
    train : tuple of str
        Scan ids of every other patient: masks, fitting and calibration use only these.
    test : tuple of str
        Scan ids of the held-out patient.
    """

    held_out: str
    train: tuple[str, ...]
    test: tuple[str, ...]


#: Sweep settings a point's binary-or-soft answer does not depend on.
_ANY_BASE = MaskConfig(flair_threshold=None)


@dataclass(frozen=True)
class GridPoint:
    """A soft-mask setting: ``ratio`` 1 (or ``gamma`` 0) of one rater is the binary baseline.

    ``raters`` (None: the sweep's rater) are several raters whose share makes the label, ``ring``
    the ring profile and ``tta`` the test-time augmentation of calibration and prediction.
    """

    ratio: float
    gamma: float
    raters: tuple[int, ...] | None = None
    ring: str = "constant"
    tta: str = "none"

    def mask_config(self, base: MaskConfig) -> MaskConfig:
        """The soft-mask settings of this point: ``base`` (the sweep's rater, FLAIR threshold,
        per-lesion growth and ring parameters) with this point's ratio, gamma, raters and ring."""
        return MaskConfig(
            rater=base.rater,
            raters=self.raters,
            params=replace(base.params, ratio=self.ratio, gamma=self.gamma, ring=self.ring),
        )

    @property
    def is_binary(self) -> bool:
        """True for the binary labels of one rater (:attr:`MaskConfig.is_binary`)."""
        return self.mask_config(_ANY_BASE).is_binary

    @property
    def is_share(self) -> bool:
        """True for several raters' share without a ring (the soft label of their union)."""
        return not self.is_binary and self.mask_config(_ANY_BASE).params.is_binary

    @property
    def variant(self) -> str:
        """The options beyond ratio and gamma, e.g. ``raters1-2_ring-linear`` ("" for none)."""
        parts = []
        if self.raters is not None:
            parts.append("raters" + "-".join(map(str, self.raters)))
        if self.ring != "constant":
            parts.append(f"ring-{self.ring}")
        if self.tta != "none":
            parts.append(f"tta-{self.tta}")
        return "_".join(parts)

    @property
    def name(self) -> str:
        """Folder name, e.g. ``ratio1.20_gamma0.30`` (``binary`` for the baseline), with the
        variant appended (``ratio1.20_gamma0.30_ring-linear``)."""
        if self.is_binary:
            base = "binary"
        elif self.is_share:
            base = "share"  # several raters, no ring
        else:
            base = f"ratio{self.ratio:.2f}_gamma{self.gamma:.2f}"
        return "_".join(p for p in (base, self.variant) if p)


@dataclass(frozen=True)
class Cell:
    """One fold × grid point × repeat: an independent fit–calibrate–predict–evaluate run."""

    fold: Fold
    point: GridPoint
    repeat: int
    seed: int

    def folder(self, out: Path) -> Path:
        """``out/cells/<held-out patient>/<grid point>/repeat<k>``."""
        return Path(out) / CV_CELLS_DIR / self.key

    @property
    def key(self) -> str:
        return f"{self.fold.held_out}/{self.point.name}/repeat{self.repeat}"


def parse_float_list(text: str | Sequence[float], *, option: str) -> tuple[float, ...]:
    """``"1.0,1.1,1.2"`` → ``(1.0, 1.1, 1.2)``; a ConfigError naming ``option`` otherwise."""
    if not isinstance(text, str):
        values = tuple(float(v) for v in text)
    else:
        try:
            values = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ConfigError(
                f"Invalid value for `{option}`: expected comma-separated numbers, got {text!r}"
            ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(
            f"Invalid value for `{option}`: expected comma-separated numbers, got {text!r}"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"Invalid value for `{option}`: duplicate values in {text!r}")
    return values


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` → ``(1, 4)`` (zero-based shard index, shard count); None → ``(0, 1)``."""
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(
            f"Invalid value for `--shard`: expected K/N such as 1/3, got {text!r}"
        ) from None
    if not 1 <= index <= count:
        raise ConfigError(f"Invalid value for `--shard`: expected 1 <= K <= N, got {text!r}")
    return index - 1, count


def leave_one_patient_out(scans: Sequence[Scan]) -> list[Fold]:
    """One fold per patient: that patient's scans held out, every other patient's trained on.

    Raises
    ------
    ConfigError
        Fewer than two patients.
    """
    patients = patients_of(scans)
    if len(patients) < 2:
        raise ConfigError(
            f"cross-validation needs at least 2 patients, the data has {len(patients)}"
        )
    folds = []
    for patient in patients:
        test = tuple(s.scan_id for s in scans if s.patient_id == patient)
        train = tuple(s.scan_id for s in scans if s.patient_id != patient)
        folds.append(Fold(patient, train, test))
    return folds


def grid_points(
    ratios: Sequence[float],
    gammas: Sequence[float],
    *,
    raters: Sequence[tuple[int, ...] | None] = (None,),
    rings: Sequence[str] = ("constant",),
    ttas: Sequence[str] = ("none",),
) -> list[GridPoint]:
    """Every combination of the axes; settings that give the same labels collapse into one point.

    Ratio 1 or gamma 0 has no ring: one point per raters and TTA (ring ``constant``, ratio 1,
    gamma 0); with one rater that point is the binary baseline. A raters entry of one rater or
    None is the sweep's rater alone.

    Raises
    ------
    ConfigError
        A ratio below 1 or a gamma outside [0, 1) (naming ``--ratios`` or ``--gammas``), an
        unknown ring or TTA.
    """
    for ratio in ratios:
        if not (math.isfinite(ratio) and ratio >= 1.0):
            raise ConfigError(
                f"Invalid value for `--ratios`: {ratio:g} is below 1; each mask size must be "
                ">= 1 (1.0 = the binary baseline)"
            )
    for gamma in gammas:
        if not (math.isfinite(gamma) and 0.0 <= gamma < 1.0):
            raise ConfigError(
                f"Invalid value for `--gammas`: {gamma:g} is not in [0, 1); each soft label must "
                "be >= 0 and < 1"
            )
    for ring in rings:
        if ring not in RING_MODES:
            raise ConfigError(
                f"Invalid value for `--rings`: expected {', '.join(RING_MODES)}, got {ring!r}"
            )
    for tta in ttas:
        if tta not in TTA_MODES:
            raise ConfigError(
                f"Invalid value for `--tta`: expected {' or '.join(TTA_MODES)}, got {tta!r}"
            )
    points: list[GridPoint] = []
    for who in raters:
        group = tuple(who) if who is not None and len(who) > 1 else None
        for tta in ttas:
            for ring in rings:
                for ratio in ratios:
                    for gamma in gammas:
                        validate_soft_mask_params(ratio, gamma)  # the library's rule (checked)
                        point = GridPoint(float(ratio), float(gamma), group, ring, tta)
                        if point.mask_config(_ANY_BASE).params.is_binary:
                            point = GridPoint(1.0, 0.0, group, "constant", tta)
                        if point not in points:
                            points.append(point)
    return points


def with_binary_point(points: Sequence[GridPoint]) -> tuple[list[GridPoint], bool]:
    """``points`` with the binary point of one rater (ratio 1, no variant) first if it is missing.

    Every grid point is compared with that binary model (same folds, scans and seeds), so a grid
    without it (e.g. only ``--raters 1,2``, or only ``--tta flip``) would pair nothing.

    Returns
    -------
    points : list of GridPoint
    added : bool
        True when the binary point was added.
    """
    binary = GridPoint(1.0, 0.0)
    if binary in points:
        return list(points), False
    return [binary, *points], True


def plan_cells(
    folds: Sequence[Fold], points: Sequence[GridPoint], *, repeats: int, seed: int
) -> list[Cell]:
    """All cells in a fixed order (fold, grid point, repeat); repeat ``k`` uses ``seed + k``.

    The same seed serves a repeat in every fold and grid point, so grid points are compared on
    equal footing (same initialisation and data order for the same training set).
    """
    if repeats < 1:
        raise ConfigError(f"Invalid value for `--repeats`: expected >= 1, got {repeats}")
    return [
        Cell(fold, point, k, seed + k) for fold in folds for point in points for k in range(repeats)
    ]
