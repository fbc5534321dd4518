"""Output folders: their guards and the ``config.json`` that makes each one self-describing.

Guards: never write into the input data, never clobber by accident. Every output folder records
the command that wrote it, its resolved configuration and the package versions.

Life of an output folder (:func:`open_output_folder`):

1. its place checked (:func:`check_output_location`), then created and locked
   (:func:`folder_lock`), then its content checked (:func:`prepare_output_folder`);
2. with ``overwrite``, the earlier run's outputs are removed: the files its ``config.json`` lists
   and mssoft's temporary files, never a file mssoft did not write;
3. ``config.json`` is written with ``"status": "incomplete"`` before the first output file, so a
   folder a command left half-done is still recognised as that command's and can be overwritten;
   commands that read it (``fit --masks``, ``evaluate``) refuse it with one line;
4. the command writes its files, then ``config.json`` again with ``"status": "complete"``
   (refused by :func:`write_config` while a listed output file is missing);
5. if the command fails before writing any output file, the folder is left as it was found (a
   folder the command created is removed again).

Every command locks its output folder while it writes it (:func:`folder_lock`; ``fit`` for its
whole training), so a second command on the same folder fails at once, and its ``--overwrite``
never removes what the first one writes. Where the output folder may go is checked before
anything is created (:func:`check_output_location`). A command only reads the folders it reads:
:func:`check_not_in_use` tests another process's lock without creating a lock file.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import platform
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from mssoft.errors import ConfigError, DataError
from mssoft.files.atomic import PARTIAL_MARK, write_json
from mssoft.files.layout import (
    BIDS_DESCRIPTION_NAME,
    BIDS_IGNORE_NAME,
    CONFIG_NAME,
    LESIONS_NAME,
    QC_INDEX_NAME,
    SCANS_NAME,
    LOCK_NAME,
    METRICS_NAME,
    SUMMARY_NAME,
    soft_mask_path,
)

__all__ = [
    "STATUS_INCOMPLETE",
    "STATUS_COMPLETE",
    "check_output_location",
    "prepare_output_folder",
    "open_output_folder",
    "locked_output_folder",
    "remove_earlier_outputs",
    "remove_partial_files",
    "folder_lock",
    "check_not_in_use",
    "FolderInUseError",
    "clear_folder",
    "package_versions",
    "write_config",
    "read_config",
    "is_complete",
    "soft_mask_files",
]


logger = logging.getLogger(__name__)

#: ``config.json`` ``status`` while a command is writing its outputs, and once it has written all.
STATUS_INCOMPLETE = "incomplete"
STATUS_COMPLETE = "complete"

#: Outputs with fixed names, per command (per-scan outputs are listed in ``config.json``).
_FIXED_OUTPUTS = {
    "evaluate": (METRICS_NAME, SUMMARY_NAME),
    "predict": tuple(
        f"{name}{suffix}" for name in (LESIONS_NAME, SCANS_NAME) for suffix in (".csv", ".tsv", ".json")
    )
    + (QC_INDEX_NAME, BIDS_DESCRIPTION_NAME, BIDS_IGNORE_NAME),
}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _bids_derivative(out: Path, root: Path) -> bool:
    """Whether ``out`` is a folder under ``root/derivatives/`` of a BIDS dataset ``root``.

    The one place inside the input data an output may go: BIDS keeps derivative datasets there.
    """
    from mssoft.files.bids_layout import is_bids_dataset

    derivatives = root / "derivatives"
    return derivatives in out.parents and is_bids_dataset(root)


def _entries(folder: Path) -> list[Path]:
    """What a folder holds, apart from the lock file (which marks no output)."""
    return [p for p in folder.iterdir() if p.name != LOCK_NAME]


def _make_folder(out: Path, option: str) -> list[Path]:
    """Create ``out`` (and its parents); return the folders created, deepest first."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != out else ""
        raise ConfigError(
            f"Invalid value for `{option}`: cannot create {out}: {reason}{where}"
        ) from None
    return created


def _remove_created(folder: Path, created: Iterable[Path]) -> None:
    """Remove the folders this command created, deepest first, as long as they are empty."""
    for path in created:
        try:
            path.rmdir()
        except OSError:
            return


def check_output_location(
    out: str | Path,
    *,
    data: str | Path | None = None,
    input_files: Iterable[Path] = (),
    option: str = "--out",
) -> Path:
    """Check where an output folder may go, before anything is created.

    Parameters
    ----------
    out : path-like
        The output folder (it need not exist).
    data : path-like, optional
        The input data: a data folder (``out`` may not be inside it) or a manifest (``out`` may
        not be the manifest's own folder).
    input_files : iterable of Path
        Input files; ``out`` may not be a folder that directly holds one of them.
    option : str
        Name of the option, for error messages.

    Returns
    -------
    Path
        ``out``, resolved.

    Raises
    ------
    ConfigError
        ``out`` is a file, lies in the input data or holds an input file.
    """
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"Invalid value for `{option}`: {out} is a file, expected a folder")
    if data is not None:
        data_path = Path(data).expanduser().resolve()
        root = data_path.parent if data_path.is_file() else data_path
        if (data_path.is_dir() and _inside(out, root) and not _bids_derivative(out, root)) or (
            data_path.is_file() and out == root
        ):
            raise ConfigError(
                f"Invalid value for `{option}`: {out} is inside the input data {data_path}; "
                "choose a folder outside it"
            )
    for path in input_files:
        if Path(path).resolve().parent == out:
            raise ConfigError(f"Invalid value for `{option}`: {out} holds input file {path}")
    return out


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
        The input data: a data root (``out`` may not be inside it, except below
        ``derivatives/`` of a BIDS dataset) or a manifest (``out`` may not be the manifest's own
        folder).
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
    out = check_output_location(out, data=data, input_files=input_files, option=option)
    if out.is_dir() and _entries(out):
        config = out / CONFIG_NAME
        if not config.is_file():
            raise ConfigError(
                f"Invalid value for `{option}`: {out} is not empty and is not an mssoft "
                "output folder; choose a new or empty folder"
            )
        try:
            record = json.loads(config.read_text())
            owner, status = record.get("command"), record.get("status")
        except (OSError, json.JSONDecodeError, AttributeError):
            owner = status = None
        if owner != command:
            raise ConfigError(
                f"Invalid value for `{option}`: {out} holds the output of `mssoft {owner}`, "
                f"not `mssoft {command}`"
            )
        if not overwrite and status == STATUS_INCOMPLETE:
            raise ConfigError(
                f"Invalid value for `{option}`: {out} holds an incomplete `mssoft {command}` "
                "output (it stopped part-way); pass --overwrite to replace it"
            )
        if not overwrite:
            raise ConfigError(
                f"Invalid value for `{option}`: {out} already holds `mssoft {command}` "
                "outputs; pass --overwrite to replace them"
            )
    _make_folder(out, option)
    return out


def _listed_outputs(record: dict[str, Any], *, fixed: bool = True) -> list[str]:
    """File names an earlier run's ``config.json`` lists as its outputs.

    With ``fixed``, also the fixed-name files the command may write (:data:`_FIXED_OUTPUTS`:
    candidates for removal, not all of them written by every run).
    """
    names: list[str] = list(_FIXED_OUTPUTS.get(str(record.get("command")), ())) if fixed else []
    outputs = record.get("outputs")  # commands whose outputs are not per scan (export)
    if isinstance(outputs, list):
        names += [v for v in outputs if isinstance(v, str)]
    scans = record.get("scans")
    if isinstance(scans, dict):
        for value in scans.values():
            values = value.values() if isinstance(value, dict) else [value]
            names += [v for v in values if isinstance(v, str)]
    return names


def _plain_relative(name: str) -> bool:
    """A relative path below the folder: no ``..``, ``.`` or empty part, not absolute."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and all(
        p not in ("", ".", "..") for p in parts
    )


def remove_earlier_outputs(folder: str | Path, command: str) -> list[Path]:
    """Remove an earlier ``command`` run's outputs from ``folder`` (for ``--overwrite``).

    Removed: the files the earlier ``config.json`` lists (per-scan volumes, fixed-name tables),
    mssoft's temporary ``.*.partial*`` files, and ``config.json`` itself. Only paths below
    ``folder`` without ``..`` are touched (e.g. ``qc/<scan>_qc.png``), a link is removed rather
    than followed, and any other file (one mssoft did not write) stays.

    Returns
    -------
    list of Path
        The removed files.
    """
    folder = Path(folder)
    config = folder / CONFIG_NAME
    try:
        record = json.loads(config.read_text())
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or record.get("command") != command:
        record = {"command": command}
    names = _listed_outputs(record)
    partial = [p.name for p in folder.glob(f".*{PARTIAL_MARK}*")]
    names += partial
    removed = []
    for name in dict.fromkeys(names):
        path = folder / name
        if not _plain_relative(name):
            continue
        if path.is_dir() and not path.is_symlink():
            if name in partial:  # a folder mssoft was writing (e.g. a SavedModel) when stopped
                shutil.rmtree(path)
                removed.append(path)
            continue
        if not _inside(path.parent.resolve(), folder.resolve()):
            continue  # a linked subfolder: never followed out of the output folder
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(path)
    if removed:
        logger.info("removed %d outputs of the earlier `mssoft %s` run", len(removed), command)
    if config.exists() or config.is_symlink():
        config.unlink()
    return removed


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed process left in ``folder``.

    Call only while no other process writes ``folder`` (e.g. under :func:`folder_lock`).
    """
    removed = [p for p in Path(folder).glob(f".*{PARTIAL_MARK}*") if p.is_file() or p.is_symlink()]
    for path in removed:
        path.unlink()
    if removed:
        logger.info(
            "removed %d half-written files of an interrupted run in %s", len(removed), folder
        )
    return removed


def _discard_if_unused(folder: Path) -> None:
    """After a failure: remove an incomplete ``config.json`` that is all a folder holds.

    :func:`folder_lock` then removes the folder itself if this command created it.
    """
    try:
        entries = _entries(folder)
        if [p.name for p in entries] != [CONFIG_NAME]:
            return
        record = json.loads((folder / CONFIG_NAME).read_text())
        if isinstance(record, dict) and record.get("status") == STATUS_INCOMPLETE:
            (folder / CONFIG_NAME).unlink()
    except (OSError, ValueError):
        pass  # best effort: the original error matters more


@contextmanager
def open_output_folder(
    out: str | Path,
    *,
    command: str,
    data: str | Path | None = None,
    input_files: Iterable[Path] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> Iterator[Path]:
    """Check, create, lock and mark a command's output folder for the duration of the block.

    Where the folder may go is checked before anything is created
    (:func:`check_output_location`); then the folder is created and locked (:func:`folder_lock`:
    a second command on it fails at once), and, under the lock, its content is checked as by
    :func:`prepare_output_folder`. With ``overwrite``, the earlier run's outputs are removed
    (:func:`remove_earlier_outputs`) and ``config.json`` is written with ``"status":
    "incomplete"`` before the block writes anything. If the block raises before it has written
    an output file, the folder is left as it was found (removed if this call created it).

    Yields
    ------
    Path
        The resolved output folder.

    Raises
    ------
    ConfigError
        As :func:`prepare_output_folder`; :class:`FolderInUseError` when another process holds
        the folder's lock.
    """
    resolved = check_output_location(out, data=data, input_files=input_files, option=option)
    with folder_lock(resolved, command=command, option=option) as folder:
        prepare_output_folder(
            folder,
            command=command,
            data=data,
            input_files=input_files,
            overwrite=overwrite,
            option=option,
        )
        try:
            if overwrite:
                remove_earlier_outputs(folder, command)
            write_config(folder, command, {}, status=STATUS_INCOMPLETE)
            yield folder
        except BaseException:
            _discard_if_unused(folder)
            raise


@contextmanager
def locked_output_folder(
    out: str | Path,
    *,
    command: str,
    data: str | Path | None = None,
    input_files: Iterable[Path] = (),
    option: str = "--out",
) -> Iterator[Path]:
    """Check where ``out`` may go, then create and lock it for the block (no ``config.json``).

    For a command that writes one file into a folder it does not own (``calibrate --out``) or
    that manages its folder's content itself (``demo``). If the block raises and leaves the folder
    empty, the folder is removed again when this call created it.

    Raises
    ------
    ConfigError
        As :func:`check_output_location` and :func:`folder_lock`.
    """
    resolved = check_output_location(out, data=data, input_files=input_files, option=option)
    with folder_lock(resolved, command=command, option=option) as folder:
        yield folder


def check_not_in_use(folder: str | Path, *, command: str, option: str = "--out") -> None:
    """Refuse a folder another process holds the lock of (e.g. a run that is still training).

    Only reads: no lock file is created in ``folder`` (which may be read-only), and a folder
    without one is not in use.

    Raises
    ------
    FolderInUseError
        As :func:`folder_lock`.
    """
    path = Path(folder).expanduser().resolve() / LOCK_NAME
    try:
        handle = open(path)  # noqa: SIM115 (closed in the finally below)
    except OSError:
        return  # no lock file (or one nobody could have locked through this path)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise _in_use(path.parent, handle, option) from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _in_use(folder: Path, handle: Any, option: str) -> FolderInUseError:
    """The error for a folder whose lock file ``handle`` another process holds locked."""
    handle.seek(0)
    pid, _, holder = handle.read().strip().partition(" ")
    return FolderInUseError(
        f"Invalid value for `{option}`: {folder} is in use by another process "
        f"(`{holder or 'mssoft'}`, process {pid or 'unknown'}); wait for it to finish or "
        "choose another folder"
    )


class FolderInUseError(ConfigError):
    """Another process holds the folder's lock (:func:`folder_lock`)."""


def clear_folder(folder: str | Path) -> None:
    """Remove everything in ``folder`` but its lock file (links are removed, never followed).

    For a folder that only mssoft writes and whose lock this process holds, such as a cross-
    validation cell left by an interrupted run.
    """
    for path in _entries(Path(folder)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def folder_lock(
    folder: str | Path, *, command: str, option: str = "--out", wait: bool = False
) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) for the block.

    With ``wait``, wait for another process to release the lock instead of failing.

    The lock is ``fcntl.flock`` on ``folder/.mssoft.lock``: the operating system releases it when
    the process ends, even by ``kill -9``. If the block raises, a lock file this call created is
    removed, and so is the folder, when this call created it and the block left it empty.

    Raises
    ------
    FolderInUseError
        Another process holds the lock (the message names the folder and that process).
    """
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"Invalid value for `{option}`: {folder} is a file, expected a folder")
    created = _make_folder(folder, option)
    path = folder / LOCK_NAME
    new_lock = not path.exists()
    handle = open(path, "a+")  # noqa: SIM115 (closed in the finally below)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise _in_use(folder, handle, option) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} mssoft {command}\n")
        handle.flush()
        try:
            yield folder
        except BaseException:
            if new_lock or not _entries(folder):  # leave a refused folder as it was found
                path.unlink(missing_ok=True)
            if not _entries(folder):
                _remove_created(folder, created)
            raise
    finally:
        handle.close()


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

    Raises
    ------
    DataError
        ``status`` is ``"complete"`` but an output file the record lists is missing.
    """
    if extra.get("status") == STATUS_COMPLETE:
        _check_outputs_exist(Path(folder), {"command": command, **extra})
    record = {
        "command": command,
        "config": config,
        **extra,
        "versions": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
    }
    return write_json(record, Path(folder) / CONFIG_NAME)


def _check_outputs_exist(folder: Path, record: dict[str, Any]) -> None:
    """Refuse to mark ``folder`` complete while an output its record lists is missing."""
    missing = [n for n in _listed_outputs(record, fixed=False) if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{folder}: {len(missing)} listed output file(s) missing ({', '.join(missing[:3])}); "
            "the folder stays marked incomplete"
        )


def read_config(folder: str | Path, *, command: str | None = None) -> dict[str, Any]:
    """Read ``folder/config.json``; with ``command``, require that this command wrote it.

    Raises
    ------
    DataError
        The file is missing, not JSON, written by another command, or (with ``command``) marks
        the folder as incomplete: that command stopped before it had written everything.
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise DataError(f"{path}: not found (is {folder} an mssoft output folder?)")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or an integer too long
        raise DataError(f"{path}: cannot read ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: cannot read (nested too deeply)") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: not an mssoft record (expected a JSON object)")
    if command is not None and record.get("command") != command:
        raise DataError(
            f"{path}: written by `mssoft {record.get('command')}`, expected `mssoft {command}`"
        )
    if command is not None and record.get("status") == STATUS_INCOMPLETE:
        raise DataError(
            f"{folder}: incomplete `mssoft {command}` output (the command stopped before it had "
            f"written every file); run `mssoft {command}` again with --overwrite"
        )
    return record


def is_complete(folder: str | Path, *, command: str) -> bool:
    """Whether ``folder`` holds a finished ``command`` output (``config.json`` not incomplete)."""
    try:
        read_config(folder, command=command)
    except DataError:
        return False
    return True


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
