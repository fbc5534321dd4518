"""Between volumes and the axial slices the 2D U-Net sees. Axis 2 of a RAS array is axial.

Also the in-memory set of training slices (:class:`SliceSet`) and its seeded train/validation
split (:func:`split_slices`). Pure NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mssoft.errors import ConfigError

__all__ = [
    "to_axial_slices",
    "from_axial_slices",
    "lesion_slice_indices",
    "SliceSet",
    "Split",
    "split_slices",
    "pad_slices",
    "zero_padding",
]


def to_axial_slices(volume: np.ndarray) -> np.ndarray:
    """Axial slices of a RAS volume.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z) or (X, Y, Z, C)

    Returns
    -------
    ndarray of shape (Z, X, Y, C)
        Slice ``k`` is ``volume[:, :, k]``; a 3D input gets one channel. A view where possible.
    """
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise ValueError(f"`volume` must be 3D or 4D, got shape {volume.shape}")
    return np.moveaxis(volume, 2, 0)


def from_axial_slices(slices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_axial_slices` for one channel.

    Parameters
    ----------
    slices : ndarray of shape (Z, X, Y) or (Z, X, Y, 1)

    Returns
    -------
    ndarray of shape (X, Y, Z)
    """
    if slices.ndim == 4:
        if slices.shape[-1] != 1:
            raise ValueError(f"expected one channel, got shape {slices.shape}")
        slices = slices[..., 0]
    return np.ascontiguousarray(np.moveaxis(slices, 0, 2))


def lesion_slice_indices(mask: np.ndarray) -> np.ndarray:
    """Indices of the axial slices holding at least one lesion voxel.

    Parameters
    ----------
    mask : ndarray of shape (X, Y, Z)
        Binary (or soft) mask; a slice counts when any voxel is non-zero.

    Returns
    -------
    ndarray of int64, shape (K,)
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"`mask` must be 3D, got shape {mask.shape}")
    return np.flatnonzero(np.any(mask != 0, axis=(0, 1)))


@dataclass
class SliceSet:
    """The kept slices of several scans, one array per scan.

    The arrays are in memory, or array-likes that read one slice per index from disk
    (:class:`mssoft.files.slice_cache.NpySlices`: ``shape``, ``nbytes`` and ``a[k]``, which is all
    this class uses).

    Attributes
    ----------
    images : list of ndarray of float32 (or array-like), shape (K_s, X, Y, C)
    targets : list of ndarray of float32 (or array-like), shape (K_s, X, Y, 1)
    slice_indices : list of ndarray of int64, shape (K_s,)
        Axial index ``z`` of each kept slice in its scan.
    scan_ids, patient_ids : list of str
        One per scan.
    n_slices : list of int
        Axial slices of each scan before the lesion-free ones were dropped.
    modalities : tuple of str
        Channel names, in order.
    source : object
        Where the targets came from (for a run's record, e.g.
        :class:`mssoft.workflows.training_data.MaskSource`); not used here.
    """

    images: list[np.ndarray]
    targets: list[np.ndarray]
    slice_indices: list[np.ndarray]
    scan_ids: list[str]
    patient_ids: list[str]
    n_slices: list[int]
    modalities: tuple[str, ...]
    source: Any
    _rows: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rows = np.array(
            [(s, k) for s, kept in enumerate(self.slice_indices) for k in range(len(kept))],
            dtype=np.int64,
        ).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> np.ndarray:
        """``(N, 2)`` int64: slice ``i`` is ``images[rows[i, 0]][rows[i, 1]]``."""
        return self._rows

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(X, Y)`` of every slice."""
        height, width = self.images[0].shape[1:3]
        return int(height), int(width)

    @property
    def nbytes(self) -> int:
        """Bytes of the slices (in memory, or on disk for a slice cache)."""
        return sum(a.nbytes for a in self.images) + sum(a.nbytes for a in self.targets)

    def views(self, index: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The slices ``index`` (positions into :attr:`rows`), one array each, not stacked.

        Returns
        -------
        images : list of ndarray of float32, shape (X, Y, C)
            Views of the stored arrays (copies read from disk for the on-disk cache).
        targets : list of ndarray of float32, shape (X, Y, 1)
        """
        rows = self._rows[np.asarray(index, dtype=np.int64).reshape(-1)]
        return [self.images[s][k] for s, k in rows], [self.targets[s][k] for s, k in rows]

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stack the slices ``index`` (positions into :attr:`rows`).

        Returns
        -------
        images : ndarray of float32, shape (n, X, Y, C)
        targets : ndarray of float32, shape (n, X, Y, 1)
        """
        images, targets = self.views(index)
        return np.stack(images), np.stack(targets)


@dataclass(frozen=True)
class Split:
    """Positions (into :attr:`SliceSet.rows`) of the training and validation slices, sorted."""

    train: np.ndarray
    val: np.ndarray
    by: str

    def record(self, slices: SliceSet) -> dict[str, Any]:
        """JSON-ready description: scans, patients and axial indices of each part.

        Returns
        -------
        dict
            ``train_scans``, ``val_scans`` (scan ids with at least one slice in the part, in scan
            order), ``train_patients``, ``val_patients``, ``train_slices``, ``val_slices`` (counts)
            and ``slices``: ``{scan_id: {"train": [z, ...], "val": [z, ...]}}``.
        """
        parts: dict[str, dict[str, list[int]]] = {
            sid: {"train": [], "val": []} for sid in slices.scan_ids
        }
        for name, positions in (("train", self.train), ("val", self.val)):
            for s, k in slices.rows[positions]:
                parts[slices.scan_ids[s]][name].append(int(slices.slice_indices[s][k]))
        out: dict[str, Any] = {}
        for name in ("train", "val"):
            scan_pos = [i for i, sid in enumerate(slices.scan_ids) if parts[sid][name]]
            out[f"{name}_scans"] = [slices.scan_ids[i] for i in scan_pos]
            out[f"{name}_patients"] = list(dict.fromkeys(slices.patient_ids[i] for i in scan_pos))
            out[f"{name}_slices"] = int(len(getattr(self, name)))
        out["slices"] = parts
        return out


def split_slices(
    slices: SliceSet, *, val_fraction: float = 0.2, by: str = "slices", seed: int = 0
) -> Split:
    """Split the kept slices into training and validation parts.

    Parameters
    ----------
    slices : SliceSet
    val_fraction : float
        In [0, 1). ``by="slices"``: ``round(val_fraction * N)`` slices drawn at random (at least
        1 when ``val_fraction > 0`` and N >= 2). ``by="patients"``: ``round(val_fraction * P)``
        of the P patients (at least 1, at most P - 1) with all their slices.
    by : {"slices", "patients"}
        ``slices`` follows the paper (slices of one scan land on both sides); ``patients`` keeps
        every scan of a patient on one side.
    seed : int
        Seed of the draw.

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        Bad ``val_fraction`` or ``by``, or ``by="patients"`` with a single patient.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(
            f"Invalid value for `--val-fraction`. Expected a float in [0, 1). "
            f"Received: {val_fraction}"
        )
    rng = np.random.default_rng(seed)
    n = len(slices)
    if by == "slices":
        n_val = 0 if val_fraction == 0 or n < 2 else min(max(1, round(val_fraction * n)), n - 1)
        order = rng.permutation(n)
        val, train = order[:n_val], order[n_val:]
    elif by == "patients":
        patients = list(dict.fromkeys(slices.patient_ids))
        if val_fraction == 0:
            val_patients: set[str] = set()
        elif len(patients) < 2:
            raise ConfigError(
                f"Invalid value for `--split`: 'patients' needs at least 2 patients, "
                f"found {len(patients)} ({patients[0]}); use --split slices"
            )
        else:
            n_val = min(max(1, round(val_fraction * len(patients))), len(patients) - 1)
            val_patients = {patients[i] for i in rng.permutation(len(patients))[:n_val]}
        in_val = np.array(
            [slices.patient_ids[s] in val_patients for s in slices.rows[:, 0]], dtype=bool
        )
        val, train = np.flatnonzero(in_val), np.flatnonzero(~in_val)
    else:
        raise ConfigError(
            f"Invalid value for `--split`. Expected 'slices' or 'patients'. Received: {by!r}"
        )
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64), by)


def pad_slices(slices: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad a stack of slices at the end of both spatial axes to multiples of ``multiple``.

    The U-Net (:func:`mssoft.nn.unet.build_unet`) takes slices whose sides are multiples of
    ``2 ** depth``; zero is the background of z-scored images and of masks. Crop the model's
    output back with ``output[:, :X, :Y]``.

    Parameters
    ----------
    slices : ndarray of shape (N, X, Y, C)
    multiple : int
        >= 1; 1 returns ``slices`` itself.

    Returns
    -------
    ndarray of shape (N, X', Y', C)
        ``X'`` and ``Y'`` the smallest multiples of ``multiple`` >= ``X`` and ``Y``; the input
        itself (no copy) when it needs no padding.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"`multiple` must be an integer >= 1, got {multiple!r}")
    if slices.ndim != 4:
        raise ValueError(f"`slices` must have shape (N, X, Y, C), got {slices.shape}")
    pad_x, pad_y = (-slices.shape[1]) % multiple, (-slices.shape[2]) % multiple
    if not (pad_x or pad_y):
        return slices
    return np.pad(slices, [(0, 0), (0, pad_x), (0, pad_y), (0, 0)])


def zero_padding(out: np.ndarray, height: int, width: int) -> None:
    """Set ``out`` to 0 outside ``out[:, :height, :width]`` (padding at the end of both axes).

    Parameters
    ----------
    out : ndarray of shape (N, X', Y', C)
        A batch of padded slices, written in place; ``X' >= height`` and ``Y' >= width``.
    height, width : int
        Size of the slices it holds.
    """
    out[:, height:] = 0.0
    out[:, :, width:] = 0.0
