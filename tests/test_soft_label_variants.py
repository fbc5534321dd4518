"""Soft labels from several raters and graded rings (pure NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from mssoft.arrays.soft_masks import (
    SoftMaskParams,
    multi_rater_soft_mask,
    ring_values,
    soft_mask,
    soft_mask_from_params,
)
from mssoft.errors import ConfigError
from mssoft.workflows.settings import MaskConfig


def _two_raters() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((16, 16, 16), bool)
    b = np.zeros_like(a)
    a[5:9, 5:9, 5:9] = True  # 64 voxels
    b[5:9, 5:9, 7:11] = True  # overlaps a on z = 7, 8
    return a, b


def test_two_rater_labels_agreement_one_single_half_ring_gamma() -> None:
    a, b = _two_raters()
    params = SoftMaskParams(ratio=1.5, gamma=0.3, flair_threshold=None)
    soft = multi_rater_soft_mask([a, b], None, spacing=(1, 1, 1), params=params)
    union = a | b
    assert np.all(soft[a & b] == 1.0)
    assert np.all(soft[a ^ b] == 0.5)
    ring = (soft > 0) & ~union
    assert ring.sum() == round(0.5 * union.sum())  # grown from the union, to ratio x |U|
    assert np.all(soft[ring] == np.float32(0.3))
    assert set(np.unique(soft).tolist()) == {0.0, 0.5, 1.0, float(np.float32(0.3))}
    # the ring is exactly the one grown from the union as a single mask
    single = soft_mask_from_params(union, None, spacing=(1, 1, 1), params=params)
    assert np.array_equal((single > 0) & ~union, ring)


def test_two_raters_flair_exclusion_and_binary_settings() -> None:
    a, b = _two_raters()
    flair = np.ones(a.shape, np.float32)
    flair[:, :, :5] = 0.1  # dark below the lesions: excluded from the ring
    params = SoftMaskParams(ratio=2.0, gamma=0.3, flair_threshold=0.5)
    soft = multi_rater_soft_mask([a, b], flair, spacing=(1, 1, 1), params=params)
    assert not np.any(soft[:, :, :5])
    # ratio 1: the raters' share alone, no ring
    share = multi_rater_soft_mask(
        [a, b], None, spacing=(1, 1, 1), params=SoftMaskParams(1.0, 0.3, None)
    )
    assert np.array_equal(share > 0, a | b)
    assert set(np.unique(share).tolist()) == {0.0, 0.5, 1.0}


def test_mask_config_raters_is_soft_and_recorded() -> None:
    config = MaskConfig(raters=(1, 2), ratio=1.0)
    assert config.all_raters == (1, 2) and config.rater == 1
    assert not config.is_binary  # the share of two raters is a soft label
    assert config.to_dict()["raters"] == [1, 2] and "ring" not in config.to_dict()
    assert MaskConfig(ring="gaussian", ring_sigma=1.5).to_dict()["ring_sigma"] == 1.5
    assert set(MaskConfig().to_dict()) == {
        "rater",
        "ratio",
        "gamma",
        "flair_threshold",
        "per_lesion",
    }
    assert MaskConfig(raters="2").raters is None and MaskConfig(raters="2").rater == 2
    with pytest.raises(ConfigError, match="--raters"):
        MaskConfig(raters="1,x")
    with pytest.raises(ConfigError, match="--ring"):
        MaskConfig(ring="cubic")
    with pytest.raises(ConfigError, match="--ring-sigma"):
        MaskConfig(ring="gaussian", ring_sigma=0.0)


@pytest.mark.parametrize("mode", ["linear", "gaussian"])
def test_graded_ring_monotone_in_distance_gamma_at_nearest_shell(mode: str) -> None:
    from scipy import ndimage

    mask = np.zeros((24, 24, 24), bool)
    mask[9:14, 9:14, 9:14] = True
    spacing = (1.0, 1.0, 2.0)
    common = dict(spacing=spacing, ratio=2.5, gamma=0.4, flair_threshold=None)
    constant = soft_mask(mask, **common)
    graded = soft_mask(mask, ring=mode, ring_sigma=1.5, **common)
    ring = (constant > 0) & ~mask
    assert np.array_equal((graded > 0) & ~mask, ring)  # same voxel set
    assert np.all(graded[mask] == 1.0)
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)[ring]
    values = graded[ring]
    order = np.argsort(distance, kind="stable")
    assert np.all(np.diff(values[order]) <= 1e-7)  # non-increasing in distance
    nearest = distance == distance.min()
    assert np.allclose(values[nearest], 0.4)
    assert values[~nearest].max() < 0.4
    assert values.min() > 0.0


def test_ring_values_by_hand() -> None:
    d = np.array([1.0, 2.0, 3.0])
    assert np.allclose(
        ring_values(d, gamma=0.3, mode="linear", spacing_min_mm=1.0), [0.3, 0.2, 0.1]
    )
    expected = 0.3 * np.exp(-np.array([0.0, 1.0, 4.0]) / (2 * 2.0**2))
    assert np.allclose(ring_values(d, gamma=0.3, mode="gaussian", sigma_mm=2.0), expected)
    assert np.allclose(ring_values(d, gamma=0.3), 0.3)


def test_build_masks_cli_with_two_raters_and_graded_ring(tmp_path, isbi_root):
    import json

    import nibabel as nib
    from click.testing import CliRunner
    from mssoft.cli.main import cli

    out = tmp_path / "soft"
    args = ["build-masks", str(isbi_root), "--out", str(out), "--raters", "1,2", "--ring", "linear"]
    result = CliRunner().invoke(cli, [*args, "--flair-threshold", "none", "--ratio", "5"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["raters"] == [1, 2] and config["ring"] == "linear"
    scan = "training01_01"
    m1 = nib.load(isbi_root / "training01" / "masks" / f"{scan}_mask1.nii.gz").get_fdata() > 0
    m2 = nib.load(isbi_root / "training01" / "masks" / f"{scan}_mask2.nii.gz").get_fdata() > 0
    soft = nib.load(out / f"{scan}_softmask.nii.gz").get_fdata(dtype=np.float32)
    assert np.all(soft[m1 & m2] == 1.0) and np.all(soft[m1 & ~m2] == 0.5)
    ring = (soft > 0) & ~m1
    assert ring.sum() == 4 * m1.sum() and soft[ring].max() == np.float32(0.3)  # ratio 5
    assert soft[ring].min() < soft[ring].max()  # graded
    both = CliRunner().invoke(cli, [*args, "--rater", "1"])
    assert both.exit_code != 0 and "--rater" in both.output


def test_training_slices_from_two_raters_on_the_fly(isbi_root):
    from mssoft.files.scans import discover_scans
    from mssoft.workflows.training_data import load_scan_slices, resolve_mask_source

    source = resolve_mask_source(
        mask_config=MaskConfig(raters=(1, 2), ratio=1.2, flair_threshold=None)
    )
    assert source.kind == "computed" and source.raters == (1, 2)
    scan = discover_scans(isbi_root)[0]
    _, targets, kept, _ = load_scan_slices(scan, modalities=["flair"], source=source)
    values = set(np.unique(targets).tolist())
    assert {0.0, 0.5, 1.0} <= values and float(np.float32(0.3)) in values
    binary = resolve_mask_source(mask_config=MaskConfig(ratio=1.0))
    assert binary.kind == "binary"
    _, _, kept_binary, _ = load_scan_slices(scan, modalities=["flair"], source=binary)
    assert set(kept_binary) <= set(kept)  # slices where any rater marks a lesion
