"""What every output folder records about how it was made: configuration and package versions."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mssoft.errors import DataError
from mssoft.io import write_json

__all__ = ["CONFIG_NAME", "package_versions", "write_config", "read_config"]

CONFIG_NAME = "config.json"
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
