"""``mssoft demo`` (end to end on generated data), its report pieces, and the ISBI 2015 example."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from mssoft.cli.main import cli

from mssoft.arrays.metrics import SetSummary
from mssoft.errors import ConfigError
from mssoft.experiments.demo.figures import focus_window
from mssoft.experiments.demo.report import comparison_rows, failed_models, saved_epoch_dice, verdict
from mssoft.experiments.demo.run import prepare_demo_folder
from mssoft.experiments.demo.types import DemoConfig, Score, quick_config
from mssoft.workflows.settings import MaskConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_isbi2015.py"


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# --- the command, end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_demo_quick_writes_report_figures_table_and_config(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--quick", "--out", out, "--seed", 1)
    assert result.exit_code == 0, result.output

    # stdout: the table (binary and soft against both raters) and the report path
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0] == "rater" and parts[2] in ("Dice", "Recall"):
            rows[(f"rater {parts[1]}", parts[2])] = [float(v) for v in parts[3:]]
    assert set(rows) == {(f"rater {r}", m) for r in (1, 2) for m in ("Dice", "Recall")}
    for (reference, metric), (binary, soft, delta, flair) in rows.items():
        assert 0.0 <= binary <= 100.0 and 0.0 <= soft <= 100.0, (reference, metric)
        assert 0.0 <= flair <= 100.0, (reference, metric)  # the FLAIR-threshold baseline
        assert delta == pytest.approx(soft - binary, abs=0.11)
    assert "soft minus FLAIR threshold, Dice against rater 1: " in result.stdout
    assert f"report={out.resolve() / 'report.md'}" in result.stdout
    verdicts = (
        "No fair comparison",
        "masks beat",
        "did not beat",
        "not beyond the noise",
        "Mixed result",
        "masks tie",
    )
    assert sum(v in result.stdout for v in verdicts) == 1
    assert "[1/11] generating the synthetic data" in result.stderr  # progress on stderr
    assert "[1/11]" not in result.stdout

    # the report: verdict, table, figures, settings, wall time, commands
    report = (out / "report.md").read_text()
    for text in (
        "## Result",
        "| Reference | Metric (%) | Binary masks | Soft masks | Soft − binary "
        "| FLAIR threshold |",
        "### Against the FLAIR-threshold baseline",
        "| soft − FLAIR threshold | rater 1 |",
        "grid 0.01 to 0.99 by 0.01",
        "| rater 1 | Dice |",
        "| rater 2 | Recall |",
        "| truth > 0.5 | Dice |",
        "Wall time",
        "Lesion definition",
        "18-connected components",
        "ratio 1.2, gamma 0.3",
        "2 training and 1 held-out patient",
        "mssoft fit ",
    ):
        assert text in report, text
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["calibration.png", "data.png", "predictions.png", "training.png"]
    for name in figures:
        assert f"](figures/{name})" in report
        data = (out / "figures" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000, name

    # comparison.csv: a finite Dice and recall for each model and rater
    with (out / "comparison.csv").open() as handle:
        table = {(r["model"], r["reference"]): r for r in csv.DictReader(handle)}
    for model in ("binary", "soft", "flair-threshold"):
        for reference in ("rater 1", "rater 2", "truth"):
            row = table[(model, reference)]
            assert row["scans"] == "2"
            for metric in ("dice", "tpr"):
                assert 0.0 <= float(row[metric]) <= 1.0, (model, reference, metric)
    assert ("rater 1", "rater 2") in table  # human agreement

    # config.json and the step folders
    record = json.loads((out / "config.json").read_text())
    assert record["command"] == "demo" and record["status"] == "done"
    assert record["config"]["seed"] == 1 and record["config"]["epochs"] == 2
    assert record["config"]["shape"] == [48, 56, 32]
    assert record["result"]["wall_seconds"] > 0
    assert set(record["result"]["thresholds"]) == {"binary", "soft"}
    baseline = json.loads((out / "flair_baseline.json").read_text())
    assert record["result"]["flair_baseline"] == baseline
    assert 1.0 <= baseline["threshold"] <= 6.0 and set(baseline["validation_dice"]) == {
        "binary",
        "soft",
    }
    assert all(0.0 <= v <= 1.0 for v in baseline["validation_dice"].values())
    for name in ("binary", "soft"):
        assert (out / "runs" / name / "model.keras").is_file()
        assert (out / "runs" / name / "calibration.json").is_file()
        assert (out / "evaluation" / name / "metrics.csv").is_file()
    fit = json.loads((out / "runs" / "soft" / "config.json").read_text())["config"]
    assert fit["mask"]["source"] == "folder" and fit["patients"] == ["training01", "training02"]

    # an earlier demo is not replaced without --overwrite (checked before any work)
    again = run_cli("demo", "--quick", "--out", out)
    assert again.exit_code == 1 and "pass --overwrite" in again.stderr


def test_demo_refuses_a_non_empty_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_cli("demo", "--quick", "--out", out)
    assert result.exit_code == 1
    assert "is not empty and is not an mssoft output folder" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_demo_refuses_another_commands_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "fit"}))
    result = run_cli("demo", "--quick", "--out", out, "--overwrite")
    assert result.exit_code == 1 and "holds the output of `mssoft fit`" in result.stderr


def test_prepare_demo_folder_overwrite_removes_only_demo_outputs(tmp_path):
    out = tmp_path / "demo"
    (out / "runs" / "soft").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "report.md").write_text("old")
    (out / "config.json").write_text(json.dumps({"command": "demo"}))
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="pass --overwrite"):
        prepare_demo_folder(out)
    assert (out / "report.md").exists()
    assert prepare_demo_folder(out, overwrite=True) == out.resolve()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "my_notes.txt"]


def test_demo_help_loads_neither_tensorflow_nor_matplotlib():
    code = (
        "import sys, mssoft.cli.main\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(mssoft.cli.main.cli, ['demo', '--help'])\n"
        "assert r.exit_code == 0 and '--quick' in r.output, r.output\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_demo_config_checks_settings():
    assert quick_config(seed=3).seed == 3 and quick_config().training.epochs == 2
    assert quick_config(seed=3).training.seed == 3
    assert DemoConfig().to_dict()["shape"] == [96, 112, 64]
    with pytest.raises(ConfigError, match="ratio > 1"):
        DemoConfig(mask=MaskConfig(ratio=1.0))
    with pytest.raises(ConfigError, match="--patients"):
        DemoConfig(patients=0)
    with pytest.raises(ConfigError, match="at most 99"):
        DemoConfig(patients=90, heldout=10)
    result = run_cli("demo", "--epochs", 0)
    assert result.exit_code == 2 and "--epochs" in result.stderr


# --- report pieces -----------------------------------------------------------------------------


def _score(model, reference, dice, scan_dice, ppv=0.5, tpr=0.5):
    means = {"dice": dice, "ppv": ppv, "tpr": tpr, "ltpr": 0.5, "lfpr": 0.1}
    summary = SetSummary(len(scan_dice), means, {}, math.nan, {}, math.nan)
    return Score(model, reference, summary, scan_dice)


def _run(*val_dice, best=None):
    history = [{"epoch": e, "loss": -0.5, "val_dice": d} for e, d in enumerate(val_dice, 1)]
    return SimpleNamespace(history=history, best_epoch=best or len(val_dice))


def _result(binary, soft, runs=None):
    """A stand-in DemoResult holding per-scan Dice of two scans against raters 1 and 2."""
    scores = []
    for model, values in (("binary", binary), ("soft", soft)):
        for rater, (a, b) in zip((1, 2), values, strict=True):
            scores.append(_score(model, f"rater {rater}", (a + b) / 2, {"s1": a, "s2": b}))
    data = SimpleNamespace(heldout_scans=["s1", "s2"], patients=lambda part: ["p7"])
    runs = runs or {"binary": _run(0.3, 0.7), "soft": _run(0.3, 0.72)}
    baseline = SimpleNamespace(validation_dice={"binary": 0.3, "soft": 0.3})
    return SimpleNamespace(scores=scores, data=data, runs=runs, baseline=baseline)


def test_verdict_says_which_model_won_with_its_interval():
    higher = verdict(_result(binary=[(0.6, 0.6), (0.5, 0.5)], soft=[(0.7, 0.6), (0.6, 0.6)]))
    # two pairs (+10, 0) per rater 1: the interval includes 0, so no "beat"
    assert "**Soft masks scored higher, but not beyond the noise**" in higher
    assert "+5.0 points against rater 1" in higher and "+10.0 points against rater 2" in higher
    assert "rater 1: +5.0 points [95 % CI +0.0, +10.0], p=" in higher and "n=2" in higher
    assert "higher Dice in 3 of 4 comparisons" in higher
    worse = verdict(_result(binary=[(0.7, 0.7), (0.6, 0.6)], soft=[(0.6, 0.6), (0.5, 0.5)]))
    assert "**Soft masks did not beat binary masks**" in worse and "-10.0 points" in worse
    assert "95 % CI -10.0, -10.0" in worse and "in 0 of 4 comparisons" in worse
    better = verdict(_result(binary=[(0.6, 0.5), (0.5, 0.4)], soft=[(0.7, 0.58), (0.6, 0.5)]))
    assert "**Soft masks beat binary masks**" in better
    mixed = verdict(_result(binary=[(0.6, 0.6), (0.6, 0.6)], soft=[(0.7, 0.7), (0.5, 0.5)]))
    assert "**Mixed result**" in mixed
    for text in (better, worse, mixed, higher):
        assert "2 held-out scans of 1 synthetic patient," in text and "noise" in text


def test_verdict_voids_the_comparison_when_a_model_did_not_learn():
    collapsed = {"binary": _run(0.05, 0.0, 0.0, best=1), "soft": _run(0.4, 0.8)}
    text = verdict(_result(binary=[(0.6, 0.6)] * 2, soft=[(0.8, 0.8)] * 2, runs=collapsed))
    assert text.startswith(
        "**No fair comparison in this run**: the binary-mask model did not beat the "
        "FLAIR-threshold baseline on its validation slices"
    )
    assert "the binary-mask model 5.0 % against the baseline's 30.0 %" in text
    assert "soft-mask model" not in text and "another `--seed`" in text
    both = {"binary": _run(0.05), "soft": _run(0.02)}
    text = verdict(_result(binary=[(0.6, 0.6)] * 2, soft=[(0.8, 0.8)] * 2, runs=both))
    assert "**: neither model beat the FLAIR-threshold baseline" in text
    assert "soft-mask model 2.0 %" in text
    flair = SimpleNamespace(validation_dice={"binary": 0.3, "soft": 0.3})
    assert failed_models(SimpleNamespace(runs=collapsed, baseline=flair)) == ["binary"]
    # a validation Dice well above the old 10 % floor fails when the baseline scores higher
    high = SimpleNamespace(validation_dice={"binary": 0.75, "soft": 0.75})
    assert failed_models(SimpleNamespace(runs={"binary": _run(0.7)}, baseline=high)) == ["binary"]
    # without a baseline only a missing validation Dice fails a model
    assert failed_models(SimpleNamespace(runs=collapsed, baseline=None)) == []
    no_epoch = {"binary": _run(0.7), "soft": SimpleNamespace(history=[], best_epoch=None)}
    assert failed_models(SimpleNamespace(runs=no_epoch, baseline=flair)) == ["soft"]
    assert saved_epoch_dice([{"epoch": 1, "dice": 0.4}], 1) == 0.4  # no validation slices


def test_comparison_rows_in_percent_with_differences_and_nan():
    scores = [
        _score("binary", "rater 1", 0.7234, {}, ppv=math.nan),
        _score("soft", "rater 1", 0.75, {}, ppv=0.8),
        _score("binary", "truth", 0.5, {}),  # no soft score: left out
    ]
    assert comparison_rows(scores) == [
        ("rater 1", "Dice", "72.3", "75.0", "+2.7", "n/a"),
        ("rater 1", "Precision", "NaN", "80.0", "NaN", "n/a"),
        ("rater 1", "Recall", "50.0", "50.0", "+0.0", "n/a"),
    ]
    flair = _score("flair-threshold", "rater 1", 0.6, {})
    first = comparison_rows([*scores, flair])[0]
    assert first == ("rater 1", "Dice", "72.3", "75.0", "+2.7", "60.0")


def test_focus_window_centres_on_the_lesion_mass():
    mask = np.zeros((96, 112), bool)
    mask[70:76, 20:25] = True
    xs, ys = focus_window(mask, 32)
    assert (xs.stop - xs.start, ys.stop - ys.start) == (32, 32)
    assert xs.start <= 70 and 76 <= xs.stop and ys.start <= 20 and 25 <= ys.stop
    assert abs((xs.start + xs.stop) / 2 - 73) <= 2 and abs((ys.start + ys.stop) / 2 - 22) <= 2
    edge = np.zeros((96, 112), bool)
    edge[0:3, 108:112] = True  # at the corner: the window stays inside the slice
    assert focus_window(edge, 32) == (slice(0, 32), slice(80, 112))
    assert focus_window(np.zeros((40, 50)), 64) == (slice(0, 40), slice(0, 50))


# --- examples/train_isbi2015.py ----------------------------------------------------------------


def _load_example():
    spec = importlib.util.spec_from_file_location("train_isbi2015_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_runs_end_to_end_on_a_synthetic_root(tmp_path, capsys):
    from mssoft.synthetic import write_isbi_dataset

    data = tmp_path / "isbi"
    write_isbi_dataset(data, n_patients=3, timepoints=1, shape=(32, 40, 24), seed=2)
    write_isbi_dataset(data, n_patients=1, timepoints=1, shape=(32, 40, 24), seed=2, test=True)
    out = tmp_path / "out"
    example = _load_example()
    argv = [str(data), str(out), "--holdout", "training03", "--epochs", "1"]
    assert example.main([*argv, "--base-filters", "4", "--depth", "2"]) == 0
    printed = capsys.readouterr().out
    assert "scans: 2 for training (2 patients), 1 held out, 1 test scans without masks" in printed
    assert "Mean Dice (%) on the held-out scans:" in printed
    table = printed.split("Mean Dice (%) on the held-out scans:")[1].splitlines()
    assert table[1].split() == ["Rater", "1", "Rater", "2", "R1", "vs", "R2"]
    for name, line in zip(("binary", "soft"), table[2:4], strict=True):
        cells = line.split()
        assert cells[0] == name and all(0 <= float(v) <= 100 for v in cells[1:])
    for name in ("binary", "soft"):
        assert (out / "runs" / name / "calibration.json").is_file()
        assert (out / "predictions" / name / "test01_01_seg.nii.gz").is_file()  # test scan
        assert (out / "predictions" / name / "training03_01_seg.nii.gz").is_file()  # held out
        assert not (out / "predictions" / name / "training01_01_seg.nii.gz").exists()
        assert (out / "evaluation" / name / "metrics.csv").is_file()
    masks = json.loads((out / "runs" / "soft" / "config.json").read_text())["config"]["mask"]
    assert masks["source"] == "folder"


def test_example_rejects_unknown_holdout_and_used_folders(isbi_root, tmp_path, capsys):
    example = _load_example()
    args = [str(isbi_root), str(tmp_path / "o"), "--holdout"]
    with pytest.raises(SystemExit, match="no patient nobody"):
        example.plan(example.parse_args([*args, "nobody"]))
    train, heldout, test = example.plan(example.parse_args([*args, "training02"]))
    assert [s.patient_id for s in train] == ["training01"] * 2 and len(heldout) == 2
    assert test == []
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("")
    assert example.main([str(isbi_root), str(used)]) == 1
    assert "is not an empty folder" in capsys.readouterr().out


def test_mask_outline_surrounds_lesions_without_covering_them():
    from mssoft.experiments.demo.figures import mask_outline

    mask = np.zeros((9, 9), bool)
    mask[2:5, 2:5] = True  # a 3x3 lesion
    mask[7, 7] = True  # a one-voxel lesion
    outline = mask_outline(mask)
    assert not (outline & mask).any()
    ring = np.zeros((9, 9), bool)
    ring[1:6, 1:6] = True
    ring[1, 1] = ring[1, 5] = ring[5, 1] = ring[5, 5] = False  # edge neighbours only
    ring[2:5, 2:5] = False
    ring[[6, 8, 7, 7], [7, 7, 6, 8]] = True
    np.testing.assert_array_equal(outline, ring)
    assert not mask_outline(np.zeros((4, 4))).any()
