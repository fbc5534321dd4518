"""The on-disk slice cache (``--slice-cache``): same slices as in memory, reuse, storage rule."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.errors import ConfigError
from mssoft.files.layout import SLICE_CACHE_DIR, slice_cache_paths
from mssoft.files.scans import discover_scans
from mssoft.files.slice_cache import NpySlices
from mssoft.workflows.settings import TrainConfig
from mssoft.workflows.training_data import (
    MaskSource,
    load_slices,
    slice_storage,
)

MODALITIES = ("flair", "t2")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_isbi(tmp_path_factory.mktemp("data") / "isbi", shape=(32, 30, 12))


def test_npy_slices_reads_and_pads_slices(tmp_path):
    array = np.arange(3 * 4 * 5 * 2, dtype=np.float32).reshape(3, 4, 5, 2)
    np.save(tmp_path / "a.npy", array)
    view = NpySlices(tmp_path / "a.npy")
    assert view.shape == (3, 4, 5, 2) and len(view) == 3 and view.nbytes == array.nbytes
    np.testing.assert_array_equal(view[1], array[1])
    np.testing.assert_array_equal(view[-1], array[2])
    padded = view.padded((6, 5))
    assert padded.shape == (3, 6, 5, 2)
    np.testing.assert_array_equal(padded[2][:4], array[2])
    assert not padded[2][4:].any()
    with pytest.raises(IndexError):
        view[3]
    np.save(tmp_path / "b.npy", array.astype(np.float64))
    with pytest.raises(ValueError, match="float32"):
        NpySlices(tmp_path / "b.npy")


def test_disk_slices_equal_memory_slices_and_are_reused(root, tmp_path):
    scans = discover_scans(root)
    source = MaskSource("binary", 1)
    memory = load_slices(scans, modalities=MODALITIES, source=source)
    cache = tmp_path / "cache"
    disk = load_slices(scans, modalities=MODALITIES, source=source, cache=cache)
    assert all(isinstance(a, NpySlices) for a in disk.images + disk.targets)
    assert len(disk) == len(memory) and disk.slice_shape == memory.slice_shape
    for a, b in zip(disk.slice_indices, memory.slice_indices, strict=True):
        np.testing.assert_array_equal(a, b)
    index = np.arange(len(memory))[::-1]
    for got, want in zip(disk.gather(index), memory.gather(index), strict=True):
        np.testing.assert_array_equal(got, want)

    # a second load reads the cache: the NIfTI files are not needed any more
    images, _, record = slice_cache_paths(cache, scans[0].scan_id)
    stamp = images.stat().st_mtime_ns
    again = load_slices(scans, modalities=MODALITIES, source=source, cache=cache)
    assert images.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.gather(index)[0], memory.gather(index)[0])

    # other channels (or changed files) invalidate a scan's entry: it is rebuilt
    other = load_slices(scans, modalities=("flair",), source=source, cache=cache)
    assert other.images[0].shape[-1] == 1
    assert json.loads(record.read_text())["key"]["modalities"] == ["flair"]


def test_storage_rule(root):
    scans = discover_scans(root)
    # every axial slice: 32 * 30 * 12 voxels x (2 channels + target) x 4 bytes per scan
    upper = len(scans) * 32 * 30 * 12 * 3 * 4
    assert slice_storage(scans, modalities=MODALITIES, available=2 * upper) == "memory"
    assert slice_storage(scans, modalities=MODALITIES, available=2 * upper - 1) == "disk"
    assert slice_storage(scans, modalities=MODALITIES, mode="memory", available=1) == "memory"
    assert slice_storage(scans, modalities=MODALITIES, mode="disk") == "disk"
    with pytest.raises(ConfigError, match="--slice-cache"):
        slice_storage(scans, modalities=MODALITIES, mode="ram")
    with pytest.raises(ConfigError, match="--slice-cache"):
        TrainConfig(data=root, out=root, slice_cache="ram")


def test_fit_with_disk_cache_and_resume(root, tmp_path):
    out = tmp_path / "run"
    tiny = ["--base-filters", "4", "--depth", "2", "--batch-size", "4", "--modalities", "flair"]
    args = ["fit", str(root), "--out", str(out), "--slice-cache", "disk", *tiny]
    result = CliRunner().invoke(cli, [*args, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    cached = sorted(p.name for p in (out / SLICE_CACHE_DIR).iterdir())
    assert len(cached) == 3 * 4  # 4 scans: images, targets, record
    stamps = {p: p.stat().st_mtime_ns for p in (out / SLICE_CACHE_DIR).iterdir()}
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["slice_cache"] == "disk"

    resumed = CliRunner().invoke(cli, [*args, "--epochs", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert {p: p.stat().st_mtime_ns for p in (out / SLICE_CACHE_DIR).iterdir()} == stamps
    header = (out / "history.csv").read_text().splitlines()
    assert {"loss", "dice", "val_loss", "val_dice", "seconds"} <= set(header[0].split(","))
    assert len(header) == 3
