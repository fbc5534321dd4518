"""``mssoft evaluate``: compare segmentations with every rater."""

from __future__ import annotations

from pathlib import Path

import click

from mssoft.workflows.evaluate import evaluate_folder, format_report

from ._common import DATA_ARGUMENT, out_option, progress


@click.command("evaluate")
@click.argument(
    "pred", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="PRED"
)
@DATA_ARGUMENT
@out_option("Output folder for metrics.csv and summary.json (created).")
@click.option(
    "--rater",
    "raters",
    type=click.IntRange(min=1),
    multiple=True,
    help="Reference rater; repeat for several  [default: every rater of DATA]",
)
@click.option(
    "--scans",
    default=None,
    metavar="IDS",
    help="Comma-separated scan ids  [default: every scan with a rater mask]",
)
@click.option(
    "--inter-rater",
    is_flag=True,
    help="Also compare rater 1 (as segmentation) with rater 2 (as reference): human agreement.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the outputs of an earlier evaluate in OUT."
)
def evaluate(
    pred: Path,
    data: Path,
    out: Path,
    raters: tuple[int, ...],
    scans: str | None,
    inter_rater: bool,
    overwrite: bool,
) -> None:
    """Compare the segmentations in PRED with the rater masks of DATA.

    PRED is a `mssoft predict` output folder (<scan>_seg.nii.gz files). Every scan is compared with
    every rater: Dice, precision, recall, lesion-wise TPR and FPR (18-connected lesions), volume
    differences, and over the scans the volume correlation and the ISBI 2015 raw score. Writes
    OUT/metrics.csv (a row per scan and rater), OUT/summary.json and prints the table.
    """
    evaluation = evaluate_folder(
        pred,
        data,
        out,
        raters=raters or None,
        scans=scans,
        inter_rater=inter_rater,
        overwrite=overwrite,
        progress=progress,
    )
    click.echo(format_report(evaluation))
    click.echo(f"out={evaluation.out}")
