"""Scanner sites: how two centres' scans of the same kind of patients differ.

A model trained at one centre meets, at another, other intensity units and contrasts (another
field strength, other sequence parameters, other preprocessing), other noise and bias fields,
other voxel sizes and slice thicknesses, and other patients' lesion loads. A :class:`Site` holds
those parameters; :func:`mssoft.synthetic.writer.write_site_dataset` writes a site's patients in
the ISBI 2015 layout. Two presets (:data:`SITES`):

``A``
    3T-like, 1 mm isotropic, the phantom's default contrasts and units, low noise and bias: the
    data the rest of mssoft's synthetic examples use.
``B``
    1.5T-like, another vendor's units: lower lesion and tissue contrast (FLAIR lesion-to-white
    matter contrast 70 % of A's), intensities on other scales per modality (FLAIR x3, T1 x0.4,
    ...), twice the noise, a bias field three times stronger, 1.2 x 1.2 mm in-plane voxels, 2 mm
    slice spacing with 3 mm thick slices, and more but smaller lesions.

The anatomy fills the grid, so a site with larger voxels gets a smaller grid for the same head
(:meth:`Site.grid`). All values are parameters, not measurements of real scanners.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mssoft.synthetic.contrast import MODALITIES, TISSUE_INTENSITY

__all__ = ["Site", "SITE_A", "SITE_B", "SITES"]


def _ones() -> dict[str, float]:
    return {m: 1.0 for m in MODALITIES}


@dataclass(frozen=True)
class Site:
    """One scanner site's acquisition and population.

    Attributes
    ----------
    name : str
    contrast : mapping of modality to float
        Every tissue's and the lesions' distance from white matter is multiplied by it (1 = the
        phantom's 3T contrasts; < 1 flatter images).
    intensity_scale : mapping of modality to float
        Global factor on each modality's intensities (the scanner's arbitrary units).
    noise : float
        Rician noise level relative to white matter.
    bias : float
        Standard deviation of the log bias field.
    spacing : tuple of 3 float
        Voxel size in mm (the third axis is the slice axis).
    slice_thickness : float
        Slice thickness in mm (may exceed the slice spacing: overlapping slices).
    n_lesions, lesion_size, new_lesions : float
        Lesion-load distribution of the site's patients (:func:`mssoft.synthetic.make_patient`).
    """

    name: str
    contrast: Mapping[str, float] = field(default_factory=_ones)
    intensity_scale: Mapping[str, float] = field(default_factory=_ones)
    noise: float = 0.03
    bias: float = 0.08
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    slice_thickness: float = 1.0
    n_lesions: float = 60.0
    lesion_size: float = 1.0
    new_lesions: float = 1.0

    def __post_init__(self) -> None:
        for label in ("contrast", "intensity_scale"):
            table = getattr(self, label)
            if set(table) != set(MODALITIES) or not all(v > 0 for v in table.values()):
                raise ValueError(
                    f"Invalid value for `{label}`: expected a positive number for each of "
                    f"{', '.join(MODALITIES)}. Received: {dict(table)}"
                )
        if len(self.spacing) != 3 or min(self.spacing) <= 0 or self.slice_thickness <= 0:
            raise ValueError(
                "Invalid voxel size or slice thickness: expected positive numbers. "
                f"Received: spacing={self.spacing}, slice_thickness={self.slice_thickness}"
            )

    def intensities(self) -> dict[str, dict[str, float]]:
        """Tissue and lesion intensities per modality at this site (arbitrary units)."""
        table = {}
        for modality, levels in TISSUE_INTENSITY.items():
            wm, c, s = levels["wm"], self.contrast[modality], self.intensity_scale[modality]
            table[modality] = {k: s * (wm + c * (v - wm)) for k, v in levels.items()}
        return table

    def grid(self, shape_mm: Sequence[int]) -> tuple[int, int, int]:
        """The grid covering a field of view of ``shape_mm`` millimetres (each side >= 16)."""
        return tuple(max(16, round(n / s)) for n, s in zip(shape_mm, self.spacing, strict=True))

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`mssoft.synthetic.make_patient` for this site."""
        return {
            "spacing": self.spacing,
            "slice_thickness": self.slice_thickness,
            "intensities": self.intensities(),
            "noise": self.noise,
            "bias": self.bias,
            "n_lesions": self.n_lesions,
            "lesion_size": self.lesion_size,
            "new_lesions": self.new_lesions,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        record = asdict(self)
        record["contrast"], record["intensity_scale"] = (
            dict(self.contrast),
            dict(self.intensity_scale),
        )
        record["spacing"] = list(self.spacing)
        return record


SITE_A = Site("A")
SITE_B = Site(
    "B",
    contrast={"flair": 0.7, "t1": 0.8, "t2": 0.85, "pd": 0.9},
    intensity_scale={"flair": 3.0, "t1": 0.4, "t2": 1.6, "pd": 2.2},
    noise=0.06,
    bias=0.15,
    spacing=(1.2, 1.2, 2.0),
    slice_thickness=3.0,
    n_lesions=76.0,
    lesion_size=0.8,
)
#: The preset sites by name.
SITES: dict[str, Site] = {"A": SITE_A, "B": SITE_B}
