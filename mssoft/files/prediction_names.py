"""Where ``mssoft predict`` writes each scan's files, by naming convention, and where ``evaluate``
finds them again.

Namings (``--naming``)::

    mssoft   <scan>_prob.nii.gz, <scan>_seg.nii.gz                    (default for ISBI/manifests)
    nnunet   <case>.nii.gz (segmentation), <case>_prob.nii.gz          (default for nnU-Net data)
    bids     sub-<s>/[ses-<t>/]anat/<entities>_space-orig_label-lesion_probseg.nii.gz
             sub-<s>/[ses-<t>/]anat/<entities>_space-orig_label-lesion_mask.nii.gz
             each with a JSON sidecar                                   (default for BIDS data)

``<entities>`` are the FLAIR file's ``sub``, ``ses``, ``acq``, ``ce``, ``rec`` and ``run``
entities, so the derivatives sit beside their source in the BIDS tree. The QC picture of every
naming is ``qc/<scan>_qc.png``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mssoft.errors import ConfigError
from mssoft.files.layout import CONFIG_NAME, prob_path, qc_path, seg_path

__all__ = [
    "NAMINGS",
    "ScanOutputs",
    "scan_outputs",
    "default_naming",
    "find_segmentation",
    "bids_entities",
    "BIDS_SPACE",
]

NAMINGS = ("mssoft", "nnunet", "bids")
#: The ``space-`` label of outputs on the grid of their input image.
BIDS_SPACE = "orig"
_KEPT_ENTITIES = ("sub", "ses", "acq", "ce", "rec", "run")
_ENTITY = re.compile(r"^([A-Za-z]+)-([A-Za-z0-9]+)$")


@dataclass(frozen=True)
class ScanOutputs:
    """The files of one predicted scan.

    Attributes
    ----------
    prob, seg : Path
        Probabilities (float32 NIfTI), segmentation (uint8 NIfTI).
    qc : Path or None
        QC picture (PNG); None when no QC pictures are drawn.
    prob_sidecar, seg_sidecar : Path or None
        JSON sidecars (BIDS naming only).
    """

    prob: Path
    seg: Path
    qc: Path | None
    prob_sidecar: Path | None = None
    seg_sidecar: Path | None = None

    def relative(self, folder: Path) -> dict[str, str]:
        """The files as paths relative to ``folder`` (for ``config.json``)."""
        named = {"prob": self.prob, "seg": self.seg, "qc": self.qc}
        named |= {"prob_sidecar": self.prob_sidecar, "seg_sidecar": self.seg_sidecar}
        return {k: v.relative_to(folder).as_posix() for k, v in named.items() if v is not None}


def bids_entities(flair: Path) -> list[tuple[str, str]]:
    """The entities of a BIDS FLAIR file name that its derivatives keep, in BIDS order."""
    name = flair.name.split(".")[0]
    found = dict(m.groups() for part in name.split("_")[:-1] if (m := _ENTITY.match(part)))
    return [(k, found[k]) for k in _KEPT_ENTITIES if k in found]


def default_naming(data_kind: str) -> str:
    """The naming used without ``--naming``: that of the input's layout."""
    return {"nnunet": "nnunet", "bids": "bids"}.get(data_kind, "mssoft")


def scan_outputs(
    folder: Path, scan_id: str, naming: str, flair: Path | None = None, *, qc: bool = True
) -> ScanOutputs:
    """The output files of one scan under ``folder``.

    Parameters
    ----------
    folder : Path
        The predict output folder.
    scan_id : str
    naming : {"mssoft", "nnunet", "bids"}
    flair : Path, optional
        The scan's FLAIR file (required by the BIDS naming: its entities name the outputs).
    qc : bool, optional
        Whether a QC picture is drawn (else ``ScanOutputs.qc`` is None).

    Raises
    ------
    ConfigError
        Unknown naming, or BIDS naming for a FLAIR file that is not BIDS-named.
    """
    picture = qc_path(folder, scan_id) if qc else None
    if naming == "mssoft":
        return ScanOutputs(prob_path(folder, scan_id), seg_path(folder, scan_id), picture)
    if naming == "nnunet":
        return ScanOutputs(prob_path(folder, scan_id), folder / f"{scan_id}.nii.gz", picture)
    if naming != "bids":
        raise ConfigError(f"Invalid value for `--naming`: {naming!r} (one of {', '.join(NAMINGS)})")
    entities = bids_entities(flair) if flair is not None else []
    if not entities or entities[0][0] != "sub":
        raise ConfigError(
            f"Invalid value for `--naming`: bids needs BIDS-named inputs; {flair} is not one"
        )
    found = dict(entities)
    anat = folder / f"sub-{found['sub']}"
    if "ses" in found:
        anat = anat / f"ses-{found['ses']}"
    anat = anat / "anat"
    stem = "_".join(f"{k}-{v}" for k, v in entities) + f"_space-{BIDS_SPACE}_label-lesion"
    return ScanOutputs(
        anat / f"{stem}_probseg.nii.gz",
        anat / f"{stem}_mask.nii.gz",
        picture,
        anat / f"{stem}_probseg.json",
        anat / f"{stem}_mask.json",
    )


def find_segmentation(folder: Path, scan_id: str) -> tuple[Path, Path | None] | None:
    """The segmentation (and probability map, if any) of a scan in a predict output folder.

    Looks first at the files the folder's ``config.json`` lists for the scan (any naming), then
    at ``<scan>_seg.nii.gz`` and at ``<scan>.nii.gz`` (nnU-Net's own naming).

    Returns
    -------
    (seg, prob) or None
        ``prob`` is None when there is no probability map; None when no segmentation is found.
    """
    try:
        listed = json.loads((folder / CONFIG_NAME).read_text()).get("scans", {}).get(scan_id, {})
    except (OSError, ValueError, AttributeError):
        listed = {}
    if isinstance(listed, dict) and isinstance(listed.get("seg"), str):
        seg = folder / listed["seg"]
        prob = folder / listed["prob"] if isinstance(listed.get("prob"), str) else None
        if seg.is_file():
            return seg, prob if prob is not None and prob.is_file() else None
    for seg in (seg_path(folder, scan_id), folder / f"{scan_id}.nii.gz"):
        if seg.is_file():
            prob = prob_path(folder, scan_id)
            return seg, prob if prob.is_file() else None
    return None

