"""Reading a CSV manifest as mssoft data: any layout, one row per scan.

Columns ``scan``, ``patient`` (optional; defaults to the scan id), one column per modality
(``flair`` required, any others such as ``t1``, ``t2``, ``pd``) and ``mask1``, ``mask2``, ...
(optional). Relative paths are relative to the manifest's folder. Empty cells mean "absent".
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from mssoft.errors import DataError
from mssoft.files.scan_files import ScanFiles, ScanLayout, normalise_modality

__all__ = ["LAYOUT", "is_manifest", "discover_manifest"]

_MASK_COLUMN = re.compile(r"^mask(\d+)$")


def is_manifest(path: Path) -> bool:
    """Whether ``path`` is a ``.csv`` file."""
    return path.is_file() and path.suffix.lower() == ".csv"


def discover_manifest(manifest: Path, *, label: str | int | None = None) -> list[ScanFiles]:
    """The scans a CSV manifest lists, in its order.

    Parameters
    ----------
    manifest : Path
        The ``.csv`` file.
    label : ignored
        Every layout reader takes it (:class:`~mssoft.files.scan_files.ScanLayout`); the masks a
        manifest lists are binary.

    Returns
    -------
    list of ScanFiles
        In the order of the manifest's rows.

    Raises
    ------
    DataError
        An unreadable file, a missing column or file, a duplicate scan or modality (the message
        names the file and line).
    """
    base = manifest.parent
    try:
        # utf-8-sig: also reads the byte-order mark of Excel's "CSV UTF-8"
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: cannot read CSV manifest ({exc})") from None
    if not rows:
        raise DataError(f"{manifest}: manifest has no rows")
    columns = [c.strip().lower() for c in rows[0].keys() if c is not None]
    for required in ("scan", "flair"):
        if required not in columns:
            raise DataError(
                f"{manifest}: manifest has no '{required}' column (columns: {', '.join(columns)})"
            )
    scans: list[ScanFiles] = []
    seen: set[str] = set()
    for line, raw in enumerate(rows, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        scan_id = row["scan"]
        if not scan_id:
            raise DataError(f"{manifest}:{line}: empty 'scan' value")
        if scan_id in seen:
            raise DataError(f"{manifest}:{line}: duplicate scan '{scan_id}'")
        seen.add(scan_id)
        images: dict[str, Path] = {}
        masks: dict[int, Path] = {}
        for column, value in row.items():
            if column in ("scan", "patient") or not value:
                continue
            path = Path(value) if Path(value).is_absolute() else base / value
            if not path.is_file():
                raise DataError(f"{manifest}:{line}: {column} file not found: {path}")
            mask_match = _MASK_COLUMN.match(column)
            if mask_match:
                masks[int(mask_match.group(1))] = path
            else:
                modality = normalise_modality(column)
                if modality in images:
                    raise DataError(f"{manifest}:{line}: two columns name modality {modality}")
                images[modality] = path
        if "flair" not in images:
            raise DataError(f"{manifest}:{line}: scan '{scan_id}' has no flair file")
        ordered = {"flair": images.pop("flair"), **images}
        scans.append(
            ScanFiles(scan_id, row.get("patient") or scan_id, ordered, dict(sorted(masks.items())))
        )
    return scans


#: The CSV manifest in the registry :data:`mssoft.files.scans.LAYOUTS`.
LAYOUT = ScanLayout(
    name="manifest",
    description="CSV manifest (.csv file)",
    detect=is_manifest,
    discover=discover_manifest,
    is_file=True,
)
