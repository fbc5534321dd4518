"""The demo's shared types: its settings, one model's run, the data summary, scores, the result.

The demo's run, analysis and report modules all import their types from here, so none of them
imports another for a type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mssoft.arrays.metrics import SetSummary
from mssoft.errors import ConfigError
from mssoft.files.scans import Scan
from mssoft.workflows.settings import MaskConfig, TrainingSettings

__all__ = [
    "MODELS",
    "FLAIR_MODEL",
    "DemoBaseline",
    "DEMO_TRAINING",
    "DEMO_MASK",
    "QUICK",
    "QUICK_TRAINING",
    "DemoConfig",
    "quick_config",
    "Score",
    "DataSummary",
    "ModelRun",
    "DemoResult",
    "CrossSiteConfig",
    "quick_cross_site_config",
    "SiteScore",
    "CrossSiteResult",
]

#: The two models the demo compares, in table order.
MODELS = ("binary", "soft")

#: Name of the FLAIR-threshold baseline among the scores (``comparison.csv``'s ``model``).
FLAIR_MODEL = "flair-threshold"

#: Training of the demo's models: smaller and faster than ``mssoft fit``'s defaults.
DEMO_TRAINING = TrainingSettings(epochs=20, learning_rate=2e-4, base_filters=16, depth=3)
#: Soft masks of the demo's soft model: rater 1, the paper's best setting.
DEMO_MASK = MaskConfig(rater=1, ratio=1.2, gamma=0.3, flair_threshold="p50")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of a demo run (defaults: 4 to 7 minutes on two CPU cores, shared or not).

    Attributes
    ----------
    out : Path
        Demo folder (new, empty, or an earlier demo with ``overwrite``).
    patients, heldout : int
        Training patients and held-out patients (``trainingNN``; all have both raters' masks).
    timepoints : int
        Scans per patient.
    shape : tuple of 3 int
        Grid of the generated scans (1 mm voxels).
    training : TrainingSettings
        Training of both models: every option of ``mssoft fit``
        (:class:`mssoft.workflows.settings.TrainingSettings`); default :data:`DEMO_TRAINING`. Its
        seed also seeds the generated data.
    mask : MaskConfig
        Soft masks of the soft model (:class:`mssoft.workflows.settings.MaskConfig`; default
        :data:`DEMO_MASK`); they must be soft, not the binary masks.
    overwrite : bool
        Replace the outputs of an earlier demo in ``out``.
    """

    out: Path = Path("demo_out")
    patients: int = 6
    heldout: int = 2
    timepoints: int = 2
    shape: tuple[int, int, int] = (96, 112, 64)
    training: TrainingSettings = field(default_factory=lambda: DEMO_TRAINING)
    mask: MaskConfig = field(default_factory=lambda: DEMO_MASK)
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        for name, low in (("patients", 1), ("heldout", 1), ("timepoints", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"Invalid value for `--{name}`. Expected an integer >= {low}. "
                    f"Received: {value!r}"
                )
        if self.patients + self.heldout > 99:
            raise ConfigError(
                "Invalid value for `--patients`: training and held-out patients must be at most "
                f"99 together. Received: {self.patients} + {self.heldout}"
            )
        if len(self.shape) != 3 or min(self.shape) < 16:
            raise ConfigError(
                f"Invalid value for `shape`. Expected 3 sizes >= 16. Received: {self.shape}"
            )
        if self.mask.is_binary:
            raise ConfigError(
                "Invalid soft-mask settings: the demo compares soft with binary masks, so it needs "
                f"ratio > 1 and 0 < gamma < 1. Received: ratio={self.mask.params.ratio}, "
                f"gamma={self.mask.params.gamma}"
            )

    @property
    def seed(self) -> int:
        """Seed of the data and of training (the training settings' seed)."""
        return self.training.seed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the folder as an absolute path; training settings at the top
        level; the soft-mask settings flat, as ``ratio``, ``gamma``, ...)."""
        own: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "mask":
                own.update({k: v for k, v in self.mask.to_dict().items() if k != "rater"})
            elif f.name != "training":
                own[f.name] = getattr(self, f.name)
        return {
            **own,
            "out": str(self.out.expanduser().resolve()),
            "shape": list(self.shape),
            **self.training.record(),
        }


#: Settings of ``mssoft demo --quick``: the whole pipeline in well under a minute (a smoke test,
#: not a result).
QUICK = dict(patients=2, heldout=1, timepoints=2, shape=(48, 56, 32))
#: Training of ``mssoft demo --quick``.
QUICK_TRAINING = replace(DEMO_TRAINING, epochs=2, base_filters=4, depth=2)


def quick_config(**overrides: Any) -> DemoConfig:
    """:class:`DemoConfig` with the :data:`QUICK` sizes and :data:`QUICK_TRAINING`.

    ``overrides`` win; ``seed`` (a shortcut) replaces the training seed.
    """
    training = overrides.pop("training", QUICK_TRAINING)
    if "seed" in overrides:
        training = replace(training, seed=overrides.pop("seed"))
    return DemoConfig(**{**QUICK, "training": training, **overrides})


@dataclass(frozen=True)
class ModelRun:
    """One model's run folder, calibration, predictions and evaluation.

    Attributes
    ----------
    name : str
        ``binary`` or ``soft``.
    run_dir, pred_dir, eval_dir : Path
    history : list of dict
        Rows of ``history.csv``.
    best_epoch : int or None
        Epoch of the saved model.
    parameters : int
        Trainable and other weights of the U-Net.
    train_slices, val_slices : int
        Lesion slices in the training and validation parts.
    calibration : dict
        The ``calibration.json`` record (threshold, min_size, mean_dice, curves).
    """

    name: str
    run_dir: Path
    pred_dir: Path
    eval_dir: Path
    history: list[dict[str, float]]
    best_epoch: int | None
    parameters: int
    train_slices: int
    val_slices: int
    calibration: dict[str, Any]


@dataclass(frozen=True)
class DemoBaseline:
    """The FLAIR-threshold baseline of a demo run.

    Attributes
    ----------
    rule : dict
        :meth:`mssoft.arrays.flair_baseline.FlairThreshold.to_dict`: ``threshold`` (z-score),
        ``mean_dice`` on the training scans against rater 1, ``min_size``, ``connectivity``,
        ``rule`` (one line).
    grid : tuple of float
        The z-score thresholds searched.
    validation_dice : dict of str to float
        Per model: the baseline's Dice pooled over that model's validation slices against the
        model's binarised target (what the model's validation Dice must beat).
    """

    rule: dict[str, Any]
    grid: tuple[float, ...]
    validation_dice: dict[str, float]

    @property
    def threshold(self) -> float:
        return float(self.rule["threshold"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {**self.rule, "grid": list(self.grid), "validation_dice": self.validation_dice}


@dataclass(frozen=True)
class DemoResult:
    """Everything :func:`run_demo` produced (the report is rendered from it)."""

    config: DemoConfig
    out: Path
    data: DataSummary
    runs: dict[str, ModelRun]
    scores: list[Score]
    human: list[Score]
    figures: dict[str, Path]
    timings: dict[str, float]
    wall_seconds: float
    versions: dict[str, str | None]
    report: Path
    baseline: DemoBaseline | None = None

    def score(self, model: str, reference: str) -> Score:
        """The score of ``model`` against ``reference`` (KeyError if absent)."""
        for score in self.scores + self.human:
            if (score.model, score.reference) == (model, reference):
                return score
        raise KeyError((model, reference))


@dataclass(frozen=True)
class Score:
    """A segmentation source compared with a reference over the held-out scans.

    Attributes
    ----------
    model : str
        ``binary``, ``soft``, :data:`FLAIR_MODEL` (the baseline), or a rater (``rater 1``) for
        the human rows.
    reference : str
        ``rater 1``, ``rater 2`` or ``truth`` (true lesion fraction > 0.5).
    summary : SetSummary
        Means over the scans (fractions).
    scan_dice : dict of str to float
        Dice of each scan.
    """

    model: str
    reference: str
    summary: SetSummary
    scan_dice: dict[str, float] = field(default_factory=dict)

    def mean(self, metric: str) -> float:
        """Mean of ``dice``, ``ppv``, ``tpr``, ``ltpr``, ``lfpr``, ... over the scans."""
        return float(self.summary.means[metric])


@dataclass(frozen=True)
class DataSummary:
    """What was generated.

    Attributes
    ----------
    train_scans, heldout_scans : list of Scan
    rater_volume_ml : dict of int to float
        Mean lesion volume per scan of each rater (all scans).
    rater_lesions : dict of int to float
        Mean number of 18-connected lesions per scan of each rater (all scans).
    lesion_voxels : dict of str to int
        Rater 1's lesion voxels in each scan.
    soft_ratio : float
        Achieved ``(|M| + |D|) / |M|`` of the soft masks over the training scans.
    """

    train_scans: list[Scan]
    heldout_scans: list[Scan]
    rater_volume_ml: dict[int, float]
    rater_lesions: dict[int, float]
    lesion_voxels: dict[str, int]
    soft_ratio: float

    def patients(self, part: str) -> list[str]:
        """Patient ids of ``"train"`` or ``"heldout"``."""
        scans = self.train_scans if part == "train" else self.heldout_scans
        return list(dict.fromkeys(s.patient_id for s in scans))


@dataclass(frozen=True)
class CrossSiteConfig(DemoConfig):
    """Settings of ``mssoft demo --cross-site``: train at one site, test at both.

    The fields of :class:`DemoConfig` keep their meaning: ``patients`` train (at
    ``train_site``), ``heldout`` patients of **each** site are segmented, ``shape`` is the field
    of view in mm (each site's grid follows from its voxel size), the soft masks of ``mask``
    are the training targets.

    Attributes
    ----------
    train_site, test_site : str
        Preset sites (:data:`mssoft.synthetic.SITES`; checked when the demo starts).
    """

    train_site: str = "A"
    test_site: str = "B"


def quick_cross_site_config(**overrides: Any) -> CrossSiteConfig:
    """:class:`CrossSiteConfig` with the :data:`QUICK` sizes and :data:`QUICK_TRAINING`."""
    training = overrides.pop("training", QUICK_TRAINING)
    if "seed" in overrides:
        training = replace(training, seed=overrides.pop("seed"))
    return CrossSiteConfig(**{**QUICK, "training": training, **overrides})


@dataclass(frozen=True)
class SiteScore:
    """The model against rater 1 on one site's held-out scans.

    Attributes
    ----------
    site : str
    role : {"within-site", "cross-site"}
    scans : tuple of str
    dice : float
        Mean per-scan Dice (fraction).
    pred_volume_ml, true_volume_ml : float
        Total segmented and rater-1 lesion volume over the scans (mL).
    scan_dice : dict of str to float
    """

    site: str
    role: str
    scans: tuple[str, ...]
    dice: float
    pred_volume_ml: float
    true_volume_ml: float
    scan_dice: dict[str, float] = field(default_factory=dict)

    @property
    def volume_ratio(self) -> float:
        """Predicted over true lesion volume (NaN without true lesions)."""
        return (
            self.pred_volume_ml / self.true_volume_ml if self.true_volume_ml > 0 else float("nan")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready score."""
        return {**asdict(self), "scans": list(self.scans), "volume_ratio": self.volume_ratio}


@dataclass(frozen=True)
class CrossSiteResult:
    """What :func:`mssoft.experiments.demo.cross_site.run_cross_site` produced.

    ``baseline_scores`` are the FLAIR-threshold baseline's per site (calibrated at the training
    site); ``baseline`` its rule, the model's validation Dice, the baseline's on the same slices
    and whether the model beat it (``learned``).
    """

    config: CrossSiteConfig
    out: Path
    run_dir: Path
    scores: list[SiteScore]
    threshold: float
    wall_seconds: float
    report: Path
    baseline_scores: list[SiteScore] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)

    def score(self, role: str) -> SiteScore:
        """The ``within-site`` or ``cross-site`` score (KeyError if absent)."""
        for score in self.scores:
            if score.role == role:
                return score
        raise KeyError(role)
