"""``mssoft fit``: train the U-Net on soft (or binary) masks and write a run folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mssoft.errors import ConfigError
from mssoft.workflows.settings import MaskConfig, TrainingSettings

from ._common import (
    COMMA_LIST,
    DATA_ARGUMENT,
    MASK_OPTION_NAMES,
    _quiet,
    mask_config,
    mask_options,
    out_option,
    training_options,
    training_settings,
)


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (rather than click's default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (
        click.core.ParameterSource.DEFAULT,
        click.core.ParameterSource.DEFAULT_MAP,
    )


def _option_names(names: list[str]) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


@click.command("fit")
@DATA_ARGUMENT
@out_option("Run folder (created; must be new or empty unless --resume).")
@click.option(
    "--masks",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Soft masks from `mssoft build-masks` (their rater and settings are recorded there).",
)
@mask_options(
    MaskConfig(ratio=1.0),
    help_overrides={
        "ratio": "Without --masks: build soft masks on the fly, grown to RATIO times the lesion "
        "volume (1 = the rater's binary mask, the paper's baseline; 1.2 = the paper's best).",
        "gamma": "Soft label of the grown ring (with --ratio > 1).",
        "flair_threshold": "Ring voxels darker than this FLAIR value get 0 (with --ratio > 1): "
        "'pNN', a number or 'none'.",
    },
)
@click.option(
    "--rater",
    type=click.IntRange(min=1),
    default=None,
    show_default="1, or the rater of --masks",
    help="Whose masks to train on; slices without a lesion of this rater are left out.",
)
@click.option(
    "--patients",
    default=None,
    type=COMMA_LIST,
    show_default="all patients with masks",
    help="Train and validate on these patients only, comma-separated.",
)
@training_options(TrainingSettings())
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out from its last completed epoch."
)
@click.pass_context
def fit(
    ctx: click.Context,
    data: Path,
    out: Path,
    masks: Path | None,
    rater: int | None,
    patients: tuple[str, ...] | None,
    resume: bool,
    **options: Any,
) -> None:
    """Train the 2D U-Net with the soft Dice loss on the lesion slices of DATA.

    DATA is a data folder (ISBI 2015, nnU-Net v2 raw or BIDS) or a CSV manifest; only scans with
    a mask of the rater are used. The targets are, in this order of precedence: the soft masks
    of --masks; soft masks built on the fly when --ratio > 1 (with --gamma, --flair-threshold,
    --per-lesion, --ring) or --raters names several raters (the share of raters inside the union
    of their masks); otherwise the rater's binary masks (the paper's baseline).

    Writes OUT/model.keras (best validation loss), OUT/config.json (modalities in channel order,
    rater, mask source, train/validation scans, ...), OUT/split.json, OUT/history.csv,
    TensorBoard logs in OUT/logs and the training state in OUT/backup (for --resume). Progress
    goes to stderr: one line per epoch, and a bar over each epoch's batches when stderr is a
    terminal (not with -q); the summary to stdout.

    With --strategy multiworker, start the same command on every machine (OUT on a shared file
    system) with TF_CONFIG naming the cluster and the machine's place in it; only the chief
    (worker 0) writes OUT. Add --resume so that a cluster restarted after a failure continues
    from the last completed epoch.
    """
    from mssoft.workflows.settings import TrainConfig

    given = [name for name in MASK_OPTION_NAMES if _given(ctx, name)]
    mask = None
    if masks is not None:
        if given:
            raise ConfigError(
                f"Invalid value for `--masks`: {_option_names(given)} build masks on the fly "
                "and cannot be combined with --masks"
            )
    else:
        mask = mask_config(options, MaskConfig(ratio=1.0), rater=rater)
        extra = [name for name in given if name not in ("ratio", "raters")]
        if mask.params.ratio == 1.0 and extra:  # gamma 0 is binary too, but then --gamma was given
            raise ConfigError(
                f"Invalid value for `--ratio`: 1 trains on binary masks, so "
                f"{_option_names(extra)} would have no effect; pass --ratio > 1 (e.g. 1.2)"
            )

    config = TrainConfig.from_settings(
        training_settings(options, TrainingSettings()),
        data=data,
        out=out,
        masks=masks,
        mask=mask,
        rater=rater,
        patients=patients,
        resume=resume,
    )
    from mssoft.workflows.fit import fit as run_fit  # imports TensorFlow

    try:
        result = run_fit(config, callbacks=_progress_callbacks())
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted: {config.out.expanduser().resolve()} keeps every completed epoch; "
            "run the same command with --resume to continue.",
            err=True,
        )
        raise
    best = "nan" if result.best_loss is None else f"{result.best_loss:.4f}"
    click.echo(
        f"epochs={result.epochs}\tbest_epoch={result.best_epoch}\tbest_{result.monitor}={best}\t"
        f"model={result.model_path}"
    )


def _progress_callbacks() -> list[Any]:
    """A per-batch progress bar on stderr when it is a terminal and ``-q`` is not given."""
    if _quiet() or not sys.stderr.isatty():
        return []
    from mssoft.nn.progress_bar import BatchProgressBar  # imports TensorFlow

    return [BatchProgressBar(sys.stderr)]
