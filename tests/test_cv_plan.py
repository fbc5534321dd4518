import math

import pytest

from mssoft.errors import ConfigError
from mssoft.experiments.cv.plan import (
    GridPoint,
    grid_points,
    leave_one_patient_out,
    parse_float_list,
    parse_shard,
    plan_cells,
    with_binary_point,
)
from mssoft.experiments.cv.report import (
    best_point,
    format_table,
    plot_sweep,
    point_label,
    summarise,
)
from mssoft.files.scans import Scan


def scans(spec):
    return [Scan(f"{p}_{t}", p, {"flair": None}) for p, n in spec for t in range(n)]


def test_folds_never_mix_a_patient_between_sides():
    folds = leave_one_patient_out(scans([("a", 3), ("b", 1), ("c", 2)]))
    assert [f.held_out for f in folds] == ["a", "b", "c"]
    for fold in folds:
        assert all(s.startswith(fold.held_out + "_") for s in fold.test)
        assert not any(s.startswith(fold.held_out + "_") for s in fold.train)
        assert len(fold.train) + len(fold.test) == 6
    with pytest.raises(ConfigError, match="at least 2 patients"):
        leave_one_patient_out(scans([("a", 3)]))


def test_grid_collapses_binary_points_and_validates():
    points = grid_points([1.0, 1.2], [0.3, 0.5])
    assert points == [GridPoint(1.0, 0.0), GridPoint(1.2, 0.3), GridPoint(1.2, 0.5)]
    assert points[0].name == "binary" and points[1].name == "ratio1.20_gamma0.30"
    with pytest.raises(ConfigError, match="--gamma"):
        grid_points([1.2], [1.3])
    assert parse_float_list("1.0, 1.1,1.2", option="--ratios") == (1.0, 1.1, 1.2)
    for bad in ("", "a,b", "1,1"):
        with pytest.raises(ConfigError, match="--ratios"):
            parse_float_list(bad, option="--ratios")


def test_cells_and_shards():
    folds = leave_one_patient_out(scans([("a", 1), ("b", 1)]))
    cells = plan_cells(folds, grid_points([1.0, 1.2], [0.3]), repeats=2, seed=7)
    assert len(cells) == 8 and len({c.key for c in cells}) == 8
    assert {c.seed for c in cells} == {7, 8}
    assert str(cells[1].folder("/o")) == "/o/cells/a/binary/repeat1"
    assert parse_shard("2/3") == (1, 3) and parse_shard(None) == (0, 1)
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def rows():
    out = []
    for fold, base in (("a", 0.6), ("b", 0.5)):
        for repeat in (0, 1):
            for ratio, gamma, bonus in ((1.0, 0.0, 0.0), (1.2, 0.3, 0.05)):
                for rater in (1, 2):
                    out.append(
                        {
                            "fold": fold,
                            "repeat": repeat,
                            "ratio": ratio,
                            "gamma": gamma,
                            "rater": rater,
                            "dice": base + bonus + 0.01 * repeat - 0.1 * (rater - 1),
                            "ppv": 0.8,
                            "tpr": 0.5 + bonus,
                        }
                    )
    return out


def test_summary_table_and_best_point(tmp_path):
    summaries = summarise(rows())
    dice = {(s.ratio, s.rater): s for s in summaries if s.metric == "dice"}
    # repeat r: mean over folds a, b = 0.55 + bonus + 0.01 r; over repeats: mean 0.555, std 0.00707
    assert dice[(1.0, 1)].mean == pytest.approx(0.555)
    assert dice[(1.2, 1)].mean == pytest.approx(0.605)
    assert dice[(1.2, 2)].std == pytest.approx(math.sqrt(0.00005), rel=1e-6)
    assert dice[(1.0, 1)].spread_over == "repeats" and dice[(1.0, 1)].n == 2
    assert best_point(summaries)[:2] == (1.2, 0.3)
    table = format_table(summaries)
    assert "| grid point (mask size / gamma) | Dice R1 | Dice R2 | Precision R1" in table
    assert "| 120% / 0.3 | 60.5 ± 0.7 | 50.5 ± 0.7 |" in table
    assert "| binary |" in table
    one_repeat = summarise([r for r in rows() if r["repeat"] == 0])
    assert one_repeat[0].spread_over == "patients"
    png = plot_sweep(summaries, tmp_path / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_axes_beyond_the_paper():
    points = grid_points(
        [1.0, 1.2], [0.3], raters=[None, (1, 2)], rings=["constant", "linear"], ttas=["none"]
    )
    names = [p.name for p in points]
    assert names == [
        "binary",
        "ratio1.20_gamma0.30",
        "ratio1.20_gamma0.30_ring-linear",
        "share_raters1-2",
        "ratio1.20_gamma0.30_raters1-2",
        "ratio1.20_gamma0.30_raters1-2_ring-linear",
    ]
    assert points[0].is_binary and not points[3].is_binary  # two raters' share is soft
    flips = grid_points([1.0], [0.3], ttas=["none", "flip"])
    assert [p.name for p in flips] == ["binary", "binary_tta-flip"]
    # every grid has the binary point every other point is compared with
    assert with_binary_point(flips) == (flips, False)
    shared, added = with_binary_point(grid_points([1.0, 1.2], [0.3], raters=[(1, 2)]))
    assert added and [p.name for p in shared] == [
        "binary",
        "share_raters1-2",
        "ratio1.20_gamma0.30_raters1-2",
    ]
    flip_only, added = with_binary_point(grid_points([1.2], [0.3], ttas=["flip"]))
    assert added and flip_only[0].is_binary and flip_only[0].tta == "none"
    with pytest.raises(ConfigError, match="--rings"):
        grid_points([1.2], [0.3], rings=["cubic"])
    with pytest.raises(ConfigError, match="--tta"):
        grid_points([1.2], [0.3], ttas=["rotate"])


def test_cell_keys_of_a_fixed_grid_are_those_of_earlier_sweeps():
    """A re-run skips the cells an earlier sweep finished only if their keys stay the same."""
    import hashlib

    folds = leave_one_patient_out(scans([("training01", 1), ("training02", 1)]))
    points = grid_points(
        [1.0, 1.1, 1.2],
        [0.0, 0.3, 0.5],
        raters=[None, (1, 2)],
        rings=["constant", "linear", "gaussian"],
        ttas=["none", "flip"],
    )
    keys = [c.key for c in plan_cells(folds, points, repeats=2, seed=3)]
    assert len(keys) == 208
    assert keys[:3] == [
        "training01/binary/repeat0",
        "training01/binary/repeat1",
        "training01/ratio1.10_gamma0.30/repeat0",
    ]
    assert keys[100] == "training01/ratio1.20_gamma0.30_raters1-2_ring-gaussian_tta-flip/repeat0"
    # every key, as the code before MaskConfig held the soft-mask settings wrote them
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    assert digest == "9e5b46a6ad31bc67518218401f171d75a04d500f86a74e8dcbcb63b6f9a21f22"


def test_sweep_record_is_that_of_earlier_sweeps(tmp_path):
    from mssoft.experiments.cv.run import CVConfig, _parsed_threshold
    from mssoft.workflows.settings import MaskConfig

    mask = MaskConfig(rater=2, flair_threshold="p75", per_lesion=True, ring_sigma=1.5)
    config = CVConfig(
        data=tmp_path / "d",
        out=tmp_path / "o",
        ratios=(1.0, 1.2),
        gammas=(0.3,),
        mask=mask,
        raters=(None, (1, 2)),
        rings=("constant", "gaussian"),
        tta=("none", "flip"),
    )
    own = {k: v for k, v in config.record().items() if k not in config.training.record()}
    assert own == {
        "data": str(tmp_path / "d"),
        "out": str(tmp_path / "o"),
        "ratios": (1.0, 1.2),
        "gammas": (0.3,),
        "repeats": 1,
        "rater": 2,
        "flair_threshold": "p75",
        "per_lesion": True,
        "shard": (0, 1),
        "jobs": 1,
        "raters": (None, (1, 2)),
        "rings": ("constant", "gaussian"),
        "ring_sigma": 1.5,
        "tta": ("none", "flip"),
    }
    # a sweep recorded with the option's text compares equal to the parsed threshold
    assert _parsed_threshold({"flair_threshold": "none"}) == {"flair_threshold": None}
    assert _parsed_threshold({"flair_threshold": "0.5"}) == {"flair_threshold": 0.5}


def test_table_keeps_variants_apart():
    base = rows()
    linear = [
        {**r, "variant": "ring-linear", "dice": r["dice"] + 0.2} for r in base if r["ratio"] > 1
    ]
    summaries = summarise(base + linear)
    table = format_table(summaries)
    assert "| 120% / 0.3 ring-linear |" in table and "| 120% / 0.3 |" in table
    ratio, gamma, _ = best_point(summaries)  # among the paper's points
    assert (ratio, gamma) == (1.2, 0.3)
    assert "ECE" not in table.splitlines()[0]  # no ECE in these rows: no column


def test_every_grid_point_has_one_label():
    assert point_label(1.0, 0.0) == "binary"
    assert point_label(1.0, 0.0, "raters1-2") == "raters' share raters1-2"
    assert point_label(1.2, 0.3, "ring-linear") == "120% / 0.3 ring-linear"
    assert point_label(0.0, 0.0, "flair-threshold") == "FLAIR threshold"
    share = [{**r, "ratio": 1.0, "gamma": 0.0, "variant": "raters1-2"} for r in rows()]
    table = format_table(summarise(share))
    assert "| raters' share raters1-2 |" in table
