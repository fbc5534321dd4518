"""Helpers shared by the command modules: progress bars, list options, the soft-mask options and
the training options.

``fit``, ``cv`` and ``demo`` take the same training options (:func:`training_options`), built
from the fields of :class:`mssoft.workflows.settings.TrainingSettings`, so a new training option
appears on all three at once. ``build-masks``, ``fit``, ``cv`` and ``demo`` take the soft-mask
options (:func:`mask_options`) of :class:`mssoft.workflows.settings.MaskConfig` the same way. The
allowed values of every choice option come from :mod:`mssoft.choices` (ring profiles from
:data:`mssoft.arrays.soft_masks.RING_MODES`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mssoft.arrays.soft_masks import RING_MODES
from mssoft.choices import STRATEGIES, TTA_MODES
from mssoft.workflows.settings import TRAINING_CHOICES, MaskConfig, TrainingSettings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DATA_ARGUMENT = click.argument("data", type=click.Path(exists=True, path_type=Path), metavar="DATA")


class CommaList(click.ParamType):
    """A comma-separated list option: ``a,b , c`` → ``("a", "b", "c")`` (empty items dropped)."""

    name = "LIST"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, tuple):
            return value
        items = tuple(v.strip() for v in str(value).split(",") if v.strip())
        if not items:
            self.fail("expected at least one comma-separated item", param, ctx)
        return items


COMMA_LIST = CommaList()


def out_option(help_text: str):  # type: ignore[no-untyped-def]
    """The required ``--out`` folder option of a command."""
    return click.option(
        "--out", "out", required=True, type=click.Path(path_type=Path), help=help_text
    )


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("quiet"))


def progress(items: Sequence[T], label: str) -> Iterator[T]:
    """A progress bar on stderr over ``items`` when stderr is a terminal (not with ``mssoft -q``).

    Log lines written while it runs go above the bar instead of breaking it. Matches
    :data:`mssoft.workflows.progress.Progress`.
    """
    bar = tqdm(
        items,
        desc=label,
        total=len(items),
        file=sys.stderr,
        disable=True if _quiet() else None,  # None: only when stderr is a terminal
        unit="scan",
        dynamic_ncols=True,
        leave=False,
    )
    redirect = (
        logging_redirect_tqdm([logging.getLogger()])
        if not bar.disable
        else contextlib.nullcontext()
    )
    with redirect:
        yield from bar


def echo_line(text: str) -> None:
    """Print a result line on stdout without breaking an active progress bar."""
    tqdm.write(text, file=sys.stdout)


def _option(flag: str, name: str, kind: Any, text: str, value: Any, **extra: Any) -> Any:
    """The click option of one setting: a flag when ``kind`` is None, else an option of that
    type with ``value`` (the settings object's) as its default."""
    if kind is None:
        return click.option(flag, name, is_flag=True, help=text)
    return click.option(
        flag,
        name,
        type=kind,
        default=None if isinstance(value, tuple) else value,
        show_default=value is not None,
        help=text,
        **extra,
    )


#: Soft-mask options: field of SoftMaskParams (or ``raters``) -> (option, click type or None for
#: a flag, help).
_MASK_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "ratio": (
        "--ratio",
        float,
        "Grow each mask to this multiple of its volume (1.2 = 120 %; 1 = binary).",
    ),
    "gamma": ("--gamma", float, "Soft label of the grown ring, in [0, 1)."),
    "flair_threshold": (
        "--flair-threshold",
        str,
        "Ring voxels with FLAIR below this get 0: 'pNN' = NN-th percentile of brain FLAIR, a "
        "number = absolute intensity, 'none' = keep all.",
    ),
    "per_lesion": ("--per-lesion", None, "Grow each lesion to RATIO times its own volume."),
    "raters": (
        "--raters",
        COMMA_LIST,
        "Soft labels from several raters: inside the union of their masks the label is the "
        "share of raters who marked the voxel; the ring is grown from the union. Replaces --rater.",
    ),
    "ring": (
        "--ring",
        click.Choice(RING_MODES),
        "Ring values: constant gamma (the paper), or falling with the distance d (mm) to "
        "the lesion from gamma at the nearest shell (linear, gaussian).",
    ),
    "ring_sigma": (
        "--ring-sigma",
        click.FloatRange(min=0.0, min_open=True),
        "Width in mm of the gaussian ring: gamma * exp(-(d - d_min)^2 / (2 sigma^2)).",
    ),
}


#: The soft-mask option names (``fit`` builds masks on the fly when one of them is given).
MASK_OPTION_NAMES = tuple(_MASK_OPTIONS)


def mask_options(
    defaults: MaskConfig,
    *,
    exclude: Sequence[str] = (),
    help_overrides: dict[str, str] | None = None,
) -> Callable[[F], F]:
    """Add the soft-mask options (all but ``exclude``), with the values of ``defaults``.

    A command leaves out only what it sets otherwise (``cv`` sweeps ratio, gamma, ring and raters
    as grid axes), so a new soft-mask setting appears on every command at once.

    :func:`mask_config` turns them back into a :class:`MaskConfig`.
    """
    helps = help_overrides or {}
    values = {**asdict(defaults.params), "raters": defaults.raters}

    def decorate(command: F) -> F:
        for name in reversed([n for n in _MASK_OPTIONS if n not in exclude]):
            flag, kind, text = _MASK_OPTIONS[name]
            text = helps.get(name, text)
            extra = {"metavar": "K,K[,...]"} if name == "raters" else {}
            command = _option(flag, name, kind, text, values[name], **extra)(command)
        return command

    return decorate


def mask_config(options: dict[str, Any], defaults: MaskConfig, *, rater: int | None) -> MaskConfig:
    """Pop the soft-mask options from a command's keyword arguments into a :class:`MaskConfig`.

    ``rater`` is the command's ``--rater`` (None: not given, rater 1). Options the command does
    not have keep the value of ``defaults``; ``--raters`` with ``--rater`` is a ConfigError.
    """
    params = asdict(defaults.params)
    for name in [n for n in _MASK_OPTIONS if n in options and n != "raters"]:
        params[name] = options.pop(name)
    raters = mask_raters(rater, options.pop("raters", None))
    return MaskConfig(rater=rater or defaults.rater, raters=raters, **params)


def mask_raters(rater: int | None, raters: tuple[str, ...] | None) -> tuple[int, ...] | None:
    """``--raters`` as integers (None when not given); a ConfigError when combined with --rater."""
    if raters is None:
        return None
    if rater is not None:
        from mssoft.errors import ConfigError

        raise ConfigError(
            "Invalid options: give --rater (one rater) or --raters (several), not both"
        )
    return MaskConfig(raters=raters).all_raters


def inference_options(tta_help: str) -> Callable[[F], F]:
    """``--resample``, ``--mixed-precision``, ``--tta`` and ``--trust-savedmodel``: how
    ``calibrate`` and ``predict`` run a model (the same meaning in both)."""

    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--resample",
                    is_flag=True,
                    help="Resample each scan to the run's training voxel size for the model "
                    "(trilinear) and the probabilities back to the scan's grid. Without it, a "
                    "voxel size more than 20% off warns.",
                ),
                click.option(
                    "--mixed-precision",
                    is_flag=True,
                    help="Run the model in bfloat16 on CPU / float16 on GPU (the output layer "
                    "stays float32): about 2x faster on CPUs with AVX512_BF16; probabilities "
                    "differ slightly from float32.",
                ),
                click.option(
                    "--tta",
                    default="none",
                    type=click.Choice(TTA_MODES),
                    show_default=True,
                    help=tta_help,
                ),
                click.option(
                    "--trust-savedmodel",
                    is_flag=True,
                    help="Allow running the TensorFlow SavedModel of an export folder that holds "
                    "no model.keras. A SavedModel is a program that can read and write any file: "
                    "give this only for an export folder you trust.",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


#: Training options: field of TrainingSettings -> (option, click type, help). Fields not listed
#: (``eps``) are library-only.
_TRAINING_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "modalities": (
        "--modalities",
        COMMA_LIST,
        "Input channels in order, comma-separated (e.g. flair,t1,t2,pd)  "
        "[default: all that every scan has, FLAIR first]",
    ),
    "epochs": ("--epochs", click.IntRange(min=1), "Total epochs of each model."),
    "batch_size": ("--batch-size", click.IntRange(min=1), "Global batch size (all devices)."),
    "learning_rate": (
        "--learning-rate",
        click.FloatRange(min=0.0, min_open=True),
        "Adam learning rate.",
    ),
    "base_filters": ("--base-filters", click.IntRange(min=1), "Filters of the first U-Net level."),
    "depth": ("--depth", click.IntRange(min=1), "Number of U-Net poolings."),
    "seed": ("--seed", click.IntRange(min=0), "Seed of weights, split and augmentation."),
    "val_fraction": (
        "--val-fraction",
        click.FloatRange(0.0, 1.0, max_open=True),
        "Share of the lesion slices (or patients) held out for validation; 0 = none.",
    ),
    "split": (
        "--split",
        click.Choice(TRAINING_CHOICES["split"]),
        "Draw validation slices at random (the paper) or whole patients.",
    ),
    "rotation_degrees": (
        "--rotation-degrees",
        click.FloatRange(0.0, 180.0),
        "Random rotations uniform in [-D, D] degrees (0 = none).",
    ),
    "strategy": (
        "--strategy",
        click.Choice(STRATEGIES),
        "Distribution: auto = mirrored over all GPUs when more than one is visible; "
        "multiworker = one process per machine, each started with the same command and its own "
        "TF_CONFIG (see the README).",
    ),
    "devices": (
        "--devices",
        COMMA_LIST,
        "Devices for the strategy, comma-separated (e.g. GPU:0,GPU:1; CPU:0,CPU:1 after "
        "MSSOFT_LOGICAL_CPUS=2).",
    ),
    "mixed_precision": (
        "--mixed-precision",
        None,
        "Compute in bfloat16 on CPU / float16 on GPU (the output layer stays float32).",
    ),
    "augment": (
        "--augment",
        click.Choice(TRAINING_CHOICES["augment"]),
        "paper = the random rotation alone; strong = also per-slice intensity scale/shift, "
        "gamma, noise, blur, bias field, scaling, left-right flips and elastic deformation "
        "(ranges in the README and the run's config.json).",
    ),
    "normalise": (
        "--normalise",
        click.Choice(TRAINING_CHOICES["normalise"]),
        "Intensity normalisation: zscore over the brain; percentile = clip to brain "
        "percentiles 0.5-99.5 first; histogram = Nyul-Udupa standardisation with landmarks "
        "learned on the training scans (stored in the run, used by calibrate and predict).",
    ),
    "slice_cache": (
        "--slice-cache",
        click.Choice(TRAINING_CHOICES["slice_cache"]),
        "Keep the training slices in memory, or on disk in the run folder's slice_cache/ "
        "(read per batch; memory no longer grows with the number of scans). auto: memory when "
        "all axial slices of the scans take at most half of the available memory.",
    ),
    "target_interpolation": (
        "--target-interpolation",
        click.Choice(TRAINING_CHOICES["target_interpolation"]),
        "Resampling of rotated targets: nearest keeps their values (binary stays 0/1, soft stays "
        "0/gamma/1); bilinear (the old behaviour) blurs lesion borders. Images are bilinear.",
    ),
    "output_bias": (
        "--output-bias",
        click.Choice(TRAINING_CHOICES["output_bias"]),
        "Initial bias of the sigmoid head: logit of the lesion share of the training targets "
        "(prior; guards against the all-zero collapse) or 0 (probability 0.5 everywhere).",
    ),
    "warmup_epochs": (
        "--warmup-epochs",
        click.FloatRange(min=0.0),
        "Linear learning-rate warm-up over this many epochs (0 = none).",
    ),
    "normalization": (
        "--normalization",
        click.Choice(TRAINING_CHOICES["normalization"]),
        "Normalisation after each U-Net convolution: none (the paper) or batch.",
    ),
    "jit_compile": (
        "--jit-compile",
        click.Choice(["auto", "on", "off"]),
        "Compile the training step with XLA: auto = on a GPU, not on a CPU-only machine (where "
        "XLA measured 2-8x slower); results differ only by floating-point round-off.",
    ),
}


def training_options(
    defaults: TrainingSettings,
    *,
    strategies: Sequence[str] = STRATEGIES,
    help_overrides: dict[str, str] | None = None,
) -> Callable[[F], F]:
    """Add one option per training setting, with the values of ``defaults`` as defaults."""
    helps = help_overrides or {}

    def decorate(command: F) -> F:
        for name in reversed(list(_TRAINING_OPTIONS)):
            flag, kind, text = _TRAINING_OPTIONS[name]
            text = helps.get(name, text)
            if name == "strategy":
                kind = click.Choice(list(strategies))
            command = _option(flag, name, kind, text, getattr(defaults, name))(command)
        return command

    return decorate


def training_settings(options: dict[str, Any], defaults: TrainingSettings) -> TrainingSettings:
    """Pop the training options from a command's keyword arguments into a TrainingSettings.

    Options the user did not give on the command line keep the value of ``defaults`` (which may
    differ from the defaults shown, e.g. under ``mssoft demo --quick``).
    """
    ctx = click.get_current_context(silent=True)
    given = {}
    for field in fields(TrainingSettings):
        if field.name not in _TRAINING_OPTIONS:
            continue
        value = options.pop(field.name)
        source = ctx.get_parameter_source(field.name) if ctx is not None else None
        if source is not None and source not in (
            click.core.ParameterSource.DEFAULT,
            click.core.ParameterSource.DEFAULT_MAP,
        ):
            given[field.name] = value
    return replace(defaults, **given)
