"""The lesion tables of ``mssoft predict`` as files: ``lesions.csv`` and ``scans.csv``.

The rows come from :mod:`mssoft.arrays.lesion_table`; this module writes them (comma-separated,
or tab-separated ``.tsv`` in a BIDS derivative dataset, NaN written as ``n/a`` there), and
measures a segmentation that is already on disk (:func:`measure_files`), so the same tables can
be made for any segmentation, in Python, without predicting again.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.lesion_table import (
    LESION_COLUMNS,
    SCAN_COLUMNS,
    LesionRow,
    ScanRow,
    lesion_rows,
    scan_row,
)
from mssoft.arrays.lesions import DEFAULT_CONNECTIVITY
from mssoft.files.atomic import atomic_path
from mssoft.files.layout import LESIONS_NAME, SCANS_NAME
from mssoft.files.nifti import check_same_grid, read_volume

__all__ = [
    "table_paths",
    "write_lesion_tables",
    "measure_files",
]



def table_paths(folder: str | Path, *, tsv: bool = False) -> tuple[Path, Path]:
    """``folder/lesions.csv`` and ``folder/scans.csv`` (``.tsv`` with ``tsv``)."""
    suffix = ".tsv" if tsv else ".csv"
    return Path(folder) / f"{LESIONS_NAME}{suffix}", Path(folder) / f"{SCANS_NAME}{suffix}"


def _cell(value: Any, tsv: bool) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a" if tsv else "nan"
        return f"{value:.6g}"
    return value


def _write(rows: Sequence[Any], columns: Sequence[str], path: Path, tsv: bool) -> Path:
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if tsv else ",", lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                record = row.to_dict()
                writer.writerow([_cell(record[c], tsv) for c in columns])
    return path


def write_lesion_tables(
    folder: str | Path,
    lesions: Sequence[LesionRow],
    scans: Sequence[ScanRow],
    *,
    tsv: bool = False,
) -> tuple[Path, Path]:
    """Write ``lesions.csv`` (a row per lesion) and ``scans.csv`` (a row per scan), atomically.

    Parameters
    ----------
    folder : path-like
    lesions, scans : sequences of rows
    tsv : bool, optional
        Tab-separated ``.tsv`` files with ``n/a`` for missing values (BIDS).

    Returns
    -------
    (Path, Path)
        The lesion table and the scan table.
    """
    lesion_file, scan_file = table_paths(folder, tsv=tsv)
    _write(lesions, LESION_COLUMNS, lesion_file, tsv)
    _write(scans, SCAN_COLUMNS, scan_file, tsv)
    return lesion_file, scan_file


def measure_files(
    scan: str,
    seg_file: str | Path,
    *,
    prob_file: str | Path | None = None,
    flair_file: str | Path | None = None,
    threshold: float = float("nan"),
    min_size: int = 0,
    model: str = "",
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> tuple[list[LesionRow], ScanRow]:
    """The lesion-table rows of a segmentation file (and its probability map and FLAIR image).

    Parameters
    ----------
    scan : str
        Scan id of the rows.
    seg_file : path-like
        Binary segmentation (non-zero voxels are lesion).
    prob_file, flair_file : path-like, optional
        Probabilities (mean and maximum per lesion) and the skull-stripped FLAIR (brain volume);
        both on the segmentation's grid.
    threshold, min_size, model, connectivity
        As the segmentation was made (written into the scan row; ``connectivity`` also defines
        the lesions).

    Returns
    -------
    (list of LesionRow, ScanRow)

    Raises
    ------
    DataError
        A file is unreadable, or not on the segmentation's grid.
    """
    seg, meta = read_volume(seg_file)
    metas, prob, brain = [meta], None, None
    if prob_file is not None:
        prob, prob_meta = read_volume(prob_file)
        metas.append(prob_meta)
    if flair_file is not None:
        flair, flair_meta = read_volume(flair_file)
        metas.append(flair_meta)
        brain = np.isfinite(flair) & (flair != 0)
    check_same_grid(metas)
    rows = lesion_rows(scan, seg, meta.ras_affine, prob, connectivity=connectivity)
    if brain is None:
        brain = seg[:0]  # no brain volume known
    summary = scan_row(
        scan, rows, brain, meta.ras_affine, threshold=threshold, min_size=min_size, model=model
    )
    return rows, summary
