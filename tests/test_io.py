import nibabel as nib
import numpy as np
import pytest

from mssoft.errors import DataError
from mssoft.files.atomic import atomic_path
from mssoft.files.nifti import check_same_grid, read_header, read_volume, write_volume

ORIENTATIONS = {
    "RAS": np.diag([1.0, 1.0, 1.0, 1.0]),
    "LAS": np.diag([-1.2, 1.0, 2.0, 1.0]),
    "LPS": np.diag([-1.0, -1.5, 1.0, 1.0]),
    # a permuted grid: array axes are (P, I, L)
    "PIL": np.array([[0, 0, -1.0, 5], [-2.0, 0, 0, 3], [0, -1.0, 0, 1], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("codes", list(ORIENTATIONS))
def test_round_trip_keeps_orientation_affine_and_values(tmp_path, codes):
    affine = ORIENTATIONS[codes]
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), src)

    array, meta = read_volume(src)
    assert meta.axcodes == tuple(codes)
    # in RAS the world coordinate grows with each array index
    canonical = nib.as_closest_canonical(nib.load(src))
    np.testing.assert_array_equal(array, canonical.get_fdata().astype(np.float32))
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    np.testing.assert_allclose(meta.spacing_mm, canonical.header.get_zooms()[:3], rtol=1e-6)

    out = write_volume(array * 2, meta, tmp_path / "out.nii.gz")
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_array_equal(back.get_fdata(), data * 2)
    assert back.get_data_dtype() == np.float32


def test_uint8_output_and_header_copied(tmp_path):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([-1, 1, 1, 1.0]))
    img.header["descrip"] = b"scanner X"
    nib.save(img, tmp_path / "a.nii")
    array, meta = read_volume(tmp_path / "a.nii")
    array[1, 2, 3] = 1
    write_volume(array, meta, tmp_path / "b.nii.gz", dtype=np.uint8)
    back = nib.load(tmp_path / "b.nii.gz")
    assert back.get_data_dtype() == np.uint8
    assert back.header["descrip"].tobytes().startswith(b"scanner X")
    assert back.get_fdata()[4 - 1 - 1, 2, 3] == 1  # x was flipped back (L -> R)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DataError, match="missing.nii.gz: file not found"):
        read_volume(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(DataError, match="bad.nii.gz: cannot read NIfTI"):
        read_volume(bad)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "4d.nii.gz")
    with pytest.raises(
        DataError, match=r"4d.nii.gz: expected a 3D volume, got shape \(3, 3, 3, 2\)"
    ):
        read_volume(tmp_path / "4d.nii.gz")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not a NIfTI file"):
        read_header(tmp_path / "x.txt")


def test_single_frame_4d_is_accepted(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), np.eye(4)), tmp_path / "f.nii.gz")
    array, meta = read_volume(tmp_path / "f.nii.gz")
    assert array.shape == (3, 4, 5) and meta.shape == (3, 4, 5)


def test_grid_mismatch_names_both_files(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), tmp_path / "a.nii")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 4), np.float32), np.eye(4)), tmp_path / "b.nii")
    shifted = np.eye(4)
    shifted[0, 3] = 0.01
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), shifted), tmp_path / "c.nii")
    nearly = np.eye(4)
    nearly[0, 3] = 0.0005
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), nearly), tmp_path / "d.nii")
    a, b, c, d = (read_header(tmp_path / f"{n}.nii") for n in "abcd")
    with pytest.raises(DataError, match=r"b.nii: shape \(3, 3, 4\) differs from .*a.nii"):
        check_same_grid([a, b])
    with pytest.raises(DataError, match=r"c.nii: affine differs from .*a.nii by 0.01 mm"):
        check_same_grid([a, c])
    check_same_grid([a, d])  # within 1e-3 mm


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.name.startswith(".")
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_write_rejects_wrong_shape(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), np.eye(4)), tmp_path / "a.nii")
    _, meta = read_volume(tmp_path / "a.nii")
    with pytest.raises(ValueError, match="does not match the RAS shape"):
        write_volume(np.zeros((3, 5, 4)), meta, tmp_path / "o.nii.gz")
    assert not (tmp_path / "o.nii.gz").exists()
