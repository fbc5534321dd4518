"""Guards for output folders: never write into the input data, never clobber by accident."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mssoft.errors import ConfigError

__all__ = ["prepare_output_folder"]


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
        config = out / "config.json"
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
