"""Synthetic MS data: MR contrasts, raters, determinism, longitudinal behaviour, ISBI layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mssoft.arrays.realism import rater_agreement
from mssoft.errors import ConfigError, DataError
from mssoft.files.nifti import read_header, read_volume
from mssoft.files.scans import (
    check_scan,
    discover_scans,
    load_scan,
    patients_of,
    raters_of,
    resolve_modalities,
)
from mssoft.synthetic.lesion_model import LESION_KINDS
from mssoft.synthetic import (
    DEFAULT_RATERS,
    MODALITIES,
    RaterModel,
    isbi_affine,
    make_anatomy,
    make_patient,
    make_scan,
    write_isbi_dataset,
)

TINY = (32, 40, 24)
MODEST = (48, 56, 40)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "soft_mask_tour.py"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 2.0 * int(np.count_nonzero(a & b)) / max(total, 1)


@pytest.fixture(scope="module")
def scan():
    return make_scan(MODEST, seed=1)


@pytest.fixture(scope="module")
def regions(scan):
    anatomy = scan.anatomy
    return {
        "lesion": scan.truth >= 0.9,
        "wm": (anatomy.wm >= 0.99) & (scan.truth == 0),
        "gm": anatomy.gm >= 0.99,
        "csf": anatomy.csf >= 0.99,
    }


# --- Anatomy and contrasts -------------------------------------------------------------------


def test_tissue_fractions_fill_the_brain_and_background_is_zero(scan):
    anatomy = scan.anatomy
    total = anatomy.csf + anatomy.gm + anatomy.deep_gm + anatomy.wm
    np.testing.assert_allclose(total[anatomy.brain], 1.0, atol=1e-5)
    assert not total[~anatomy.brain].any()
    brain_fraction = anatomy.brain.mean()
    assert 0.25 < brain_fraction < 0.75  # a brain inside a zero background, not a full box
    # Every class is really there: white matter dominates, then grey matter, then CSF.
    means = {
        t: float(getattr(anatomy, t)[anatomy.brain].mean()) for t in ("wm", "gm", "csf", "deep_gm")
    }
    assert means["wm"] > means["gm"] > means["csf"] > means["deep_gm"] > 0.005
    assert anatomy.ventricles.sum() > 0 and np.all(anatomy.ventricles <= anatomy.csf + 1e-6)
    for name, image in scan.images.items():
        assert image.dtype == np.float32 and image.shape == MODEST, name
        assert not image[~anatomy.brain].any(), f"{name}: signal outside the brain"
        assert np.all(image[anatomy.brain] > 0), f"{name}: zero voxel inside the brain"


# Typical lesion / white-matter ratios: about 1.35 on FLAIR (faint lesions exist, as on real
# scans), 1.5 on T2, 1.2 on PD.
@pytest.mark.parametrize(("modality", "factor"), [("flair", 1.25), ("t2", 1.4), ("pd", 1.12)])
def test_lesions_are_hyperintense_on_flair_t2_pd(scan, regions, modality, factor):
    image = scan.images[modality]
    assert image[regions["lesion"]].mean() > factor * image[regions["wm"]].mean()


def test_lesions_are_hypointense_on_t1(scan, regions):
    image = scan.images["t1"]
    assert image[regions["lesion"]].mean() < 0.8 * image[regions["wm"]].mean()


def test_csf_and_grey_matter_contrasts(scan, regions):
    flair, t1, t2 = scan.images["flair"], scan.images["t1"], scan.images["t2"]
    mean = {
        name: {r: float(img[m].mean()) for r, m in regions.items()}
        for name, img in scan.images.items()
    }
    # CSF: dark on FLAIR (fluid suppressed) and T1, the brightest tissue on T2.
    assert mean["flair"]["csf"] < 0.5 * mean["flair"]["wm"]
    assert mean["t1"]["csf"] < 0.5 * mean["t1"]["wm"]
    assert mean["t2"]["csf"] > max(mean["t2"]["wm"], mean["t2"]["gm"])
    # Grey matter: darker than white matter on T1, brighter on FLAIR, T2 and PD.
    assert mean["t1"]["gm"] < mean["t1"]["wm"]
    for name in ("flair", "t2", "pd"):
        assert mean[name]["gm"] > mean[name]["wm"], name
    # Lesions are the brightest tissue on FLAIR.
    assert mean["flair"]["lesion"] > mean["flair"]["gm"]
    assert flair.dtype == t1.dtype == t2.dtype == np.float32


def test_lesion_borders_are_partial_volume(scan):
    truth = scan.truth
    assert truth.dtype == np.float32 and truth.min() >= 0.0 and truth.max() <= 1.0
    border = (truth > 0.05) & (truth < 0.95)
    assert np.count_nonzero(border) > 0.3 * np.count_nonzero(truth >= 0.95)
    assert not truth[scan.anatomy.csf >= 0.999].any()  # never inside pure CSF


def test_lesion_kinds_and_periventricular_placement():
    scan = make_scan(MODEST, seed=0)
    kinds = {lesion.kind for lesion, _ in scan.lesions}
    assert kinds == set(LESION_KINDS)
    vent = scan.anatomy.ventricles > 0.2
    for lesion, _ in scan.lesions:
        if lesion.kind in ("periventricular", "confluent"):
            centre = np.round(lesion.centre).astype(int)
            lo, hi = np.maximum(centre - 5, 0), centre + 6
            assert vent[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))].any(), (
                "periventricular lesion far from ventricles"
            )
    sizes = sorted(float(np.prod(lesion.axes)) for lesion, _ in scan.lesions)
    assert sizes[-1] > 4 * sizes[0]  # varied sizes, some small


def test_tiny_grid_still_has_every_tissue_and_lesions():
    scan = make_scan(TINY, seed=2)
    labels = scan.anatomy.labels()
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert scan.masks[1].sum() > 18 and scan.images["flair"][scan.truth >= 0.9].size > 0


# --- Raters -----------------------------------------------------------------------------------


def test_raters_disagree_like_real_raters():
    scores, volumes, touched = [], np.zeros(2), []
    for seed in range(3):
        for s in make_patient((64, 80, 48), seed=seed, timepoints=2):
            m1, m2 = s.masks[1], s.masks[2]
            assert m1.dtype == bool and m1.any() and m2.any()
            assert not (m1 & (s.truth == 0)).any() and not (m2 & (s.truth == 0)).any()
            scores.append(dice(m1, m2))
            volumes += [np.count_nonzero(m1), np.count_nonzero(m2)]
            agreement = rater_agreement(m1, m2)
            touched.append((agreement.touched_a, agreement.touched_b))
    assert 0.6 <= np.mean(scores) <= 0.8, scores
    assert min(scores) > 0.45, scores
    assert volumes[1] > volumes[0], "rater 2 should mark more volume overall"
    # Not a mere volume bias: each rater marks lesions the other does not touch.
    touched = np.array(touched)
    assert (touched[:, 0] < 1).sum() >= 3, touched  # rater 1's lesions rater 2 left out
    assert (touched[:, 1] < 1).sum() >= 3, touched  # and the other way round


def test_rater_models_are_configurable_and_validated():
    strict = {
        1: RaterModel(threshold=0.9, miss_rate=0.0),
        2: RaterModel(threshold=0.1, miss_rate=0.0),
    }
    s = make_scan(TINY, seed=4, raters=strict)
    assert np.count_nonzero(s.masks[2]) > 2 * np.count_nonzero(s.masks[1])
    assert make_scan(TINY, seed=4, raters={}).masks == {}
    assert DEFAULT_RATERS[2].threshold < DEFAULT_RATERS[1].threshold
    with pytest.raises(ValueError, match="threshold"):
        RaterModel(threshold=0.0)


# --- Determinism and time points ----------------------------------------------------------------


def test_same_seed_same_arrays_other_seed_other_arrays():
    a, b, c = make_scan(TINY, seed=7), make_scan(TINY, seed=7), make_scan(TINY, seed=8)
    for name in MODALITIES:
        np.testing.assert_array_equal(a.images[name], b.images[name])
        assert not np.array_equal(a.images[name], c.images[name])
    np.testing.assert_array_equal(a.truth, b.truth)
    for rater in (1, 2):
        np.testing.assert_array_equal(a.masks[rater], b.masks[rater])
    assert not np.array_equal(a.truth, c.truth)


def test_make_scan_equals_the_patient_time_point():
    scans = list(make_patient(TINY, seed=5, timepoints=3))
    single = make_scan(TINY, seed=5, timepoint=1)
    np.testing.assert_array_equal(single.images["flair"], scans[1].images["flair"])
    np.testing.assert_array_equal(single.masks[2], scans[1].masks[2])
    assert [s.timepoint for s in scans] == [0, 1, 2]


def test_time_points_share_anatomy_and_most_lesions():
    first, second = make_patient(MODEST, seed=3, timepoints=2, new_lesions=2.0)
    np.testing.assert_array_equal(first.anatomy.wm, second.anatomy.wm)
    overlap = dice(first.truth >= 0.5, second.truth >= 0.5)
    assert 0.5 < overlap < 0.99  # mostly the same lesions, some grew, shrank or appeared
    assert len(second.lesions) >= len(first.lesions)
    sizes = [size for _, size in second.lesions]
    assert any(s > 1.0 for s in sizes) and any(s < 1.0 for s in sizes)
    brain = first.anatomy.brain & (first.truth == 0) & (second.truth == 0)
    ratio = second.images["t1"][brain].mean() / first.images["t1"][brain].mean()
    assert ratio != 1.0 and abs(ratio - 1.0) < 0.15  # small intensity differences


def test_invalid_arguments():
    with pytest.raises(ValueError, match="shape"):
        make_anatomy((8, 40, 24))
    with pytest.raises(ValueError, match="timepoint"):
        make_scan(TINY, timepoint=-1)
    with pytest.raises(ValueError, match="modalities"):
        make_scan(TINY, modalities=["dwi"])
    with pytest.raises(ValueError, match="lesion"):
        make_scan(TINY, n_lesions=-1)


# --- ISBI 2015 layout ----------------------------------------------------------------------------


def test_isbi_layout_is_discovered(tmp_path):
    root = tmp_path / "isbi"
    ids = write_isbi_dataset(root, n_patients=2, timepoints=2, shape=TINY, seed=0)
    assert ids == ["training01_01", "training01_02", "training02_01", "training02_02"]
    scans = discover_scans(root)
    assert [s.scan_id for s in scans] == ids
    assert patients_of(scans) == ["training01", "training02"]
    assert resolve_modalities(scans) == ("flair", "t1", "t2", "pd")
    assert raters_of(scans) == [1, 2]
    for s in scans:
        meta = check_scan(s, rater=1)
        check_scan(s, rater=2)
        assert (
            meta.ras_shape == TINY
            and meta.spacing_mm == (1.0, 1.0, 1.0)
            and meta.axcodes == ("L", "A", "S")
        )
        truth = root / s.patient_id / "truth" / f"{s.scan_id}_truth.nii.gz"
        assert truth.is_file() and truth not in s.files()
    loaded = load_scan(scans[0], rater=2)
    assert loaded.image.shape == (*TINY, 4) and loaded.mask.any()


@pytest.mark.parametrize("orientation", ["LAS", "RAS"])
def test_files_round_trip_to_the_arrays_in_memory(tmp_path, orientation):
    write_isbi_dataset(
        tmp_path, n_patients=1, timepoints=1, shape=TINY, seed=9, orientation=orientation
    )
    expected = next(make_patient(TINY, seed=(9, 0, 1), timepoints=1))
    flair, meta = read_volume(
        tmp_path / "training01" / "preprocessed" / "training01_01_flair_pp.nii.gz"
    )
    np.testing.assert_array_equal(flair, expected.images["flair"])
    truth, _ = read_volume(tmp_path / "training01" / "truth" / "training01_01_truth.nii.gz")
    np.testing.assert_array_equal(truth, expected.truth)
    assert meta.axcodes == tuple(orientation)
    np.testing.assert_allclose(meta.affine, isbi_affine(TINY, orientation=orientation))
    # World origin at the centre of the grid.
    centre = meta.affine @ np.array([*(np.array(TINY) - 1) / 2.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    mask_header = read_header(tmp_path / "training01" / "masks" / "training01_01_mask1.nii.gz")
    assert mask_header.header.get_data_dtype() == np.uint8


def test_written_files_are_byte_identical_under_a_seed(tmp_path):
    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.nii.gz"))}

    write_isbi_dataset(tmp_path / "a", n_patients=1, timepoints=2, shape=TINY, seed=11)
    write_isbi_dataset(tmp_path / "b", n_patients=1, timepoints=2, shape=TINY, seed=11)
    write_isbi_dataset(tmp_path / "c", n_patients=1, timepoints=2, shape=TINY, seed=12)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == 2 * (4 + 2 + 1) and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_test_patients_have_no_masks(tmp_path):
    write_isbi_dataset(tmp_path, n_patients=1, timepoints=2, shape=TINY)
    ids = write_isbi_dataset(tmp_path, n_patients=1, timepoints=1, shape=TINY, test=True)
    assert ids == ["test01_01"]
    assert not (tmp_path / "test01" / "masks").exists()
    scans = {s.scan_id: s for s in discover_scans(tmp_path)}
    assert sorted(scans) == ["test01_01", "training01_01", "training01_02"]
    assert scans["test01_01"].masks == {} and scans["training01_01"].masks.keys() == {1, 2}
    train, test = (
        read_volume(scans["training01_01"].images["flair"])[0],
        read_volume(scans["test01_01"].images["flair"])[0],
    )
    assert not np.array_equal(train, test)  # test patients are other patients


def test_existing_files_are_never_overwritten_unless_asked(tmp_path):
    write_isbi_dataset(tmp_path, n_patients=1, timepoints=1, shape=TINY, seed=0)
    flair = tmp_path / "training01" / "preprocessed" / "training01_01_flair_pp.nii.gz"
    before = flair.read_bytes()
    with pytest.raises(DataError, match="training01_01_flair_pp.nii.gz: file exists"):
        write_isbi_dataset(tmp_path, n_patients=2, timepoints=1, shape=TINY, seed=1)
    assert flair.read_bytes() == before
    assert not (tmp_path / "training02").exists()  # nothing written before the check failed
    write_isbi_dataset(tmp_path, n_patients=1, timepoints=1, shape=TINY, seed=1, overwrite=True)
    assert flair.read_bytes() != before
    assert write_isbi_dataset(
        tmp_path, n_patients=1, timepoints=1, shape=TINY, first_patient=2
    ) == ["training02_01"]


def test_invalid_dataset_options(tmp_path):
    with pytest.raises(ConfigError, match="n_patients"):
        write_isbi_dataset(tmp_path, n_patients=0, shape=TINY)
    with pytest.raises(ConfigError, match="orientation"):
        write_isbi_dataset(tmp_path, shape=TINY, orientation="LPS")
    with pytest.raises(ConfigError, match="shape"):
        write_isbi_dataset(tmp_path, shape=(8, 8, 8))
    assert not any(tmp_path.iterdir())


# --- The soft-mask tour example -----------------------------------------------------------------


def test_soft_mask_tour_example_writes_a_figure(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("soft_mask_tour", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "tour.png"
    assert module.main([str(out), "--shape", *map(str, MODEST), "--seed", "1"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "ratio 1.2, gamma 0.3, t p50" in printed and f"figure: {out}" in printed
