"""``mssoft build-masks``: soft masks from expert masks, one file per scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mssoft.workflows.build_masks import build_masks_folder
from mssoft.workflows.settings import MaskConfig

from ._common import (
    DATA_ARGUMENT,
    echo_line,
    mask_config,
    mask_options,
    out_option,
    progress,
)


@click.command("build-masks")
@DATA_ARGUMENT
@out_option("Output folder (created; must not be inside DATA).")
@click.option(
    "--rater",
    default=None,
    type=click.IntRange(min=1),
    show_default="1",
    help="Whose mask to soften.",
)
@mask_options(MaskConfig(ratio=1.2))
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier build-masks in OUT: all its soft masks are removed first.",
)
def build_masks(
    data: Path,
    out: Path,
    rater: int | None,
    overwrite: bool,
    **options: Any,
) -> None:
    """Build soft lesion masks S = M + gamma * D from rater masks M.

    DATA is a data folder (ISBI 2015, nnU-Net v2 raw or BIDS) or a CSV manifest; scans without
    the rater's mask are skipped. D is the ring of voxels nearest to M (in mm) that grows M to
    RATIO times its volume, minus the voxels darker than the FLAIR threshold. With --raters 1,2
    the label inside the union of the raters' masks is the share of raters who marked the voxel
    (0.5 or 1) and the ring is grown from the union; --ring linear|gaussian grades the ring's
    values by distance. Writes OUT/<scan>_softmask.nii.gz (float32, on the rater mask's grid and
    orientation) and OUT/config.json.
    """
    config = mask_config(options, MaskConfig(), rater=rater)
    out, summaries = build_masks_folder(data, out, config, overwrite=overwrite, progress=progress)
    total_lesion = total_ring = 0
    for summary in summaries:
        total_lesion += summary.lesion_voxels
        total_ring += summary.ring_voxels
        echo_line(
            f"{summary.scan_id}\tlesion_voxels={summary.lesion_voxels}\t"
            f"soft_voxels={summary.ring_voxels}\tratio={summary.achieved_ratio:.3f}"
        )
    achieved = (total_lesion + total_ring) / total_lesion if total_lesion else float("nan")
    click.echo(
        f"total\tscans={len(summaries)}\tlesion_voxels={total_lesion}\t"
        f"soft_voxels={total_ring}\tratio={achieved:.3f}\tout={out}"
    )
