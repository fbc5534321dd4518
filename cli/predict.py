"""``mssoft predict``: segment scans with a trained (and calibrated) run."""

from __future__ import annotations

from pathlib import Path

import click

from mssoft.files.layout import CALIBRATION_NAME
from mssoft.workflows.predict import predict_folder

from ._common import DATA_ARGUMENT, echo_line, inference_options, out_option, progress


@click.command("predict")
@click.argument(
    "runs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="RUN [RUN...]",
)
@DATA_ARGUMENT
@out_option("Output folder (created; must not be inside DATA nor be RUN).")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Lesion where prob >= THRESHOLD  [default: RUN/calibration.json, else 0.5]",
)
@click.option(
    "--min-size",
    type=click.IntRange(min=0),
    default=None,
    help="Keep lesions of more than MIN_SIZE voxels  [default: RUN/calibration.json, else 18]",
)
@click.option(
    "--scans", default=None, metavar="IDS", help="Comma-separated scan ids  [default: all]"
)
@click.option("--batch-size", default=16, type=click.IntRange(min=1), help="Slices per model call.")
@inference_options(
    "Test-time augmentation: flip = average each slice's probabilities with those of its "
    "left-right mirror."
)
@click.option(
    "--calibration",
    default=None,
    type=click.Path(exists=True, path_type=Path),
    help="Folder (or file) with the calibration.json to use  [default: RUN/calibration.json; "
    "an ensemble's comes from `mssoft calibrate RUN... DATA --out FOLDER`]",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier predict in OUT: all its outputs are removed first.",
)
def predict(
    runs: tuple[Path, ...],
    data: Path,
    out: Path,
    threshold: float | None,
    min_size: int | None,
    scans: str | None,
    batch_size: int,
    resample: bool,
    mixed_precision: bool,
    tta: str,
    trust_savedmodel: bool,
    calibration: Path | None,
    overwrite: bool,
) -> None:
    """Segment the scans of DATA with the model of RUN (or the mean of several RUNs).

    RUN is a run folder of `mssoft fit` or an export folder of `mssoft export` (same outputs);
    several RUN folders make an ensemble: their probabilities are averaged. DATA is a data folder
    (ISBI 2015, nnU-Net v2 raw or BIDS) or a CSV manifest (masks are not needed). Writes
    OUT/<scan>_prob.nii.gz (float32 probabilities) and OUT/<scan>_seg.nii.gz (uint8, 0/1) on each
    scan's FLAIR grid and orientation, and OUT/config.json. A scan whose voxel size is more than
    20% off the run's training voxel size gets a warning (--resample).
    """
    report = predict_folder(
        runs,
        data,
        out,
        threshold=threshold,
        min_size=min_size,
        scans=scans,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        overwrite=overwrite,
        progress=progress,
        resample=resample,
        tta=tta,
        trust_savedmodel=trust_savedmodel,
        calibration=calibration,
    )
    if report.threshold_source == "default":
        where = runs[0] / CALIBRATION_NAME if len(runs) == 1 else "--calibration"
        echo_line(
            f"warning: {where} not found; used threshold "
            f"{report.binarisation.threshold:g} and min_size {report.binarisation.min_size} "
            "(run `mssoft calibrate` first)"
        )
    for scan in report.scans:
        echo_line(
            f"{scan.scan_id}\tlesions={scan.lesions}\tvolume_ml={scan.volume_ml:.3f}\tseg={scan.seg_path}"
        )
    b = report.binarisation
    click.echo(
        f"total\tscans={len(report.scans)}\tthreshold={b.threshold:g}\tmin_size={b.min_size}"
        f"\tthreshold_source={report.threshold_source}\tout={report.out}"
    )
