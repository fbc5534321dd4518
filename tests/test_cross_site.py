"""Synthetic scanner sites and ``mssoft demo --cross-site``."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from mssoft.cli.main import cli

from mssoft.errors import ConfigError
from mssoft.experiments.demo.types import CrossSiteConfig
from mssoft.files.layout import LANDMARKS_NAME
from mssoft.files.scans import discover_scans, load_scan
from mssoft.synthetic import SITE_A, SITE_B, Site, make_scan, write_site_dataset


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_site_b_differs_from_site_a_as_another_scanner(tmp_path):
    write_site_dataset(tmp_path, SITE_A, shape_mm=(48, 48, 32), n_patients=1, timepoints=1)
    write_site_dataset(
        tmp_path, SITE_B, shape_mm=(48, 48, 32), n_patients=1, timepoints=1, first_patient=2
    )
    a, b = (load_scan(s, modalities=("flair", "t1"), rater=1) for s in discover_scans(tmp_path))
    assert a.meta.spacing_mm == pytest.approx((1.0, 1.0, 1.0))
    assert b.meta.spacing_mm == pytest.approx((1.2, 1.2, 2.0))
    assert a.image.shape[:3] == (48, 48, 32) and b.image.shape[:3] == (40, 40, 16)
    median = [np.median(s.image[..., 0][s.image[..., 0] > 0]) for s in (a, b)]
    assert median[1] > 2 * median[0]  # FLAIR in other units
    t1 = [np.median(s.image[..., 1][s.image[..., 1] > 0]) for s in (a, b)]
    assert t1[1] < 0.6 * t1[0]


def test_site_contrast_and_thickness_reach_the_images():
    flat = Site("flat", contrast={m: 0.5 for m in ("flair", "t1", "t2", "pd")}, noise=0, bias=0)
    tables = flat.intensities()
    assert tables["flair"]["wm"] == SITE_A.intensities()["flair"]["wm"]
    assert tables["flair"]["lesion"] - tables["flair"]["wm"] == pytest.approx(
        0.5 * (SITE_A.intensities()["flair"]["lesion"] - tables["flair"]["wm"])
    )
    thin = make_scan((32, 32, 24), seed=1, noise=0, bias=0, modalities=("flair",))
    thick = make_scan(
        (32, 32, 24), seed=1, noise=0, bias=0, modalities=("flair",), slice_thickness=4.0
    )
    # a thick slice averages along the third axis: smaller differences between slices
    step = [np.abs(np.diff(s.images["flair"], axis=2)).mean() for s in (thin, thick)]
    assert step[1] < 0.8 * step[0]
    with pytest.raises(ValueError, match="contrast"):
        Site("bad", contrast={"flair": 1.0})


def test_cross_site_demo_checks_the_sites_before_writing(tmp_path):
    from mssoft.experiments.demo.cross_site import run_cross_site

    with pytest.raises(ConfigError, match="test_site"):
        run_cross_site(CrossSiteConfig(out=tmp_path / "x", test_site="Z"))
    assert not (tmp_path / "x").exists()
    assert CrossSiteConfig().to_dict()["augment"] == "paper"


def test_fit_cv_and_demo_take_augment_and_normalise():
    for command in ("fit", "cv", "demo"):
        result = run_cli(command, "--help")
        assert result.exit_code == 0
        assert "--augment" in result.stdout and "--normalise" in result.stdout, command
    assert "--cross-site" in run_cli("demo", "--help").stdout
    result = run_cli("fit", "data", "--out", "x", "--normalise", "minmax")
    assert result.exit_code == 2 and "--normalise" in result.stderr


@pytest.mark.slow
def test_cross_site_demo_reports_both_sites_with_histogram_and_strong(tmp_path):
    out = tmp_path / "cross"
    result = run_cli(
        "demo", "--cross-site", "--quick", "--out", out, "--patients", 1, "--heldout", 1,
        "--epochs", 1, "--augment", "strong", "--normalise", "histogram",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("trained at site A (augment=strong, normalise=histogram")
    assert lines[2].startswith("model\tA\twithin-site\t2\t")
    assert lines[3].startswith("model\tB\tcross-site\t2\t")
    assert lines[4].startswith("flair-threshold\tA\twithin-site\t2\t")
    assert lines[5].startswith("flair-threshold\tB\tcross-site\t2\t")
    record = json.loads((out / "config.json").read_text())
    assert record["status"] == "done" and record["config"]["cross_site"] is True
    assert [s["site"] for s in record["result"]["scores"]] == ["A", "B"]
    baseline = record["result"]["flair_baseline"]
    assert [s["site"] for s in baseline["scores"]] == ["A", "B"]
    assert 0.0 <= baseline["baseline_validation_dice"] <= 1.0 and "learned" in baseline
    run = out / "runs" / "model"
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["normalise"]["method"] == "histogram"
    assert config["normalise"]["landmarks_file"] == LANDMARKS_NAME
    assert config["augment"]["name"] == "strong" and config["augment"]["strong"]["scale"]
    assert (run / LANDMARKS_NAME).is_file()
    predict = json.loads((out / "predictions" / "model" / "config.json").read_text())
    assert predict["config"]["normalise"] == "histogram"
    report = (out / "report.md").read_text()
    assert "| B | cross-site |" in report and "| B | cross-site, FLAIR threshold |" in report
