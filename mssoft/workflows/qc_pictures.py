"""QC pictures of ``mssoft predict``: one PNG per scan and a Markdown index of the cohort.

Each PNG shows up to six axial slices through the scan's lesions (the slices of the largest
lesions' centres first, otherwise slices through the brain): the FLAIR image in grey, the
lesion probability as a transparent heat overlay (from 0.1) and the segmentation's outline in
cyan. Slices are shown in neurological convention (the patient's right on the right, marked
``L``/``R``), anterior up. The title names the scan, its lesion count and lesion volume.
Drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mssoft.arrays.lesion_table import LesionRow
from mssoft.files.atomic import atomic_path

__all__ = ["qc_slices", "plot_scan_qc", "QcEntry", "write_qc_index"]

_MAX_SLICES = 6
_PROB_FLOOR = 0.1


def qc_slices(seg: np.ndarray, brain: np.ndarray, lesions: Sequence[LesionRow]) -> list[int]:
    """Axial slices (RAS axis-2 indices) to show, ascending, at most six.

    The centre slices of the largest lesions; without lesions, slices evenly spread through the
    brain (``brain``: bool of shape (X, Y, Z)).
    """
    chosen: list[int] = []
    for row in sorted(lesions, key=lambda r: -r.voxels):
        k = int(round(row.centroid_k))
        if not seg[:, :, k].any():  # a ring-shaped lesion: a slice that holds it
            k = row.first_slice
        if k not in chosen:
            chosen.append(k)
        if len(chosen) == _MAX_SLICES:
            break
    if not chosen:
        filled = np.flatnonzero(brain.any(axis=(0, 1)))
        if filled.size == 0:
            filled = np.arange(seg.shape[2])
        chosen = sorted({int(v) for v in np.linspace(filled[0], filled[-1], 5)[1:-1].round()})
    return sorted(chosen)


def plot_scan_qc(
    path: str | Path,
    scan_id: str,
    flair: np.ndarray,
    prob: np.ndarray,
    seg: np.ndarray,
    lesions: Sequence[LesionRow],
    spacing_mm: Sequence[float],
) -> Path:
    """Write the QC PNG of one scan (atomically).

    Parameters
    ----------
    path : path-like
    scan_id : str
    flair, prob : ndarray of shape (X, Y, Z)
        FLAIR intensities and lesion probabilities, RAS.
    seg : ndarray of shape (X, Y, Z)
        Binary segmentation, RAS.
    lesions : sequence of LesionRow
        The scan's lesions (:func:`mssoft.arrays.lesion_table.lesion_rows`).
    spacing_mm : sequence of 3 float
        Voxel size along the RAS axes (the slices' aspect ratio).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seg = np.asarray(seg) != 0
    brain = flair != 0
    slices = qc_slices(seg, brain, lesions)
    finite = flair[brain] if brain.any() else flair.ravel()
    low, high = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
    volume = sum(r.volume_ml for r in lesions)
    fig, axes = plt.subplots(1, len(slices), figsize=(2.6 * len(slices), 3.2), squeeze=False)
    aspect = float(spacing_mm[1]) / float(spacing_mm[0])
    for ax, k in zip(axes[0], slices, strict=True):
        # rows = y (anterior up with origin="lower"), columns = x (patient's right on the right)
        ax.imshow(flair[:, :, k].T, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=aspect)
        overlay = np.ma.masked_less(prob[:, :, k].T, _PROB_FLOOR)
        ax.imshow(overlay, cmap="hot", vmin=0, vmax=1, alpha=0.45, origin="lower", aspect=aspect)
        if seg[:, :, k].any():
            ax.contour(seg[:, :, k].T.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"axial slice {k}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        for x, label in ((0.02, "L"), (0.98, "R")):
            ax.text(
                x,
                0.5,
                label,
                transform=ax.transAxes,
                color="yellow",
                fontsize=9,
                ha="left" if x < 0.5 else "right",
                va="center",
                fontweight="bold",
            )
    fig.suptitle(f"{scan_id}: {len(lesions)} lesions, {volume:.2f} mL", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class QcEntry:
    """One scan of the QC index: its id, lesion count and volume, and the picture."""

    scan_id: str
    lesions: int
    volume_ml: float
    picture: Path


def write_qc_index(path: str | Path, entries: Sequence[QcEntry]) -> Path:
    """Write the cohort's QC index, a Markdown page listing every scan with its picture.

    Pictures are linked relative to the index (it renders in any Markdown viewer, e.g. VS Code,
    GitHub or ``mkdocs``).
    """
    path = Path(path)
    lines = [
        "# Lesion segmentation QC",
        "",
        f"{len(entries)} scans. Grey: FLAIR; heat: lesion probability (from {_PROB_FLOOR:g}); "
        "cyan: segmentation outline. Neurological view (patient's right on the right).",
        "",
        "| scan | lesions | volume (mL) |",
        "| --- | ---: | ---: |",
    ]
    for e in entries:
        lines.append(f"| [{e.scan_id}](#{e.scan_id.lower()}) | {e.lesions} | {e.volume_ml:.2f} |")
    lines.append("")
    for e in entries:
        link = e.picture.relative_to(path.parent).as_posix()
        lines += [f"## {e.scan_id}", "", f"![{e.scan_id}]({link})", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
