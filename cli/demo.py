"""``mssoft demo``: soft against binary training on generated data, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mssoft.experiments.demo.cross_site import cross_site_text, run_cross_site
from mssoft.experiments.demo.report import comparison_text, verdict
from mssoft.experiments.demo.run import run_demo
from mssoft.experiments.demo.types import (
    DEMO_MASK,
    DEMO_TRAINING,
    QUICK,
    QUICK_TRAINING,
    CrossSiteConfig,
    DemoConfig,
    quick_config,
    quick_cross_site_config,
)

from ._common import (
    mask_config,
    mask_options,
    progress,
    training_options,
    training_settings,
)


@click.command("demo")
@click.option(
    "--out",
    "out",
    default=Path("demo_out"),
    type=click.Path(path_type=Path),
    help="Demo folder (created; must be new or empty, or an earlier demo with --overwrite).",
)
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier demo in OUT.")
@click.option(
    "--patients",
    default=None,
    type=click.IntRange(min=1),
    show_default=f"{DemoConfig.patients}; {QUICK['patients']} with --quick",
    help="Training patients (2 time points each).",
)
@click.option(
    "--heldout",
    default=None,
    type=click.IntRange(min=1),
    show_default=f"{DemoConfig.heldout}; {QUICK['heldout']} with --quick",
    help="Held-out patients, segmented and evaluated.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny scans, a tiny network and 2 epochs: the whole pipeline in well under a minute "
    "(a smoke test; the numbers mean nothing).",
)
@click.option(
    "--cross-site",
    "cross_site",
    is_flag=True,
    help="Instead: train one soft-mask model on synthetic site A (3T-like) and segment held-out "
    "patients of site A and of site B (1.5T-like: other contrast, units, noise, bias field, "
    "voxel size, slice thickness and lesion load); report Dice and predicted/true volume per "
    "site. Combine with --augment and --normalise.",
)
@mask_options(
    DEMO_MASK,
    exclude=("raters",),  # the demo softens rater 1's masks
    help_overrides={
        "ratio": "Grow rater 1's masks to this multiple of their volume for the soft model "
        "(> 1; 1.2 = 120 %).",
    },
)
@training_options(
    DEMO_TRAINING,
    strategies=("auto", "default", "mirrored"),
    help_overrides={
        "seed": "Seed of the generated data and of training.",
        "epochs": f"Training epochs of each model ({QUICK_TRAINING.epochs} with --quick).",
        "base_filters": "Filters of the first U-Net level "
        f"({QUICK_TRAINING.base_filters} with --quick).",
        "depth": f"Number of U-Net poolings ({QUICK_TRAINING.depth} with --quick).",
    },
)
def demo(
    out: Path,
    overwrite: bool,
    patients: int | None,
    heldout: int | None,
    quick: bool,
    cross_site: bool,
    **options: Any,
) -> None:
    """Compare soft-mask and binary-mask training end to end on generated data.

    Generates synthetic MS scans with two simulated raters (OUT/data), builds soft masks from
    rater 1 (ratio 1.2, gamma 0.3, FLAIR >= p50, or as --ratio, --gamma, ... say), trains a
    U-Net on the binary masks and one on the soft masks (same seed and slices), calibrates both
    thresholds on the training scans, segments the held-out patients and evaluates both models
    against rater 1, rater 2 and the synthetic truth. Writes OUT/report.md with the comparison
    table and figures (OUT/figures), OUT/comparison.csv and OUT/config.json; every step's own
    output folder stays in OUT. Takes 4 to 7 minutes on two CPU cores. Takes every training
    option of `mssoft fit`. Progress goes to stderr; the table, the verdict and the report path
    to stdout.
    """
    given = {
        name: value
        for name, value in (("patients", patients), ("heldout", heldout))
        if value is not None
    }
    training = training_settings(options, QUICK_TRAINING if quick else DEMO_TRAINING)
    mask = mask_config(options, DEMO_MASK, rater=None)
    settings = dict(out=out, overwrite=overwrite, training=training, mask=mask, **given)
    if cross_site:
        site_config = quick_cross_site_config(**settings) if quick else CrossSiteConfig(**settings)
        outcome = run_cross_site(site_config, progress=progress)
        click.echo(cross_site_text(outcome))
        click.echo(f"wall_seconds={outcome.wall_seconds:.0f}\treport={outcome.report}")
        return
    config = quick_config(**settings) if quick else DemoConfig(**settings)
    result = run_demo(config, progress=progress)

    click.echo(comparison_text(result))
    click.echo(verdict(result).replace("**", "").replace("`", ""))
    click.echo(f"wall_seconds={result.wall_seconds:.0f}\treport={result.report}")
