"""The run record: validation of every field, legacy defaults, the --resume comparison."""

from __future__ import annotations

import pytest

from mssoft.errors import DataError
from mssoft.files.run_record import (
    LEGACY_DEFAULTS,
    parse_run_record,
    resume_differences,
    settings_entry,
)
from mssoft.workflows.settings import TrainingSettings

SOURCE = "run/config.json"
BASE = {"modalities": ["flair", "t2"], "depth": 3, "input_multiple": 8, "rater": 2}


def test_a_record_of_this_version_is_typed():
    record = parse_run_record(
        {**BASE, "voxel_size_mm": [1, 1, 3], "orientation": "LAS", "base_filters": 8}, SOURCE
    )
    assert record.modalities == ("flair", "t2") and record.rater == 2
    assert (record.depth, record.input_multiple, record.base_filters) == (3, 8, 8)
    assert record.voxel_size_mm == (1.0, 1.0, 3.0) and record.orientation == "LAS"
    assert record.normalise.method == "zscore"  # the legacy default


def test_records_of_earlier_versions_take_the_legacy_defaults():
    record = parse_run_record({"modalities": "FLAIR,T2", "depth": 2}, SOURCE)
    assert record.modalities == ("FLAIR", "T2") and record.rater == LEGACY_DEFAULTS["rater"]
    assert record.input_multiple == 4 and record.voxel_size_mm is None
    assert record.normalise.method == LEGACY_DEFAULTS["normalise"]["method"]
    assert parse_run_record({"modalities": ["flair"]}, SOURCE).input_multiple == 1
    assert parse_run_record({**BASE, "normalise": "percentile"}, SOURCE).normalise.method == (
        "percentile"
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("input_multiple", 0),
        ("input_multiple", 6),
        ("input_multiple", 2**40),
        ("input_multiple", 4),  # not 2 ** depth
        ("depth", 0),
        ("depth", True),
        ("rater", 2.5),
        ("epochs", "30"),
        ("learning_rate", -1.0),
        ("val_fraction", 1.0),
        ("mixed_precision", "yes"),
        ("slice_shape", [48]),
        ("voxel_size_mm", [1, 1, 0]),
        ("train_scans", "a"),
        ("patients", [1, 2]),
        ("normalise", 3),
    ],
)
def test_a_field_of_the_wrong_type_or_range_is_named_with_the_file(field, value):
    with pytest.raises(DataError, match=rf"^run/config.json: invalid `{field}"):
        parse_run_record({**BASE, field: value}, SOURCE)


def test_nesting_non_finite_numbers_and_bad_modalities_are_refused():
    nested: list = []
    for _ in range(40):
        nested = [nested]
    with pytest.raises(DataError, match="nests deeper"):
        parse_run_record({**BASE, "extra": nested}, SOURCE)
    with pytest.raises(DataError, match="non-finite"):
        parse_run_record({**BASE, "extra": float("inf")}, SOURCE)
    for modalities in (None, [], [1], ["flair", "FLAIR"], {"a": 1}):
        with pytest.raises(DataError, match="run/config.json"):
            parse_run_record({**BASE, "modalities": modalities}, SOURCE)
    with pytest.raises(DataError, match="no `config` object"):
        parse_run_record(["flair"], SOURCE)


def test_the_record_holds_every_training_setting():
    settings = TrainingSettings(epochs=3).record()
    entry = settings_entry(settings, {"modalities": ["flair"], "normalise": {"method": "zscore"}})
    assert set(settings) <= set(entry) and entry["epochs"] == 3
    assert entry["modalities"] == ["flair"] and entry["normalise"] == {"method": "zscore"}


def test_resume_compares_the_whole_record():
    defaults = TrainingSettings().record()
    stored = {"modalities": ["flair"], "epochs": 3, "eps": 1e-6, "old_field": 1}
    current = {"modalities": ["flair"], "epochs": 5, "eps": 1e-6}
    assert resume_differences(stored, current, defaults) == ["old_field: 1 -> None"]
    # a setting added later compares as its default for runs recorded before it existed
    assert resume_differences({"modalities": ["flair"]}, {"eps": 1e-6}, defaults) == [
        "modalities: ['flair'] -> None"
    ]
    assert resume_differences({}, {"eps": 1e-3}, defaults) == ["eps: 1e-06 -> 0.001"]
    # legacy augment/normalise entries compare by their name
    current = {"normalise": {"method": "zscore", "clip": None}, "augment": {"name": "paper"}}
    assert resume_differences({}, current, defaults) == []
    current = {"normalise": {"method": "histogram"}}
    assert resume_differences({}, current, defaults)[0].startswith("normalise:")
