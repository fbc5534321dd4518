"""QC pictures of ``mssoft predict``: a PNG per scan through its lesions, and the cohort index."""

import csv

import matplotlib.image
import numpy as np
from conftest import write_isbi
from test_predict import make_run, run_cli

from mssoft.arrays.lesion_table import lesion_rows
from mssoft.workflows.qc_pictures import qc_slices


def test_slices_go_through_the_largest_lesions_or_the_brain():
    seg = np.zeros((10, 10, 30), bool)
    seg[2:6, 2:6, 20:23] = True  # big lesion centred on slice 21
    seg[7, 7, 5] = True  # one voxel on slice 5
    rows = lesion_rows("s", seg, np.eye(4))
    brain = np.zeros(seg.shape, bool)
    brain[..., 4:26] = True
    assert qc_slices(seg, brain, rows) == [5, 21]
    empty = qc_slices(np.zeros_like(seg), brain, [])
    assert empty and all(4 < k < 25 for k in empty)


def test_predict_draws_a_picture_per_scan_and_an_index(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=2)
    run = make_run(tmp_path / "run")
    out = tmp_path / "pred"
    result = run_cli("predict", run, data, "--out", out)
    assert result.exit_code == 0, result.output
    with (out / "scans.csv").open() as handle:
        scans = list(csv.DictReader(handle))
    index = (out / "qc.md").read_text()
    for row in scans:
        picture = out / "qc" / f"{row['scan']}_qc.png"
        image = matplotlib.image.imread(picture)
        assert image.ndim == 3 and min(image.shape[:2]) > 200
        assert f"![{row['scan']}](qc/{row['scan']}_qc.png)" in index
        assert f"[{row['scan']}](#{row['scan'].lower()}) | {row['lesions']} |" in index
        assert image.std() > 0.05  # not a blank page


def test_no_qc_skips_the_pictures(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=1)
    run = make_run(tmp_path / "run")
    result = run_cli("predict", run, data, "--out", tmp_path / "pred", "--no-qc")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / "lesions.csv").is_file()
    assert not (tmp_path / "pred" / "qc").exists() and not (tmp_path / "pred" / "qc.md").exists()


def test_overwrite_removes_the_pictures_of_the_earlier_predict(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=1, timepoints=2)
    run = make_run(tmp_path / "run")
    out = tmp_path / "pred"
    assert run_cli("predict", run, data, "--out", out).exit_code == 0
    assert len(list((out / "qc").glob("*.png"))) == 2
    again = run_cli("predict", run, data, "--out", out, "--overwrite", "--scans", "training01_02")
    assert again.exit_code == 0, again.output
    assert [p.name for p in (out / "qc").glob("*.png")] == ["training01_02_qc.png"]
    assert len((out / "scans.csv").read_text().splitlines()) == 2
