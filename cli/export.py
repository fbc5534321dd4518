"""``mssoft export``: a run's model as a TensorFlow SavedModel plus ``mssoft.json``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import out_option


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="RUN")
@out_option("Export folder (created; must be new or empty unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in OUT.")
def export(run: Path, out: Path, overwrite: bool) -> None:
    """Export the model of RUN for TensorFlow Serving and plain TensorFlow.

    Writes OUT/1 (a TensorFlow SavedModel; signature serving_default: input `slices`, float32
    (batch, X, Y, C) normalised axial slices of any size; output `probabilities`, float32
    (batch, X, Y, 1)), OUT/mssoft.json (modalities in channel order, normalisation, threshold,
    minimum lesion size, training voxel size and orientation, versions), OUT/model.keras (the
    run's Keras model, which `mssoft predict OUT` loads instead of running the SavedModel),
    OUT/calibration.json when RUN is calibrated, and OUT/config.json. `mssoft predict OUT DATA`
    gives the same outputs as `mssoft predict RUN DATA`; TensorFlow Serving serves OUT as it is.
    A SavedModel is a program: serve only export folders you trust.
    """
    from mssoft.workflows.export import export_run  # imports TensorFlow when it runs

    report = export_run(run, out, overwrite=overwrite)
    b = report.binarisation
    click.echo(
        f"saved_model={report.saved_model}\tthreshold={b.threshold:g}\tmin_size={b.min_size}"
        f"\tcalibrated={str(report.calibrated).lower()}\tout={report.out}"
    )
