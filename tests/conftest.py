"""Shared fixtures: tiny NIfTI datasets in the ISBI 2015 layout and as a CSV manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

MODALITY_FILES = {"flair": "flair", "t1": "mprage", "t2": "t2", "pd": "pd"}


def blob_scan(shape=(24, 28, 20), *, seed=0, n_lesions=3):
    """A brain-like ellipsoid with spherical lesions: (images by modality, lesion mask)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    radius = np.array(shape) * 0.42
    brain = (((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2).sum(0) <= 1
    mask = np.zeros(shape, bool)
    for _ in range(n_lesions):
        c = rng.uniform(centre - radius / 2.5, centre + radius / 2.5)
        r = rng.uniform(1.5, 3.0)
        mask |= ((grid - c[:, None, None, None]) ** 2).sum(0) <= r**2
    mask &= brain
    base = np.where(brain, 100.0 + rng.normal(0, 5, shape), 0.0)
    images = {
        "flair": np.where(mask, base * 1.8, base),
        "t1": np.where(mask, base * 0.6, base),
        "t2": np.where(mask, base * 1.5, base),
        "pd": np.where(mask, base * 1.3, base),
    }
    return {k: v.astype(np.float32) for k, v in images.items()}, mask


def save(array, affine, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def write_isbi(
    root: Path, *, patients=2, timepoints=2, shape=(24, 28, 20), affine=None, test_patients=0
) -> Path:
    """Write a tiny ISBI-layout dataset under ``root``; returns ``root``."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    for p in range(1, patients + test_patients + 1):
        kind = "training" if p <= patients else "test"
        patient = f"{kind}{p:02d}"
        for t in range(1, timepoints + 1):
            images, mask1 = blob_scan(shape, seed=100 * p + t)
            scan = f"{patient}_{t:02d}"
            for mod, name in MODALITY_FILES.items():
                save(
                    images[mod],
                    affine,
                    root / patient / "preprocessed" / f"{scan}_{name}_pp.nii.gz",
                )
            if kind == "training":
                mask2 = mask1.copy()
                mask2[tuple(np.argwhere(mask1)[0])] = False  # rater 2 misses one voxel
                save(
                    mask1.astype(np.uint8),
                    affine,
                    root / patient / "masks" / f"{scan}_mask1.nii.gz",
                )
                save(
                    mask2.astype(np.uint8),
                    affine,
                    root / patient / "masks" / f"{scan}_mask2.nii.gz",
                )
    return root


def write_manifest(
    root: Path, *, scans=3, shape=(20, 22, 18), affine=None, modalities=("flair", "t2")
):
    """Write NIfTI files and a manifest with relative paths; returns the manifest path."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    rows = []
    for i in range(scans):
        images, mask1 = blob_scan(shape, seed=i)
        row = {"scan": f"s{i}", "patient": f"p{i // 2}"}
        for mod in modalities:
            row[mod] = str(
                save(images[mod], affine, root / "img" / f"s{i}_{mod}.nii").relative_to(root)
            )
        row["mask1"] = str(
            save(mask1.astype(np.uint8), affine, root / "lbl" / f"s{i}_m.nii.gz").relative_to(root)
        )
        rows.append(row)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture
def isbi_root(tmp_path):
    return write_isbi(tmp_path / "isbi")


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path / "man")
