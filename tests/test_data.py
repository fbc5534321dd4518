import numpy as np
import pytest
from conftest import write_isbi, write_manifest

from mssoft.arrays.slices import SliceSet, lesion_slice_indices, split_slices
from mssoft.errors import ConfigError, DataError
from mssoft.files.scans import discover_scans, read_mask
from mssoft.nn.dataset import make_dataset
from mssoft.workflows.build_masks import build_soft_masks
from mssoft.workflows.settings import MaskConfig
from mssoft.workflows.training_data import (
    MaskSource,
    load_slices,
    resolve_mask_source,
    training_scans,
)

SOFT = MaskConfig(ratio=1.5, gamma=0.3, flair_threshold=None)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """2 training patients x 2 time points (32x32 slices, 12 axial), 1 test patient (no masks)."""
    return write_isbi(tmp_path_factory.mktemp("data") / "isbi", shape=(32, 32, 12), test_patients=1)


@pytest.fixture(scope="module")
def scans(root):
    return training_scans(discover_scans(root), rater=1)


@pytest.fixture(scope="module")
def binary(scans):
    return load_slices(scans, modalities=("flair", "t2"), source=MaskSource())


@pytest.fixture(scope="module")
def soft(scans):
    return load_slices(
        scans, modalities=("flair", "t2"), source=MaskSource("computed", 1, None, SOFT)
    )


def test_test_scans_without_masks_are_left_out(root, scans):
    assert len(discover_scans(root)) == 6
    assert [s.scan_id for s in scans] == [
        "training01_01",
        "training01_02",
        "training02_01",
        "training02_02",
    ]
    with pytest.raises(DataError, match="rater 3"):
        training_scans(discover_scans(root), rater=3)
    assert {
        s.patient_id for s in training_scans(discover_scans(root), rater=1, patients=["training02"])
    } == {"training02"}
    with pytest.raises(ConfigError, match="unknown patient"):
        training_scans(discover_scans(root), rater=1, patients=["nobody"])


def test_only_lesion_slices_are_kept(scans, binary):
    assert binary.modalities == ("flair", "t2")
    assert binary.slice_shape == (32, 32)
    for i, scan in enumerate(scans):
        mask = read_mask(scan.masks[1])
        np.testing.assert_array_equal(binary.slice_indices[i], lesion_slice_indices(mask))
        # Slice k of the target is the rater's mask at z = slice_indices[k].
        np.testing.assert_array_equal(
            binary.targets[i][..., 0], np.moveaxis(mask, 2, 0)[binary.slice_indices[i]]
        )
        assert binary.n_slices[i] == 12
    images, targets = binary.gather(np.arange(len(binary)))
    assert images.shape == (len(binary), 32, 32, 2) and images.dtype == np.float32
    assert np.all(targets.reshape(len(binary), -1).max(axis=1) == 1.0)  # every slice has a lesion


def test_soft_ring_outside_lesion_slices_is_dropped(scans, binary, soft):
    # The soft ring of this data reaches slices without a rater lesion (checked below); those
    # slices are still excluded: soft and binary training use exactly the same slices.
    for i in range(len(scans)):
        np.testing.assert_array_equal(soft.slice_indices[i], binary.slice_indices[i])
    values = np.unique(np.concatenate([t.ravel() for t in soft.targets]))
    np.testing.assert_allclose(values, [0.0, 0.3, 1.0], atol=1e-6)
    from mssoft.workflows.build_masks import soft_mask_for_scan

    ring_slices = lesion_slice_indices(soft_mask_for_scan(scans[0], SOFT)[0])
    assert len(ring_slices) > len(binary.slice_indices[0])


def test_soft_masks_from_a_build_masks_folder(tmp_path, root, scans, soft):
    folder = tmp_path / "soft"
    folder.mkdir()
    list(build_soft_masks(scans, folder, SOFT))
    source = resolve_mask_source(masks=folder)
    assert source.kind == "folder" and source.rater == 1 and source.config == SOFT
    from_folder = load_slices(scans, modalities=("flair", "t2"), source=source)
    for a, b in zip(from_folder.targets, soft.targets, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert source.to_dict()["config"]["ratio"] == 1.5
    with pytest.raises(ConfigError, match="rater"):
        resolve_mask_source(masks=folder, rater=2)
    with pytest.raises(ConfigError, match="cannot be combined"):
        resolve_mask_source(masks=folder, mask_config=SOFT)
    (folder / "training01_02_softmask.nii.gz").unlink()
    with pytest.raises(DataError, match="training01_02"):
        load_slices(scans, modalities=("flair",), source=source)


def test_scans_of_different_sizes_are_padded(tmp_path):
    # Two manifests with different grids, merged into one with absolute paths.
    rows = []
    for name, shape in (("a", (20, 22, 18)), ("b", (24, 18, 18))):
        manifest = write_manifest(tmp_path / name, scans=1, shape=shape)
        lines = manifest.read_text().splitlines()
        header, values = lines[0].split(","), lines[1].split(",")
        row = dict(zip(header, values, strict=True))
        rows.append(
            [f"{name}0", name] + [str(manifest.parent / row[c]) for c in ("flair", "t2", "mask1")]
        )
    merged = tmp_path / "all.csv"
    merged.write_text("scan,patient,flair,t2,mask1\n" + "\n".join(",".join(r) for r in rows) + "\n")
    slices = load_slices(discover_scans(merged), modalities=("flair", "t2"), source=MaskSource())
    assert slices.slice_shape == (24, 22)
    images, targets = slices.gather(np.arange(len(slices)))
    assert images.shape[1:] == (24, 22, 2) and targets.shape[1:] == (24, 22, 1)
    first = slices.images[0]  # scan a (20 x 22) padded with zeros at the end of axis 0
    assert np.all(first[:, 20:] == 0) and np.any(first[:, :20] != 0)


def test_resolve_mask_source_without_folder():
    assert resolve_mask_source() == MaskSource("binary", 1)
    assert resolve_mask_source(mask_config=MaskConfig(rater=2, ratio=1.0)) == MaskSource(
        "binary", 2
    )
    computed = resolve_mask_source(mask_config=SOFT)
    assert computed.kind == "computed" and computed.config == SOFT
    assert computed.to_dict() == {
        "source": "computed",
        "rater": 1,
        "folder": None,
        "config": SOFT.to_dict(),
    }


def test_split_by_slices(binary):
    split = split_slices(binary, val_fraction=0.2, seed=3)
    n = len(binary)
    assert len(split.val) == round(0.2 * n)
    assert sorted(np.concatenate([split.train, split.val]).tolist()) == list(range(n))
    again = split_slices(binary, val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again.val, split.val)
    assert not np.array_equal(split_slices(binary, val_fraction=0.2, seed=4).val, split.val)
    record = split.record(binary)
    assert record["train_slices"] + record["val_slices"] == n
    assert sum(len(v["val"]) for v in record["slices"].values()) == len(split.val)
    assert split_slices(binary, val_fraction=0.0).val.size == 0


def test_split_by_patients(binary):
    split = split_slices(binary, val_fraction=0.2, by="patients", seed=0)
    record = split.record(binary)
    assert len(record["val_patients"]) == 1
    assert not set(record["train_patients"]) & set(record["val_patients"])
    one_patient = SliceSet(
        binary.images[:2],
        binary.targets[:2],
        binary.slice_indices[:2],
        binary.scan_ids[:2],
        binary.patient_ids[:2],
        binary.n_slices[:2],
        binary.modalities,
        binary.source,
    )
    with pytest.raises(ConfigError, match="at least 2 patients"):
        split_slices(one_patient, by="patients")
    with pytest.raises(ConfigError, match="val-fraction"):
        split_slices(binary, val_fraction=1.0)


def epoch(dataset):
    return [tuple(np.asarray(t) for t in batch) for batch in dataset]


def test_training_pipeline_yields_each_slice_once_per_epoch(binary):
    positions = np.arange(1, len(binary))
    dataset = make_dataset(binary, positions, batch_size=4, training=True, seed=0, max_degrees=0.0)
    first = epoch(dataset)
    assert all(
        images.shape[1:] == (32, 32, 2) and images.dtype == np.float32 for images, _ in first
    )
    images = np.concatenate([b[0] for b in first])
    expected, _ = binary.gather(positions)
    # Same slices as a multiset, in a shuffled order that changes from epoch to epoch.
    key = lambda a: sorted(a.reshape(len(a), -1).sum(axis=1).round(3).tolist())  # noqa: E731
    assert key(images) == key(expected)
    assert not np.array_equal(images, expected)
    assert not np.array_equal(np.concatenate([b[0] for b in epoch(dataset)]), images)


def test_training_pipeline_is_deterministic_and_rotates_soft_masks(soft):
    positions = np.arange(len(soft))
    a = epoch(make_dataset(soft, positions, batch_size=5, training=True, seed=7))
    b = epoch(make_dataset(soft, positions, batch_size=5, training=True, seed=7))
    c = epoch(make_dataset(soft, positions, batch_size=5, training=True, seed=8))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][1], c[0][1])
    targets = np.concatenate([y for _, y in a])
    assert np.all(
        targets.reshape(len(targets), -1).max(axis=1) > 0.5
    )  # lesions survive +-5 degrees


def _rotated_targets(slices, interpolation, degrees=5.0):
    positions = np.arange(len(slices))
    batches = epoch(
        make_dataset(
            slices,
            positions,
            batch_size=len(positions),
            training=True,
            seed=3,
            max_degrees=degrees,
            target_interpolation=interpolation,
        )
    )
    return np.concatenate([y for _, y in batches])


def test_rotated_targets_keep_their_label_values(binary, soft):
    """Nearest-neighbour targets: binary stays {0, 1}, soft stays {0, gamma, 1}, but rotated."""
    gamma = SOFT.params.gamma
    binary_targets = _rotated_targets(binary, "nearest")
    assert set(np.unique(binary_targets).tolist()) == {0.0, 1.0}
    soft_targets = _rotated_targets(soft, "nearest")
    assert set(np.unique(soft_targets).tolist()) == {0.0, np.float32(gamma), 1.0}
    unrotated = _rotated_targets(soft, "nearest", degrees=0.0)  # same order, no rotation
    assert not np.array_equal(soft_targets, unrotated)
    # the old behaviour, kept for comparison: bilinear targets leave the label values
    graded = ~np.isin(_rotated_targets(binary, "bilinear"), np.float32([0.0, 1.0]))
    assert graded.any()
    soft_graded = ~np.isin(_rotated_targets(soft, "bilinear"), np.float32([0.0, gamma, 1.0]))
    assert soft_graded.any()


def test_unknown_target_interpolation_is_refused(binary):
    with pytest.raises(ConfigError, match="--target-interpolation"):
        make_dataset(
            binary, np.arange(2), batch_size=2, training=True, target_interpolation="cubic"
        )


def test_validation_pipeline_is_ordered_and_not_augmented(binary):
    positions = np.array([5, 1, 3])
    batches = epoch(make_dataset(binary, positions, batch_size=2, training=False))
    images, targets = binary.gather(positions)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), images)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), targets)


def test_training_batches_are_the_gathered_slices_rotated_and_padded(soft):
    """One NumPy step gathers, rotates (angles drawn in the graph) and zero-pads each batch."""
    import tensorflow as tf

    from mssoft.arrays.rotation import rotate_pairs
    from mssoft.nn.augment import sample_angles

    positions = np.arange(len(soft))
    n, seed = len(positions), 11
    ((order_images, order_targets),) = epoch(  # same shuffle, no rotation: the batch's order
        make_dataset(soft, positions, batch_size=n, training=True, seed=seed, max_degrees=0.0)
    )
    ((images, targets),) = epoch(
        make_dataset(soft, positions, batch_size=n, training=True, seed=seed, multiple=16)
    )
    draw = next(iter(tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)))
    angles = np.asarray(sample_angles(n, tf.stack([draw, tf.constant(seed, tf.int64)]), 5.0))
    want_images, want_targets = rotate_pairs(order_images, order_targets, angles)
    height, width = soft.slice_shape
    assert images.shape[1:3] == (-(-height // 16) * 16, -(-width // 16) * 16)
    np.testing.assert_array_equal(images[:, :height, :width], want_images)
    np.testing.assert_array_equal(targets[:, :height, :width], want_targets)
    assert not images[:, height:].any() and not targets[:, :, width:].any()


def test_a_repeated_pipeline_gives_the_epochs_of_fresh_iterations(soft):
    """`mssoft fit` repeats the training pipeline: epoch k is what the k-th iteration gives."""
    positions = np.arange(len(soft))

    def pipeline():
        return make_dataset(soft, positions, batch_size=4, training=True, seed=5)

    per_batch = -(-len(positions) // 4)
    repeated = epoch(pipeline().repeat(3))
    fresh = pipeline()  # (each pipeline's reshuffling advances with its own iterations)
    iterated = [batch for _ in range(3) for batch in epoch(fresh)]
    assert len(repeated) == 3 * per_batch == len(iterated)
    for (xa, ya), (xb, yb) in zip(repeated, iterated, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(repeated[0][0], repeated[per_batch][0])  # reshuffled and re-rotated


def test_the_fixed_pipeline_gives_the_autotuned_batches_without_autotuning(soft):
    """Fixed parallelism and prefetch (no autotuning thread to wait for when the iterator is
    dropped) change nothing in what the pipeline yields, epoch after epoch."""
    from mssoft.nn.dataset import PARALLEL_BATCHES, PREFETCH_BATCHES

    positions = np.arange(len(soft))

    def pipeline(autotune):
        return make_dataset(soft, positions, batch_size=3, training=True, seed=4, autotune=autotune)

    fixed, tuned = pipeline(False), pipeline(True)
    assert fixed.options().autotune.enabled is False
    assert tuned.options().autotune.enabled is not False
    assert PARALLEL_BATCHES >= 1 and PREFETCH_BATCHES >= 1
    a, b = epoch(fixed.repeat(2)), epoch(tuned.repeat(2))
    assert len(a) == len(b) == 2 * -(-len(positions) // 3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
