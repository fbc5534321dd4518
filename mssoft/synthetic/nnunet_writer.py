"""Writing synthetic scans as an nnU-Net v2 raw dataset (read by :mod:`mssoft.files.nnunet_layout`).

Files under ``root``::

    dataset.json                                   channel_names, labels, numTraining, file_ending
    imagesTr/caseNNN_{0000,0001,...}.nii.gz        float32 images, one file per channel
    labelsTr/caseNNN.nii.gz                        uint8 label map of rater 1
    imagesTs/testNNN_{0000,...}.nii.gz             test cases, no labels

Every case is the first time point of its own synthetic patient. Rater 1's lesions get the value
``lesion_label``; with ``other_label`` the voxels that rater 2 marks and rater 1 does not get that
value, so the label files are real multi-label maps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import write_json
from mssoft.files.nifti import grid_meta, write_volume
from mssoft.synthetic.scan import make_scan
from mssoft.synthetic.writer import isbi_affine

__all__ = ["write_nnunet_dataset", "NNUNET_CHANNEL_NAMES"]

#: mssoft modality -> the name written into ``channel_names``.
NNUNET_CHANNEL_NAMES = {"flair": "FLAIR", "t1": "T1w", "t2": "T2w", "pd": "PDw"}


def write_nnunet_dataset(
    root: str | os.PathLike[str],
    *,
    n_train: int = 4,
    n_test: int = 0,
    shape: Sequence[int] = (48, 56, 40),
    seed: int = 0,
    modalities: Sequence[str] = ("flair", "t1", "t2"),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    orientation: str = "LAS",
    lesion_label: int = 1,
    other_label: int | None = None,
    **options: Any,
) -> list[str]:
    """Generate synthetic cases and write them as an nnU-Net v2 raw dataset.

    Parameters
    ----------
    root : path-like
        Dataset folder (created; it must not hold a ``dataset.json`` yet).
    n_train, n_test : int, optional
        Cases with labels (``imagesTr``/``labelsTr``) and without (``imagesTs``).
    shape : sequence of 3 int, optional
        Grid (X, Y, Z) in RAS order.
    seed : int, optional
        Case ``k`` is patient ``(seed, k)`` (test cases ``(seed, 1000 + k)``).
    modalities : sequence of str, optional
        Channels in order (``flair`` first is not required); written with the names of
        :data:`NNUNET_CHANNEL_NAMES`.
    spacing : sequence of 3 float, optional
        Voxel size in mm.
    orientation : {"LAS", "RAS"}, optional
        Orientation of the affine.
    lesion_label : int, optional
        Label value of rater 1's lesions (>= 1).
    other_label : int, optional
        If given, the label of voxels marked by rater 2 only (a second foreground class).
    **options
        Phantom options of :func:`~mssoft.synthetic.make_scan` (``n_lesions``, ``noise``, ...).

    Returns
    -------
    list of str
        Case ids written, training cases first.

    Raises
    ------
    ConfigError
        Invalid counts, modalities or labels.
    DataError
        ``root/dataset.json`` exists already.
    """
    if n_train < 0 or n_test < 0 or n_train + n_test < 1:
        raise ConfigError(
            f"Invalid values for `n_train`/`n_test`: {n_train}, {n_test} (need >= 1 case)"
        )
    unknown = [m for m in modalities if m not in NNUNET_CHANNEL_NAMES]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise ConfigError(f"Invalid value for `modalities`: {list(modalities)}")
    labels = {"background": 0, "lesion": int(lesion_label)}
    if other_label is not None:
        labels["rater2_only"] = int(other_label)
    foreground = [v for name, v in labels.items() if name != "background"]
    if min(foreground) < 1 or max(foreground) > 255 or len(set(foreground)) < len(foreground):
        raise ConfigError(f"Invalid label values: {labels} (distinct lesion labels in 1..255)")
    root = Path(root)
    if (root / "dataset.json").exists():
        raise DataError(f"{root / 'dataset.json'}: exists; choose a new folder")
    meta = grid_meta(shape, isbi_affine(shape, spacing, orientation), path=root)
    written = []
    for folder, count, offset in (("imagesTr", n_train, 0), ("imagesTs", n_test, 1000)):
        for k in range(1, count + 1):
            case = f"{'case' if offset == 0 else 'test'}{k:03d}"
            scan = make_scan(
                shape,
                seed=(int(seed), offset + k),
                spacing=spacing,
                modalities=list(modalities),
                **options,
            )
            for channel, modality in enumerate(modalities):
                path = root / folder / f"{case}_{channel:04d}.nii.gz"
                write_volume(scan.images[modality], meta, path, dtype=np.float32)
            if offset == 0:
                label_map = np.where(scan.masks[1], labels["lesion"], 0).astype(np.uint8)
                if other_label is not None and 2 in scan.masks:
                    label_map[scan.masks[2] & ~scan.masks[1]] = labels["rater2_only"]
                write_volume(label_map, meta, root / "labelsTr" / f"{case}.nii.gz", dtype=np.uint8)
            written.append(case)
    write_json(
        {
            "channel_names": {str(c): NNUNET_CHANNEL_NAMES[m] for c, m in enumerate(modalities)},
            "labels": labels,
            "numTraining": int(n_train),
            "file_ending": ".nii.gz",
            "name": "mssoft synthetic MS lesions",
        },
        root / "dataset.json",
    )
    return written
