"""Lesion tables: every value against an independent scipy.ndimage count on constructed volumes."""

import csv

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from mssoft.arrays.lesion_table import LESION_COLUMNS, SCAN_COLUMNS, lesion_rows, scan_row
from mssoft.files.lesion_tables import measure_files, write_lesion_tables

AFFINE = np.array(
    [[1.0, 0, 0, -10.0], [0, 1.5, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]]
)  # RAS, anisotropic voxels of 3 mm^3


def constructed():
    """A cube with a column touching only its edge (two lesions under 6-connectivity, one under
    18 and 26), an L-shape in one slice and a box."""
    seg = np.zeros((20, 18, 16), bool)
    seg[2:5, 2:5, 2:5] = True  # 27-voxel cube
    seg[5, 5, 2:5] = True  # shares only edges with the cube: one lesion under 18-connectivity
    seg[10:14, 10, 6] = True
    seg[10, 10:15, 6] = True  # L-shape in one slice
    seg[15:18, 2:4, 10:13] = True
    rng = np.random.default_rng(0)
    prob = np.where(seg, rng.uniform(0.5, 1.0, seg.shape), rng.uniform(0, 0.4, seg.shape))
    return seg, prob


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_rows_match_an_independent_ndimage_count(connectivity):
    seg, prob = constructed()
    rows = lesion_rows("s1", seg, AFFINE, prob, connectivity=connectivity)
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    labels, n = ndimage.label(seg, ndimage.generate_binary_structure(3, rank))
    assert len(rows) == n and n == {6: 4, 18: 3, 26: 3}[connectivity]
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index)
    centres = ndimage.center_of_mass(seg, labels, index)
    boxes = ndimage.find_objects(labels)
    means = ndimage.mean(prob, labels, index)
    peaks = ndimage.maximum(prob, labels, index)
    for row, size, centre, box, mean, peak in zip(rows, sizes, centres, boxes, means, peaks):
        assert row.voxels == size
        assert row.volume_ml == pytest.approx(size * 3.0 / 1000)
        np.testing.assert_allclose([row.centroid_i, row.centroid_j, row.centroid_k], centre)
        world = AFFINE @ np.array([*centre, 1.0])
        np.testing.assert_allclose([row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm], world[:3])
        assert (row.bbox_i_min, row.bbox_i_max + 1) == (box[0].start, box[0].stop)
        assert (row.bbox_j_min, row.bbox_j_max + 1) == (box[1].start, box[1].stop)
        assert (row.first_slice, row.last_slice + 1) == (box[2].start, box[2].stop)
        assert row.mean_prob == pytest.approx(mean) and row.max_prob == pytest.approx(peak)


def test_scan_row_and_an_empty_segmentation():
    seg, prob = constructed()
    brain = np.zeros(seg.shape, bool)
    brain[1:19, 1:17, 1:15] = True
    rows = lesion_rows("s1", seg, AFFINE, prob)
    summary = scan_row("s1", rows, brain, AFFINE, threshold=0.4, min_size=3, model="run")
    assert summary.lesions == 3
    assert summary.lesion_volume_ml == pytest.approx(seg.sum() * 0.003)
    assert summary.brain_volume_ml == pytest.approx(brain.sum() * 0.003)
    assert summary.lesion_load == pytest.approx(seg.sum() / brain.sum())
    assert lesion_rows("s2", np.zeros((4, 4, 4)), AFFINE) == []
    empty = scan_row("s2", [], brain, AFFINE, threshold=0.5, min_size=0, model="run")
    assert (empty.lesions, empty.lesion_volume_ml, empty.lesion_load) == (0, 0.0, 0.0)


def test_tables_from_files_in_any_orientation(tmp_path):
    seg, prob = constructed()
    flair = np.where(seg, 2.0, 1.0).astype(np.float32)
    flair[0] = 0.0  # background
    # stored LPS: the file's voxel axes run the other way; the tables are in RAS all the same
    shape = np.array(seg.shape)
    to_file = np.eye(4)
    to_file[:2, :2] = -np.eye(2)
    to_file[:2, 3] = shape[:2] - 1
    lps_affine = AFFINE @ to_file
    for name, array, dtype in (("seg", seg, np.uint8), ("prob", prob, np.float32), ("flair", flair, np.float32)):
        stored = array[::-1, ::-1, :].astype(dtype)
        nib.save(nib.Nifti1Image(stored, lps_affine), str(tmp_path / f"{name}.nii.gz"))
    assert nib.aff2axcodes(lps_affine) == ("L", "P", "S")
    rows, summary = measure_files(
        "s1",
        tmp_path / "seg.nii.gz",
        prob_file=tmp_path / "prob.nii.gz",
        flair_file=tmp_path / "flair.nii.gz",
        threshold=0.5,
        min_size=0,
        model="run",
    )
    expected = lesion_rows("s1", seg, AFFINE, prob.astype(np.float32))
    assert rows == expected
    assert summary.brain_volume_ml == pytest.approx(np.count_nonzero(flair) * 0.003)
    lesions_csv, scans_csv = write_lesion_tables(tmp_path / "out", rows, [summary])
    with lesions_csv.open() as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == LESION_COLUMNS and len(read) == 3
    assert float(read[0]["volume_ml"]) == pytest.approx(rows[0].volume_ml, rel=1e-5)
    assert scans_csv.read_text().splitlines()[0] == ",".join(SCAN_COLUMNS)
    tsv, _ = write_lesion_tables(tmp_path / "bids", [], [summary], tsv=True)
    assert tsv.name == "lesions.tsv" and tsv.read_text() == "\t".join(LESION_COLUMNS) + "\n"
