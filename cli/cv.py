"""``mssoft cv``: leave-one-patient-out cross-validation over ratio and gamma."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mssoft.arrays.soft_masks import RING_MODES
from mssoft.choices import TTA_MODES
from mssoft.errors import ConfigError
from mssoft.experiments.cv.plan import parse_float_list, parse_shard
from mssoft.files.layout import CV_COMPARISON_NAME, CV_RESULTS_NAME, CV_TABLE_NAME
from mssoft.workflows.settings import MaskConfig, TrainingSettings

from ._common import (
    DATA_ARGUMENT,
    mask_config,
    mask_options,
    out_option,
    training_options,
    training_settings,
)


@click.command("cv")
@DATA_ARGUMENT
@out_option("Sweep folder; re-running the same command there skips finished cells.")
@click.option(
    "--ratios",
    default="1.0,1.1,1.2,1.3,1.4",
    help="Mask sizes to try, comma-separated (1.0 = the binary baseline).",
)
@click.option("--gammas", default="0.3", help="Soft labels to try, comma-separated.")
@click.option(
    "--repeats",
    default=1,
    type=click.IntRange(min=1),
    help="Models per cell with seeds SEED, SEED+1, ... (the paper used 5).",
)
@click.option(
    "--rater",
    default=1,
    type=click.IntRange(min=1),
    help="Rater whose masks are softened and trained on (all raters are evaluated).",
)
@mask_options(
    MaskConfig(),
    exclude=("ratio", "gamma", "ring", "raters"),  # grid axes: --ratios, --gammas, --rings, ...
    help_overrides={
        "flair_threshold": "Soft-mask FLAIR threshold ('pNN', a number or 'none').",
        "ring_sigma": "Width in mm of the gaussian ring.",
    },
)
@click.option(
    "--raters",
    "raters",
    multiple=True,
    metavar="K[,K...]",
    help="Grid axis, repeatable: the raters whose share makes the label, e.g. --raters 1 "
    "--raters 1,2 (one rater = --rater's binary or soft masks)  [default: --rater alone]",
)
@click.option(
    "--rings",
    default="constant",
    show_default=True,
    help=f"Grid axis: ring profiles, comma-separated ({', '.join(RING_MODES)}).",
)
@click.option(
    "--tta",
    default="none",
    show_default=True,
    help="Grid axis: test-time augmentation of calibration and prediction, comma-separated "
    f"({', '.join(TTA_MODES)}).",
)
@training_options(
    TrainingSettings(),
    strategies=("auto", "default", "mirrored"),
    help_overrides={"seed": "First seed: repeat k uses SEED+k."},
)
@click.option(
    "--jobs",
    default=1,
    type=click.IntRange(min=1),
    help="Processes running cells at once (process k gets GPU k when there are enough).",
)
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="Run only every N-th cell starting at the K-th: start K=1..N on several machines "
    "sharing OUT, then run once more without --shard to write the table.",
)
def cv(
    data: Path,
    out: Path,
    ratios: str,
    gammas: str,
    repeats: int,
    rater: int,
    raters: tuple[str, ...],
    rings: str,
    tta: str,
    jobs: int,
    shard: str | None,
    **options: Any,
) -> None:
    """Leave-one-patient-out cross-validation over soft-mask settings (the paper's Tables 1/2).

    For each held-out patient, grid point (ratio x gamma) and repeat: fit on the other patients,
    calibrate the threshold on them, predict the held-out patient and evaluate it against every
    rater. --raters, --rings and --tta add grid axes beyond the paper (soft labels from several
    raters, graded rings, test-time augmentation); a grid without the binary point gets it
    added. Beside the models, the FLAIR-threshold baseline (one z-score threshold on the FLAIR,
    calibrated per fold on the training scans; OUT/cells/PATIENT/flair_baseline.json). Writes
    OUT/cv_results.csv, OUT/cv_scans.csv, OUT/comparison.csv (every grid point against the binary
    model and against the FLAIR-threshold baseline on the same scans and seeds: mean difference,
    95 % bootstrap CI, Wilcoxon p), OUT/table.md and OUT/sweep.png, and prints the table, the
    comparisons and the best of the paper's grid points among those whose models learned (beat
    the baseline on their validation slices). Re-running the command on an existing sweep adds
    the baseline without retraining finished cells.
    """
    from mssoft.experiments.cv.run import CVConfig, run_cv

    rater_sets: tuple[tuple[int, ...] | None, ...] = (None,)
    if raters:
        configs = [MaskConfig(raters=r) for r in raters]
        single = [c.rater for c in configs if c.raters is None and c.rater != rater]
        if single:
            raise ConfigError(
                f"Invalid value for `--raters`: {single[0]} alone is --rater {single[0]}; a "
                "single-rater entry must be the sweep's --rater"
            )
        rater_sets = tuple(dict.fromkeys(c.raters for c in configs))

    config = CVConfig(
        data=data,
        out=out,
        ratios=parse_float_list(ratios, option="--ratios"),
        gammas=parse_float_list(gammas, option="--gammas"),
        repeats=repeats,
        mask=mask_config(options, MaskConfig(), rater=rater),
        training=training_settings(options, TrainingSettings()),
        shard=parse_shard(shard),
        jobs=jobs,
        raters=rater_sets,
        rings=tuple(r.strip() for r in rings.split(",") if r.strip()),
        tta=tuple(t.strip() for t in tta.split(",") if t.strip()),
    )
    result = run_cv(config)
    click.echo(
        f"cells: {result.cells_done}/{result.cells_total} finished ({result.cells_run} run now)"
    )
    if not result.complete:
        click.echo(
            f"incomplete: re-run the same command to finish; partial results in {result.out}"
        )
    if result.rows:
        click.echo((result.out / CV_TABLE_NAME).read_text().rstrip())
    click.echo(f"results: {result.out / CV_RESULTS_NAME}")
    if result.comparisons:
        click.echo(f"paired comparison: {result.out / CV_COMPARISON_NAME}")
