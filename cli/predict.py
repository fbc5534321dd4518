"""``mssoft predict``: segment scans with a trained (and calibrated) run."""

from __future__ import annotations

from pathlib import Path

import click

from mssoft.files.layout import CALIBRATION_NAME
from mssoft.files.prediction_names import NAMINGS
from mssoft.workflows.predict import predict_files, predict_folder

from ._common import echo_line, inference_options, out_option, progress

_IMAGE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("predict")
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="RUN [RUN...] [DATA]",
)
@out_option("Output folder (created; must not be inside DATA nor be RUN).")
@click.option("--flair", type=_IMAGE, default=None, help="One scan's FLAIR image (instead of DATA).")
@click.option("--t1", type=_IMAGE, default=None, help="Its T1 image (if the run uses T1).")
@click.option("--t2", type=_IMAGE, default=None, help="Its T2 image (if the run uses T2).")
@click.option("--pd", type=_IMAGE, default=None, help="Its PD image (if the run uses PD).")
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
    "--naming",
    type=click.Choice(NAMINGS),
    default=None,
    help="Output file names: mssoft (<scan>_seg.nii.gz), nnunet (<case>.nii.gz) or bids "
    "(BIDS derivatives; BIDS DATA only)  [default: that of DATA's layout]",
)
@click.option("--no-qc", is_flag=True, help="Skip the QC pictures (qc/<scan>_qc.png, qc.md).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier predict in OUT: all its outputs are removed first.",
)
def predict(
    paths: tuple[Path, ...],
    out: Path,
    flair: Path | None,
    t1: Path | None,
    t2: Path | None,
    pd: Path | None,
    threshold: float | None,
    min_size: int | None,
    scans: str | None,
    batch_size: int,
    resample: bool,
    mixed_precision: bool,
    tta: str,
    trust_savedmodel: bool,
    calibration: Path | None,
    naming: str | None,
    no_qc: bool,
    overwrite: bool,
) -> None:
    """Segment the scans of DATA (or one scan: --flair FILE ...) with the model of RUN.

    RUN is a run folder of `mssoft fit` or an export folder of `mssoft export` (same outputs);
    several RUN folders make an ensemble: their probabilities are averaged. DATA is a data folder
    (ISBI 2015, nnU-Net v2 raw or a bare folder of <case>_XXXX.nii.gz images, BIDS) or a CSV
    manifest (masks are not needed); without DATA, --flair (and --t1/--t2/--pd as the run needs)
    give one scan. Writes the probabilities (float32) and segmentation (uint8, 0/1) of each scan
    on its FLAIR grid and orientation, lesions.csv (a row per lesion) and scans.csv (a row per
    scan), qc/<scan>_qc.png and qc.md, and OUT/config.json. With BIDS DATA, OUT may be
    DATA/derivatives/NAME: a BIDS derivative dataset (tables as .tsv). A scan whose voxel size is
    more than 20% off the run's training voxel size gets a warning (--resample).
    """
    images = {"flair": flair, "t1": t1, "t2": t2, "pd": pd}
    options = dict(
        threshold=threshold,
        min_size=min_size,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        overwrite=overwrite,
        progress=progress,
        resample=resample,
        tta=tta,
        trust_savedmodel=trust_savedmodel,
        calibration=calibration,
        naming=naming,
        qc=not no_qc,
    )
    if any(v is not None for v in images.values()):
        runs = paths
        if scans is not None:
            raise click.UsageError("--scans applies to DATA, not to one scan given by --flair")
        report = predict_files(runs, images, out, **options)
    else:
        if len(paths) < 2:
            raise click.UsageError("expected RUN [RUN...] DATA, or RUN --flair FILE")
        runs, data = paths[:-1], paths[-1]
        report = predict_folder(runs, data, out, scans=scans, **options)
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
