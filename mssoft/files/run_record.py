"""The run record: the ``config`` entry of a run folder's ``config.json``, typed and validated.

``mssoft fit`` writes it (:func:`settings_entry` plus what training resolved from the data) and
every reader of a run goes through :func:`parse_run_record`: ``predict``, ``calibrate``,
``export`` (through :func:`mssoft.files.run_folder.read_run`), and ``fit --resume``
(:func:`resume_differences`). Each field is checked for its type and range; a bad one is one
:class:`~mssoft.errors.DataError` naming the file and the field. Fields that runs of earlier
versions did not record take their :data:`LEGACY_DEFAULTS`, the values those versions used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mssoft.choices import NORMALISATIONS as METHODS
from mssoft.errors import DataError

__all__ = [
    "LEGACY_DEFAULTS",
    "RESUMABLE_FIELDS",
    "MAX_DEPTH",
    "NormaliseEntry",
    "RunRecord",
    "parse_run_record",
    "settings_entry",
    "resume_differences",
]

#: What runs of earlier versions used when their record lacks the field (the one place).
LEGACY_DEFAULTS: dict[str, Any] = {
    "rater": 1,
    "normalise": {"method": "zscore"},
    "augment": {"name": "paper"},
}
#: Fields that ``fit --resume`` may change; every other field must match the stored run.
RESUMABLE_FIELDS = frozenset(
    {"data", "epochs", "strategy", "devices", "slice_cache", "jit_compile"}
)
#: Deepest U-Net a record may declare (``input_multiple`` at most ``2 ** MAX_DEPTH``).
MAX_DEPTH = 12
#: Deepest nesting of lists and objects in a record.
MAX_NESTING = 16

_MAX_COUNT = 10**9


@dataclass(frozen=True)
class NormaliseEntry:
    """How a run normalises its input intensities (``config.normalise``).

    Attributes
    ----------
    method : {"zscore", "percentile", "histogram"}
    landmarks_file : str or None
        File name of the histogram landmarks in the run folder (``histogram`` only).
    record : dict
        The whole entry as recorded (parameters included).
    """

    method: str
    landmarks_file: str | None
    record: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class RunRecord:
    """The validated ``config`` entry of a run's ``config.json``.

    Attributes
    ----------
    source : Path
        The file it was read from (named in every message).
    modalities : tuple of str
        The model's input channels in order, as recorded
        (:func:`mssoft.files.scans.normalise_modality` gives the canonical names).
    rater : int
        Rater whose masks trained the model (legacy default 1).
    depth : int or None
        Number of poolings of the U-Net (None when the record lacks it).
    input_multiple : int
        Slice sides are zero-padded to multiples of it (``2 ** depth``; for a record with
        neither field, 1).
    base_filters : int or None
    normalise : NormaliseEntry
    voxel_size_mm : tuple of 3 float or None
        Median training voxel size (mm, RAS axes); None for runs that record none.
    orientation : str
    config : dict
        The whole entry, legacy defaults filled in.
    """

    source: Path
    modalities: tuple[str, ...]
    rater: int
    depth: int | None
    input_multiple: int
    base_filters: int | None
    normalise: NormaliseEntry
    voxel_size_mm: tuple[float, float, float] | None
    orientation: str
    config: dict[str, Any] = field(repr=False)


# --- field checks -------------------------------------------------------------------------------


def _fail(source: Path, name: str, expected: str, value: Any) -> DataError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return DataError(
        f"{source}: invalid `{name}` in the run record: expected {expected}, got {shown}"
    )


def _int(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _number(
    low: float, high: float, *, open_low: bool = False, open_high: bool = False
) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if not math.isfinite(float(v)):
            return False
        return (low < v if open_low else low <= v) and (v < high if open_high else v <= high)

    return ok


def _name(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 200


def _names(v: Any) -> bool:
    return isinstance(v, list) and all(_name(x) for x in v)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _mapping(v: Any) -> bool:
    return isinstance(v, dict)


def _power_of_two(v: Any) -> bool:
    return _int(1, 2**MAX_DEPTH)(v) and v & (v - 1) == 0


#: Type and range of every field ``mssoft fit`` writes: (check, what is expected).
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data": (_name, "a path"),
    "rater": (_int(1, 1000), "an integer in [1, 1000]"),
    "mask": (_optional(_mapping), "an object"),
    "patients": (_optional(_names), "a list of names"),
    "base_filters": (_int(1, 4096), "an integer in [1, 4096]"),
    "depth": (_int(1, MAX_DEPTH), f"an integer in [1, {MAX_DEPTH}]"),
    "epochs": (_int(1, _MAX_COUNT), "an integer >= 1"),
    "batch_size": (_int(1, _MAX_COUNT), "an integer >= 1"),
    "learning_rate": (_number(0, 1e3, open_low=True), "a float in (0, 1000]"),
    "eps": (_number(0, 1, open_low=True), "a float in (0, 1]"),
    "optimizer": (_name, "a name"),
    "loss": (_mapping, "an object"),
    "seed": (_int(0, 2**64), "an integer >= 0"),
    "val_fraction": (_number(0, 1, open_high=True), "a float in [0, 1)"),
    "split": (_name, "a name"),
    "rotation_degrees": (_number(0, 180), "a float in [0, 180]"),
    "strategy": (_name, "a name"),
    "devices": (_optional(_names), "a list of device names"),
    "mixed_precision": (lambda v: isinstance(v, bool), "true or false"),
    "dtype_policy": (_name, "a name"),
    "target_interpolation": (_name, "a name"),
    "output_bias": (_name, "a name"),
    "warmup_epochs": (_number(0, _MAX_COUNT), "a float >= 0"),
    "normalization": (_name, "a name"),
    "slice_shape": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_int(1, 2**16)(s) for s in v),
        "two integers in [1, 65536]",
    ),
    "input_multiple": (_power_of_two, f"a power of two in [1, {2**MAX_DEPTH}]"),
    "slice_cache": (_name, "a name"),
    "lesion_free_slices": (_name, "a text"),
    "monitor": (_name, "a name"),
    "orientation": (_optional(lambda v: isinstance(v, str) and len(v) <= 3), "axis codes"),
    "voxel_size_mm": (
        _optional(
            lambda v: isinstance(v, list)
            and len(v) == 3
            and all(_number(0, 1e3, open_low=True)(s) for s in v)
        ),
        "3 floats in (0, 1000] mm",
    ),
    "augment": (lambda v: _name(v) or _mapping(v), "an object"),
    "normalise": (lambda v: v in METHODS or _mapping(v), "an object"),
    "train_scans": (_optional(_names), "a list of scan ids"),
    "val_scans": (_optional(_names), "a list of scan ids"),
    "train_patients": (_optional(_names), "a list of patient ids"),
    "val_patients": (_optional(_names), "a list of patient ids"),
    "train_slices": (_int(0, _MAX_COUNT), "an integer >= 0"),
    "val_slices": (_int(0, _MAX_COUNT), "an integer >= 0"),
}


def _nesting(value: Any, limit: int) -> bool:
    """Whether ``value``'s lists and objects nest at most ``limit`` deep (without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            if level >= limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            return False
    return True


def _modalities(value: Any, source: Path) -> tuple[str, ...]:
    if isinstance(value, str):  # some early runs stored "flair,t1"
        value = [m for m in value.split(",") if m.strip()]
    if not isinstance(value, list) or not value or not all(_name(m) for m in value):
        raise DataError(
            f"{source}: no `modalities` list of channel names in its config (is {source.parent} a "
            "`mssoft fit` run?)"
        )
    if len(value) > 64:
        raise _fail(source, "modalities", "at most 64 channels", value)
    modalities = tuple(value)
    if len({m.strip().lower() for m in modalities}) != len(modalities):
        raise _fail(source, "modalities", "distinct channels", value)
    return modalities


def _normalise(value: Any, source: Path) -> NormaliseEntry:
    record = {"method": value} if isinstance(value, str) else dict(value)
    method = record.get("method")
    if method not in METHODS:
        raise _fail(source, "normalise.method", f"one of {', '.join(METHODS)}", method)
    landmarks = record.get("landmarks_file")
    if landmarks is not None and (not _name(landmarks) or Path(landmarks).name != landmarks):
        raise _fail(source, "normalise.landmarks_file", "a file name in the run folder", landmarks)
    return NormaliseEntry(str(method), landmarks, record)


def parse_run_record(config: Any, source: str | Path) -> RunRecord:
    """Validate a run's ``config`` entry and fill in the legacy defaults.

    Parameters
    ----------
    config : object
        The ``config`` entry of the run's ``config.json`` (as parsed from JSON).
    source : path-like
        The file it comes from, named in messages (``RUN/config.json`` or ``mssoft.json``).

    Returns
    -------
    RunRecord

    Raises
    ------
    DataError
        One line naming ``source`` and the first field of the wrong type or out of range, or
        no ``modalities``.
    """
    source = Path(source)
    if not isinstance(config, dict):
        raise DataError(f"{source}: no `config` object (is {source.parent} a `mssoft fit` run?)")
    if not _nesting(config, MAX_NESTING):
        raise DataError(
            f"{source}: the run record nests deeper than {MAX_NESTING} levels or holds a "
            "non-finite number"
        )
    given = {k: v for k, v in config.items() if v is not None or k not in LEGACY_DEFAULTS}
    full = {**LEGACY_DEFAULTS, **given}
    modalities = _modalities(full.get("modalities"), source)
    for name, (check, expected) in FIELDS.items():
        if name in full and not check(full[name]):
            raise _fail(source, name, expected, full[name])
    depth = full.get("depth")
    multiple = full.get("input_multiple")
    if multiple is None:  # runs of earlier versions: 2 ** depth, or no padding
        multiple = 1 if depth is None else 2**depth
    elif depth is not None and multiple != 2**depth:
        raise _fail(source, "input_multiple", f"2 ** depth = {2 ** depth}", multiple)
    sizes = full.get("voxel_size_mm")
    return RunRecord(
        source=source,
        modalities=modalities,
        rater=int(full["rater"]),
        depth=depth,
        input_multiple=int(multiple),
        base_filters=full.get("base_filters"),
        normalise=_normalise(full["normalise"], source),
        voxel_size_mm=tuple(float(s) for s in sizes) if sizes else None,  # type: ignore[arg-type]
        orientation=str(full.get("orientation") or ""),
        config=full,
    )


# --- writing and resuming -----------------------------------------------------------------------


def settings_entry(settings: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The ``config`` entry ``mssoft fit`` writes: every training setting, then what it resolved.

    Parameters
    ----------
    settings : mapping
        Every training setting, JSON-ready (``TrainingSettings.record()``): a setting added
        there is recorded, and compared by ``--resume``, with no change here.
    resolved : mapping
        What training resolved from the data and the settings (modalities in channel order,
        rater, split, geometry, the ``normalise`` and ``augment`` entries, ...); overrides
        ``settings`` where both name a field.
    """
    return {**settings, **resolved}


def resume_differences(
    stored: Mapping[str, Any], current: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[str]:
    """The fields that differ between a stored run's record and the resumed run's, as text.

    The whole record is compared (fields of either, :data:`RESUMABLE_FIELDS` aside). A field
    the stored run lacks (runs of earlier versions) compares as the value those versions used:
    its :data:`LEGACY_DEFAULTS` entry (for the ``augment`` and ``normalise`` objects, their
    ``name``/``method`` alone), else its default in ``defaults``.

    Parameters
    ----------
    stored, current : mapping
        The stored run's ``config`` entry, and the one the resumed run would write.
    defaults : mapping
        The training settings' defaults (``TrainingSettings().record()``).
    """
    before = dict(stored)
    for key in current:
        if key in before:
            continue
        legacy, now = LEGACY_DEFAULTS.get(key), current[key]
        if isinstance(legacy, dict) and isinstance(now, dict):
            if all(now.get(k) == v for k, v in legacy.items()):
                before[key] = now
        elif key in LEGACY_DEFAULTS:
            before[key] = legacy
        elif key in defaults:
            before[key] = defaults[key]
    keys = list(dict.fromkeys([*current, *before]))
    return [
        f"{k}: {before.get(k)!r} -> {current.get(k)!r}"
        for k in keys
        if k not in RESUMABLE_FIELDS and before.get(k) != current.get(k)
    ]
