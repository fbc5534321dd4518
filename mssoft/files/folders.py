"""Output folders: their guards and the ``config.json`` that makes each one self-describing.

Guards: never write into the input data, never clobber by accident. Every output folder records
the command that wrote it, its resolved configuration and the package versions.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import write_json
from mssoft.files.layout import CONFIG_NAME, soft_mask_path

__all__ = [
    "prepare_output_folder",
    "package_versions",
    "write_config",
    "read_config",
    "soft_mask_files",
]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def prepare_output_folder(
    out: str | Path,
    *,
    command: str,
    data: str | Path | None = None,
    input_files: Iterable[Path] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> Path:
    """Check and create a command's output folder.

    Parameters
    ----------
    out : path-like
        The output folder.
    command : str
        The command writing it (recorded in its ``config.json``).
    data : path-like, optional
        The input data: an ISBI data root (``out`` may not be inside it) or a manifest (``out``
        may not be the manifest's own folder).
    input_files : iterable of Path
        Input files; ``out`` may not be a folder that directly holds one of them.
    overwrite : bool
        Allow writing into a folder that already holds this command's outputs.
    option : str
        Name of the option, for error messages.

    Returns
    -------
    Path
        The resolved output folder, created if needed.

    Raises
    ------
    ConfigError
        ``out`` is a file, lies in the input data, belongs to another command or to no command
        (a non-empty folder without ``config.json``), or holds earlier outputs and ``overwrite``
        is false.
    """
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"Invalid value for `{option}`: {out} is a file, expected a folder")
    if data is not None:
        data_path = Path(data).expanduser().resolve()
        root = data_path.parent if data_path.is_file() else data_path
        if (data_path.is_dir() and _inside(out, root)) or (data_path.is_file() and out == root):
            raise ConfigError(
                f"Invalid value for `{option}`: {out} is inside the input data {data_path}; "
                "choose a folder outside it"
            )
    for path in input_files:
        if Path(path).resolve().parent == out:
            raise ConfigError(f"Invalid value for `{option}`: {out} holds input file {path}")
    if out.is_dir() and any(out.iterdir()):
        config = out / CONFIG_NAME
        if not config.is_file():
            raise ConfigError(
                f"Invalid value for `{option}`: {out} is not empty and is not an mssoft "
                "output folder; choose a new or empty folder"
            )
        try:
            owner = json.loads(config.read_text()).get("command")
        except (OSError, json.JSONDecodeError, AttributeError):
            owner = None
        if owner != command:
            raise ConfigError(
                f"Invalid value for `{option}`: {out} holds the output of `mssoft {owner}`, "
                f"not `mssoft {command}`"
            )
        if not overwrite:
            raise ConfigError(
                f"Invalid value for `{option}`: {out} already holds `mssoft {command}` "
                "outputs; pass --overwrite to replace them"
            )
    out.mkdir(parents=True, exist_ok=True)
    return out


_PACKAGES = ("mssoft", "numpy", "scipy", "nibabel", "scikit-image", "click", "tensorflow", "keras")


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of mssoft's main dependencies (None where not installed).

    Read from package metadata: nothing is imported, so this never loads TensorFlow.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_config(folder: str | Path, command: str, config: dict[str, Any], **extra: Any) -> Path:
    """Write ``folder/config.json``: the command, its resolved configuration and the versions.

    Parameters
    ----------
    folder : path-like
        Output folder of the command.
    command : str
        Command name (``build-masks``, ``fit``, ...).
    config : dict
        Resolved options, JSON-serialisable (paths become strings).
    **extra
        Further top-level entries (e.g. ``scans``).

    Returns
    -------
    Path
        The written file.
    """
    record = {
        "command": command,
        "config": config,
        **extra,
        "versions": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }
    return write_json(record, Path(folder) / CONFIG_NAME)


def read_config(folder: str | Path, *, command: str | None = None) -> dict[str, Any]:
    """Read ``folder/config.json``; with ``command``, require that this command wrote it.

    Raises
    ------
    DataError
        The file is missing, not JSON, or written by another command.
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise DataError(f"{path}: not found (is {folder} an mssoft output folder?)")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if command is not None and record.get("command") != command:
        raise DataError(
            f"{path}: written by `mssoft {record.get('command')}`, expected `mssoft {command}`"
        )
    return record


def soft_mask_files(folder: str | Path, scan_ids: Iterable[str]) -> dict[str, Path]:
    """The soft-mask file of each scan in a ``build-masks`` output folder; all must exist.

    Parameters
    ----------
    folder : path-like
        Output folder of ``mssoft build-masks``.
    scan_ids : iterable of str
        Scans that need a soft mask.

    Returns
    -------
    dict of str to Path
        Scan id to soft-mask file.

    Raises
    ------
    DataError
        The folder is not a build-masks output, or lacks a scan's soft mask.
    """
    read_config(folder, command="build-masks")
    paths = {}
    for scan_id in scan_ids:
        path = soft_mask_path(folder, scan_id)
        if not path.is_file():
            raise DataError(f"{path}: soft mask of scan {scan_id} not found in {folder}")
        paths[scan_id] = path
    return paths
