import json

import pytest
from click.testing import CliRunner
from mssoft.cli.main import cli

from mssoft.synthetic import write_isbi_dataset

pytestmark = pytest.mark.slow

TINY = [
    "--epochs",
    "1",
    "--base-filters",
    "4",
    "--depth",
    "2",
    "--batch-size",
    "4",
    "--modalities",
    "flair,t2",
    "--ratios",
    "1.0,1.2",
    "--gammas",
    "0.3",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvdata") / "isbi"
    write_isbi_dataset(root, n_patients=2, timepoints=2, shape=(32, 40, 24), seed=3, n_lesions=4)
    return root


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_sweep_resumes_without_redoing_cells_and_keeps_patients_apart(tmp_path, data):
    out = tmp_path / "cv"
    first = run("cv", data, "--out", out, *TINY, "--shard", "1/2")
    assert first.exit_code == 0, first.output
    assert "cells: 2/4 finished (2 run now)" in first.stdout
    assert "incomplete" in first.stdout
    done = sorted(out.glob("cells/*/*/*/result.json"))
    assert len(done) == 2
    stamps = {p: p.stat().st_mtime_ns for p in done}
    # a cell interrupted mid-way (folder without result.json) is started again
    (out / "cells" / "training02" / "binary" / "repeat0" / "run").mkdir(parents=True, exist_ok=True)

    second = run("cv", data, "--out", out, *TINY)
    assert second.exit_code == 0, second.output
    assert "cells: 4/4 finished (2 run now)" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # finished cells were not redone
    assert "best: " in second.stdout
    assert f"paired comparison: {out / 'comparison.csv'}" in second.stdout
    assert "## Against the binary model" in second.stdout
    assert "## Against the FLAIR-threshold baseline" in second.stdout
    # each cell's log line names its held-out scans and estimates the time left
    assert "(held out: training01_01, training01_02)" in second.stderr
    assert "training02_01 R1 " in second.stderr and "left for 1 cell" in second.stderr
    comparison = (out / "comparison.csv").read_text().splitlines()
    assert comparison[0].startswith(
        "ratio,gamma,rater,metric,n_pairs,baseline_mean,model_mean,mean_difference,ci95_low,"
        "ci95_high,p_wilcoxon,models_learned"
    )
    # against binary: 2 raters x (Dice, precision, recall, ECE); against the FLAIR threshold:
    # 2 grid points x 2 raters x (Dice, precision, recall)
    assert len(comparison) == 1 + 2 * 4 + 2 * 2 * 3
    pairs = [line.split(",") for line in comparison[1:]]
    assert all(p[4] == "4" for p in pairs if p[3] == "dice")  # 4 scans x 1 repeat
    assert all(1 <= int(p[4]) <= 4 for p in pairs)  # a precision is NaN with no lesion found
    assert sum(line.endswith(",flair-threshold,binary") for line in comparison) == 6
    if "best: none named" not in second.stdout:  # one-epoch models rarely beat the baseline
        assert "against the FLAIR threshold" in second.stdout

    table = (out / "table.md").read_text()
    assert "| binary |" in table and "| 120% / 0.3 |" in table and "| FLAIR threshold |" in table
    assert "Incomplete" not in table
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "cv_results.csv").read_text().splitlines()
    assert lines[0].startswith(
        "fold,ratio,gamma,repeat,seed,rater,threshold,min_size,n_scans,dice,ppv,tpr"
    )
    assert len(lines) == 1 + 2 * 3 * 2  # folds x (grid points + FLAIR) x raters (1 repeat)
    for result in out.glob("cells/*/*/*/result.json"):
        record = json.loads(result.read_text())
        held_out = record["fold"]
        assert all(s.startswith(held_out) for s in record["test_scans"])
        assert not any(s.startswith(held_out) for s in record["train_scans"])
        run_config = json.loads((result.parent / "run" / "config.json").read_text())["config"]
        trained_on = set(run_config["train_scans"]) | set(run_config["val_scans"])
        assert trained_on and not any(s.startswith(held_out) for s in trained_on)
        calibration = json.loads((result.parent / "run" / "calibration.json").read_text())
        assert not any(s.startswith(held_out) for s in calibration["scans"])
        assert {r["rater"] for r in record["scans"]} == {1, 2}

    third = run("cv", data, "--out", out, *TINY)
    assert "cells: 4/4 finished (0 run now)" in third.stdout


def test_sweep_rejects_changed_options_and_bad_grids(tmp_path, data):
    out = tmp_path / "cv"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "cv", "config": {"epochs": 99}}))
    changed = run("cv", data, "--out", out, *TINY)
    assert changed.exit_code == 1 and "holds a sweep with other options" in changed.stderr
    bad = run("cv", data, "--out", tmp_path / "x", "--ratios", "1.0,abc")
    assert bad.exit_code == 1 and "--ratios" in bad.stderr
    bad = run("cv", data, "--out", tmp_path / "y", "--gammas", "1.5")
    assert bad.exit_code == 1 and "--gamma" in bad.stderr
    assert run("cv", "--help").exit_code == 0


def test_sweep_over_raters_rings_and_tta(tmp_path, data):
    out = tmp_path / "cv"
    tiny = TINY[: TINY.index("--ratios")]
    result = run(
        "cv", data, "--out", out, *tiny, "--ratios", "1.2", "--raters", "1,2",
        "--rings", "linear", "--tta", "flip",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    point = "ratio1.20_gamma0.30_raters1-2_ring-linear_tta-flip"
    cells = sorted(out.glob(f"cells/*/{point}/repeat0/result.json"))
    assert len(cells) == 2
    masks = json.loads((out / "masks" / point.replace("_tta-flip", "") / "config.json").read_text())
    assert masks["config"]["raters"] == [1, 2] and masks["config"]["ring"] == "linear"
    run_config = json.loads((cells[0].parent / "run" / "config.json").read_text())["config"]
    assert run_config["mask"]["config"]["raters"] == [1, 2]
    calibration = json.loads((cells[0].parent / "run" / "calibration.json").read_text())
    assert calibration["tta"] == "flip"
    record = json.loads(cells[0].read_text())
    assert record["variant"] == "raters1-2_ring-linear_tta-flip"
    assert all(0.0 <= row["ece"] <= 1.0 and "ece_truth" in row for row in record["scans"])
    table = (out / "table.md").read_text()
    assert "| 120% / 0.3 raters1-2_ring-linear_tta-flip |" in table and "ECE R1" in table
    # the binary point every point is compared with was added (the grid had none)
    assert "has no binary point" in result.stderr
    assert len(sorted(out.glob("cells/*/binary/repeat0/result.json"))) == 2
    baseline = json.loads((out / "cells" / "training01" / "flair_baseline.json").read_text())
    assert set(baseline["slice_counts"]) == {"rater1", "raters1-2"}
