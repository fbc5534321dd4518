"""Reading an nnU-Net v2 raw dataset as mssoft data.

Layout (as nnU-Net v2's ``nnUNet_raw/DatasetXXX_Name``)::

    dataset.json                          channel_names, labels, file_ending
    imagesTr/<case>_0000.nii.gz ...       one file per channel, channel index in 4 digits
    labelsTr/<case>.nii.gz                label map of the case (read as rater mask 1)
    imagesTs/<case>_0000.nii.gz ...       cases without labels

``channel_names`` maps each channel index to a modality name: FLAIR (also T2-FLAIR), T1 (T1w,
MPRAGE), T2 (T2w) or PD (PDw), case-insensitive; a FLAIR channel is required. The scan id and the
patient id are the case id. The lesion is every voxel whose label is above 0 (``labels``'
background is 0); ``label`` picks one entry of ``labels`` instead. A label map may hold only the
values ``labels`` lists. Only NIfTI files (``file_ending`` ``.nii.gz`` or ``.nii``) are read.

A bare folder of ``<case>_XXXX.nii.gz`` files without ``dataset.json`` (an ``imagesTs/`` handed
over on its own) is read by :func:`discover_nnunet_images`, its channels mapped by the modalities
of the run that predicts it (channel 0 = the run's first modality, ...).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from mssoft.errors import DataError
from mssoft.files.scan_files import LabelMap, ScanFiles, ScanLayout

__all__ = [
    "LAYOUT",
    "DATASET_JSON",
    "NNUNET_MODALITIES",
    "is_nnunet_dataset",
    "discover_nnunet",
    "is_nnunet_images_folder",
    "discover_nnunet_images",
]

logger = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
#: Canonical modality -> the names ``channel_names`` may use for it (case-insensitive).
NNUNET_MODALITIES = {
    "flair": ("FLAIR", "T2-FLAIR", "T2FLAIR"),
    "t1": ("T1", "T1w", "MPRAGE"),
    "t2": ("T2", "T2w"),
    "pd": ("PD", "PDw"),
}
_NAMES = {n.lower(): m for m, names in NNUNET_MODALITIES.items() for n in names}
_ENDINGS = (".nii.gz", ".nii")


def is_nnunet_dataset(root: Path) -> bool:
    """Whether ``root`` holds a ``dataset.json`` next to ``imagesTr/`` or ``imagesTs/``."""
    return (root / DATASET_JSON).is_file() and any(
        (root / sub).is_dir() for sub in ("imagesTr", "imagesTs")
    )


def _read_dataset_json(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected a JSON object")
    return record


def _channels(record: dict[str, Any], path: Path) -> dict[int, str]:
    """Channel index -> canonical modality, FLAIR required, no modality twice."""
    names = record.get("channel_names", record.get("modality"))
    if not isinstance(names, dict) or not names:
        raise DataError(f"{path}: no `channel_names` (channel index -> modality name)")
    channels: dict[int, str] = {}
    for key, name in names.items():
        if not str(key).strip().isdigit() or not isinstance(name, str):
            raise DataError(f"{path}: `channel_names` entry {key!r}: {name!r} is not index: name")
        modality = _NAMES.get(name.strip().lower())
        if modality is None:
            known = "; ".join("/".join(v) for v in NNUNET_MODALITIES.values())
            raise DataError(
                f"{path}: channel {key} name {name!r} is not a modality mssoft knows ({known}; "
                "case-insensitive)"
            )
        if modality in channels.values():
            raise DataError(f"{path}: two channels are {modality.upper()} (`channel_names`)")
        channels[int(key)] = modality
    if "flair" not in channels.values():
        raise DataError(f"{path}: no FLAIR channel in `channel_names` ({names})")
    return dict(sorted(channels.items()))


def _label_values(value: Any) -> tuple[int, ...] | None:
    """An entry of ``labels``: one int or (region-based) a list of ints."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return None
    return tuple(int(v) for v in items)


def _label_map(record: dict[str, Any], path: Path, label: str | int | None) -> LabelMap | None:
    """The coding of ``labelsTr``: lesion = every label > 0, or the one ``label`` picks.

    None (no ``labels`` entry): the label files must be binary.
    """
    labels = record.get("labels")
    if labels is None:
        if label is not None:
            raise DataError(f"{path}: no `labels` to pick label {label!r} from")
        return None
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: `labels` must map label names to values")
    parsed = {}
    for name, value in labels.items():
        values = _label_values(value)
        if values is None or min(values) < 0:
            raise DataError(f"{path}: label {name!r} has value {value!r} (expected integers >= 0)")
        parsed[str(name)] = values
    known = tuple(sorted({0, *(v for values in parsed.values() for v in values)}))
    if label is None:
        foreground = tuple(v for v in known if v > 0)
    else:
        by_value = {str(v): n for n, vs in parsed.items() if len(vs) == 1 for v in vs}
        name = str(label) if str(label) in parsed else by_value.get(str(label))
        if name is None:
            listed = ", ".join(f"{n}={v}" for n, v in labels.items())
            raise DataError(f"{path}: no label {label!r} in `labels` ({listed})")
        foreground = tuple(v for v in parsed[name] if v > 0)
    if not foreground:
        raise DataError(f"{path}: `labels` has no lesion label (no value above 0)")
    return LabelMap(foreground=foreground, known=known, source=str(path))


def _ending(record: dict[str, Any], path: Path) -> str:
    ending = record.get("file_ending", ".nii.gz")
    if ending not in _ENDINGS:
        raise DataError(
            f"{path}: file_ending {ending!r}: mssoft reads NIfTI only (.nii.gz or .nii); "
            "convert the images first"
        )
    return str(ending)


def _cases(folder: Path, ending: str, channels: dict[int, str]) -> dict[str, dict[str, Path]]:
    """Case id -> {modality: image} of one images folder; every channel must be present."""
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(ending)}$")
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.glob(f"*{ending}")):
        match = pattern.match(path.name)
        if not match:
            raise DataError(f"{path}: not named <case>_<4-digit channel>{ending}")
        channel = int(match["channel"])
        if channel not in channels:
            raise DataError(
                f"{path}: channel {channel} is not in dataset.json `channel_names` "
                f"({', '.join(str(c) for c in channels)})"
            )
        found.setdefault(match["case"], {})[channel] = path
    cases = {}
    for case, files in found.items():
        missing = [c for c in channels if c not in files]
        if missing:
            raise DataError(
                f"{folder}: case {case} has no {ending} file for channel(s) "
                f"{', '.join(f'{c:04d} ({channels[c].upper()})' for c in missing)}"
            )
        by_modality = {channels[c]: files[c] for c in channels}
        cases[case] = {"flair": by_modality.pop("flair"), **by_modality}
    return cases


def discover_nnunet(root: Path, *, label: str | int | None = None) -> list[ScanFiles]:
    """The scans of an nnU-Net v2 raw dataset (training cases first, then test cases).

    Parameters
    ----------
    root : Path
        The dataset folder (holding ``dataset.json``).
    label : str or int, optional
        Name or value of the one entry of ``labels`` that is the lesion (default: every label
        above 0).

    Returns
    -------
    list of ScanFiles
        Scan id and patient id = case id; ``labelsTr/<case>`` is rater mask 1, coded by
        ``label_map``.

    Raises
    ------
    DataError
        A bad ``dataset.json`` (the message names it and the entry), a case missing a channel, a
        label file without images, or a case id in both ``imagesTr`` and ``imagesTs``.
    """
    path = root / DATASET_JSON
    record = _read_dataset_json(path)
    channels = _channels(record, path)
    label_map = _label_map(record, path, label)
    ending = _ending(record, path)
    train = _cases(root / "imagesTr", ending, channels) if (root / "imagesTr").is_dir() else {}
    test = _cases(root / "imagesTs", ending, channels) if (root / "imagesTs").is_dir() else {}
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(f"{root}: case(s) {', '.join(both)} in both imagesTr and imagesTs")
    labels = {}
    if (root / "labelsTr").is_dir():
        for mask in sorted((root / "labelsTr").glob(f"*{ending}")):
            case = mask.name[: -len(ending)]
            if case not in train:
                raise DataError(
                    f"{mask}: label file without images (no imagesTr/{case}_0000{ending})"
                )
            labels[case] = mask
    unlabelled = [c for c in train if c not in labels]
    if unlabelled:
        logger.warning(
            "%s: %d imagesTr case(s) have no labelsTr file: %s",
            root,
            len(unlabelled),
            ", ".join(unlabelled[:8]),
        )
    scans = [
        ScanFiles(case, case, images, {1: labels[case]} if case in labels else {}, label_map)
        for case, images in sorted(train.items())
    ]
    scans += [ScanFiles(case, case, images, {}, label_map) for case, images in sorted(test.items())]
    return scans


_CHANNEL_FILE = re.compile(r"^.+_\d{4}\.nii(?:\.gz)?$")


def is_nnunet_images_folder(folder: Path) -> bool:
    """Whether ``folder`` directly holds ``<case>_XXXX.nii[.gz]`` files (and no ``dataset.json``)."""
    return (
        folder.is_dir()
        and not (folder / DATASET_JSON).is_file()
        and any(_CHANNEL_FILE.match(p.name) for p in folder.glob("*.nii*"))
    )


def discover_nnunet_images(folder: Path, modalities: tuple[str, ...] | list[str]) -> list[ScanFiles]:
    """The cases of a bare nnU-Net images folder, channel ``i`` being ``modalities[i]``.

    Parameters
    ----------
    folder : Path
        Holds ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ... (``.nii`` also read).
    modalities : sequence of str
        The run's modalities, in its channel order (FLAIR among them).

    Raises
    ------
    DataError
        A file not named ``<case>_XXXX.nii[.gz]``, a channel the run does not have, or a case
        missing one of the run's channels.
    """
    channels = dict(enumerate(modalities))
    endings = {".nii.gz" if p.name.endswith(".nii.gz") else ".nii" for p in folder.glob("*.nii*")}
    if len(endings) != 1:
        raise DataError(f"{folder}: mixes .nii and .nii.gz files; use one of them")
    cases = _cases(folder, endings.pop(), channels)
    return [ScanFiles(case, case, images) for case, images in sorted(cases.items())]


#: The nnU-Net v2 raw layout in the registry :data:`mssoft.files.scans.LAYOUTS`.
LAYOUT = ScanLayout(
    name="nnunet",
    description="nnU-Net dataset (dataset.json with imagesTr/ or imagesTs/)",
    detect=is_nnunet_dataset,
    discover=discover_nnunet,
)
