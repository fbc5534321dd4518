"""On-disk slice cache: the kept training slices of each scan as ``.npy`` files, read per slice.

``mssoft fit --slice-cache disk`` writes, per scan, the z-scored image slices ``(K, X, Y, C)`` and
the target slices ``(K, X, Y, 1)`` (float32) into the run's ``slice_cache/`` folder
(:func:`mssoft.files.layout.slice_cache_paths`), then a JSON record of what they were made from
(the scan's files with their sizes and modification times, the channels and the target source).
The record is written last, so a scan whose record is missing or differs is simply rebuilt; a
resumed run (``--resume``, same folder) reads the cache instead of the NIfTI files. A cached file
that is shorter than its header says (a damaged or truncated cache) is rebuilt too, with a
warning.

The training pipeline then reads the slices of each batch from the files with ``os.pread``
(:class:`NpySlices`): no array of the training set is held in memory, and since the slices are
read rather than memory-mapped, they are never counted in the process's resident memory (the
kernel's page cache may keep them, and gives them back under memory pressure).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.files.atomic import atomic_path, write_json
from mssoft.files.layout import slice_cache_paths

__all__ = ["NpySlices", "scan_cache_key", "write_cached_slices", "read_cached_slices"]

_FORMAT = 1

logger = logging.getLogger(__name__)


class NpySlices:
    """Read-only view of a ``(K, X, Y, C)`` float32 ``.npy`` file, one slice at a time.

    Behaves like the array for what :class:`mssoft.arrays.slices.SliceSet` needs: ``shape``,
    ``dtype``, ``len``, ``nbytes`` (bytes on disk) and ``view[k]`` (one slice, read from the file,
    zero-padded at the end of each axis to ``pad_to`` if given). Every read opens the file, so
    the object can be shared by the threads of a ``tf.data`` pipeline and pickled.

    Parameters
    ----------
    path : path-like
        A C-ordered float32 ``.npy`` file of 4 dimensions.
    pad_to : (int, int), optional
        ``(X, Y)`` to pad each slice to (slices of other scans may be larger).
    """

    def __init__(self, path: str | Path, pad_to: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        with self.path.open("rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            self._offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
        if fortran or len(shape) != 4 or dtype != np.float32:
            raise ValueError(f"{self.path}: expected a C-ordered 4D float32 array")
        self._stored = tuple(int(n) for n in shape)
        expected = self._offset + int(np.prod(self._stored)) * 4
        if size < expected:
            raise ValueError(f"{self.path}: truncated ({size} of {expected} bytes)")
        self._pad_to = tuple(pad_to) if pad_to is not None else self._stored[1:3]
        if any(p < s for p, s in zip(self._pad_to, self._stored[1:3], strict=True)):
            raise ValueError(f"{self.path}: cannot pad {self._stored[1:3]} to {self._pad_to}")
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(K, X, Y, C)`` as read (after padding)."""
        return (self._stored[0], *self._pad_to, self._stored[3])

    @property
    def nbytes(self) -> int:
        """Bytes of the slices in the file."""
        return int(np.prod(self._stored)) * 4

    def __len__(self) -> int:
        return self._stored[0]

    def padded(self, shape: tuple[int, int]) -> NpySlices:
        """The same file, read padded to ``shape``."""
        return NpySlices(self.path, pad_to=shape)

    def __getitem__(self, k: Any) -> np.ndarray:
        k = int(k)
        if not -len(self) <= k < len(self):
            raise IndexError(f"slice {k} out of range for {len(self)} slices of {self.path}")
        k %= len(self)
        _, height, width, channels = self._stored
        size = height * width * channels * 4
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, size, self._offset + k * size)
        finally:
            os.close(fd)
        if len(data) != size:
            raise OSError(
                f"{self.path}: file is truncated (a damaged slice cache); delete the folder "
                f"{self.path.parent} (mssoft fit --resume rebuilds it) or resume with "
                "--slice-cache memory"
            )
        out = np.frombuffer(data, dtype=np.float32).reshape(height, width, channels)
        if self._pad_to != (height, width):
            pad = [(0, self._pad_to[0] - height), (0, self._pad_to[1] - width), (0, 0)]
            out = np.pad(out, pad)
        return out


def scan_cache_key(files: Sequence[Path], **settings: Any) -> dict[str, Any]:
    """What a scan's cached slices are made from: its files (size, mtime) and ``settings``.

    Parameters
    ----------
    files : sequence of Path
        The scan's input files (images, masks, soft mask).
    **settings
        JSON-ready values that change the slices (channels, target source, ...).
    """
    stamps = []
    for path in files:
        stat = Path(path).stat()
        stamps.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return {"format": _FORMAT, "files": stamps, **settings}


def write_cached_slices(
    folder: str | Path,
    scan_id: str,
    images: np.ndarray,
    targets: np.ndarray,
    kept: np.ndarray,
    n_slices: int,
    key: dict[str, Any],
) -> None:
    """Write one scan's slices (atomically), then its record.

    Parameters
    ----------
    images : ndarray of float32, shape (K, X, Y, C)
    targets : ndarray of float32, shape (K, X, Y, 1)
    kept : ndarray of int, shape (K,)
        Axial index of each slice in the scan.
    n_slices : int
        Axial slices of the scan before filtering.
    key : dict
        :func:`scan_cache_key` of the scan.
    """
    image_path, target_path, record_path = slice_cache_paths(folder, scan_id)
    record_path.unlink(missing_ok=True)  # stale until the arrays are complete
    for array, path in ((images, image_path), (targets, target_path)):
        with atomic_path(path) as tmp:
            np.save(tmp, np.ascontiguousarray(array, dtype=np.float32))
    write_json({"key": key, "kept": [int(z) for z in kept], "n_slices": int(n_slices)}, record_path)


def read_cached_slices(
    folder: str | Path, scan_id: str, key: dict[str, Any]
) -> tuple[NpySlices, NpySlices, np.ndarray, int] | None:
    """One scan's cached slices if the cache holds them for ``key``, else None.

    Returns
    -------
    images : NpySlices, shape (K, X, Y, C)
    targets : NpySlices, shape (K, X, Y, 1)
    kept : ndarray of int64, shape (K,)
    n_slices : int
    """
    image_path, target_path, record_path = slice_cache_paths(folder, scan_id)
    try:
        record = json.loads(record_path.read_text())
        if record.get("key") != json.loads(json.dumps(key)):
            return None  # not cached, or cached from other files or settings
    except (OSError, ValueError, AttributeError):
        return None
    try:
        images, targets = NpySlices(image_path), NpySlices(target_path)
        kept = np.asarray(record["kept"], dtype=np.int64)
        if len(images) != len(kept) or len(targets) != len(kept):
            raise ValueError(f"{record_path}: {len(kept)} slices listed, {len(images)} stored")
        return images, targets, kept, int(record["n_slices"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("damaged slice cache of %s (%s): rebuilding it", scan_id, exc)
        return None
