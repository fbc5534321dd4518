"""``mssoft calibrate``: choose the binarisation threshold on the training scans."""

from __future__ import annotations

from pathlib import Path

import click

from mssoft.arrays.threshold_search import parse_min_sizes, threshold_grid
from mssoft.workflows.calibrate import calibrate_run

from ._common import DATA_ARGUMENT, echo_line, inference_options, progress

RUN_ARGUMENT = click.argument(
    "runs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="RUN [RUN...]",
)


@click.command("calibrate")
@RUN_ARGUMENT
@DATA_ARGUMENT
@click.option(
    "--rater",
    type=click.IntRange(min=1),
    default=None,
    help="Rater whose masks the Dice is computed against  [default: the run's rater]",
)
@click.option(
    "--scans",
    default=None,
    metavar="IDS",
    help="Comma-separated scan ids  [default: the run's training scans, else every scan "
    "of DATA with the rater's mask]",
)
@click.option("--threshold-min", default=0.01, type=float, help="Lowest threshold of the grid.")
@click.option("--threshold-max", default=0.99, type=float, help="Highest threshold of the grid.")
@click.option("--threshold-step", default=0.01, type=float, help="Step of the threshold grid.")
@click.option(
    "--min-sizes",
    default="18",
    metavar="N[,N...]",
    help="Candidate minimum lesion sizes in voxels (lesions of more voxels are kept); "
    "several are searched together with the threshold.",
)
@click.option("--batch-size", default=16, type=click.IntRange(min=1), help="Slices per model call.")
@inference_options(
    "Test-time augmentation: flip = average each slice's probabilities with those of its "
    "left-right mirror (give predict the same --tta)."
)
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for calibration.json  [default: RUN; required with several RUNs: pass it to "
    "`mssoft predict --calibration`]",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing calibration.json.")
def calibrate(
    runs: tuple[Path, ...],
    data: Path,
    rater: int | None,
    scans: str | None,
    threshold_min: float,
    threshold_max: float,
    threshold_step: float,
    min_sizes: str,
    batch_size: int,
    resample: bool,
    mixed_precision: bool,
    tta: str,
    trust_savedmodel: bool,
    out: Path | None,
    overwrite: bool,
) -> None:
    """Choose the threshold maximising the mean per-scan Dice after post-processing.

    RUN is a `mssoft fit` run folder; DATA holds the calibration scans and their rater masks
    (ISBI 2015, nnU-Net v2 raw or BIDS folder, or CSV manifest). Each scan is predicted once;
    the post-processed segmentation (prob >= threshold, then 18-connected lesions of more than
    min-size voxels) is scored at every threshold of the grid. Writes RUN/calibration.json and
    prints the chosen threshold and its mean Dice. Several RUNs make an ensemble (their
    probabilities are averaged); its calibration.json goes to --out FOLDER.
    """
    grid = threshold_grid(threshold_min, threshold_max, threshold_step)
    sizes = parse_min_sizes(min_sizes)
    result = calibrate_run(
        runs,
        data,
        scans=scans,
        rater=rater,
        thresholds=grid,
        min_sizes=sizes,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        overwrite=overwrite,
        progress=progress,
        resample=resample,
        tta=tta,
        trust_savedmodel=trust_savedmodel,
        out=out,
    )
    for scan_id, dice in result.scan_dice().items():
        echo_line(f"{scan_id}\tdice={dice:.4f}")
    chosen = result.binarisation
    click.echo(
        f"threshold={chosen.threshold:g}\tmin_size={chosen.min_size}\tmean_dice={result.mean_dice:.4f}"
        f"\trater={result.rater}\tscans={len(result.scans)}\tout={result.path}"
    )
