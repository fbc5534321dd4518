"""How a run's model sees a scan: the one set-up shared by ``predict`` and ``calibrate``.

:func:`model_input` checks the scans against the run(s) (modalities, grids, voxel size) and
gathers the intensity normalisation, the slices' padding multiple and the voxel size to resample
to; :meth:`ModelInput.predict` then turns a loaded scan into lesion probabilities exactly as
every command does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mssoft.arrays.intensity import Normaliser
from mssoft.errors import DataError
from mssoft.files.geometry import geometry_record, run_geometry, voxel_size_warnings
from mssoft.files.nifti import VolumeMeta
from mssoft.files.normalisation import run_normaliser
from mssoft.files.scans import LoadedScan, Scan, check_scan
from mssoft.nn.inference import predict_volume_resampled

__all__ = ["ModelInput", "model_input", "check_modalities"]


@dataclass(frozen=True)
class ModelInput:
    """What the model needs of every scan of one command.

    Attributes
    ----------
    modalities : tuple of str
        Channels, in the run's order.
    normaliser : Normaliser
        The run's intensity normalisation.
    multiple : int
        Slices are padded to a multiple of this.
    target_mm : tuple of 3 float or None
        Training voxel size to resample to (``--resample``), else None.
    metas : dict of str to VolumeMeta
        Scan id -> the FLAIR header.
    geometry : dict
        ``config.json`` record of the run's geometry and the scans that are off it.
    """

    modalities: tuple[str, ...]
    normaliser: Normaliser
    multiple: int
    target_mm: tuple[float, float, float] | None
    metas: dict[str, VolumeMeta]
    geometry: dict[str, Any]

    def predict(self, model: Any, loaded: LoadedScan, *, batch_size: int = 16) -> np.ndarray:
        """Lesion probabilities of a loaded scan, float32 of shape (X, Y, Z), RAS."""
        return predict_volume_resampled(
            model,
            loaded.image,
            loaded.meta.spacing_mm,
            self.target_mm,
            batch_size=batch_size,
            multiple=self.multiple,
            normaliser=self.normaliser,
        )


def check_modalities(scans: Sequence[Scan], run: Any) -> None:
    """Raise :class:`DataError` naming the first scan that lacks one of the run's modalities.

    ``run`` is the run's :class:`~mssoft.files.run_folder.RunInfo`.
    """
    for scan in scans:
        missing = [m for m in run.modalities if m not in scan.images]
        if missing:
            raise DataError(
                f"scan {scan.scan_id} ({scan.images['flair'].parent}) has no "
                f"{', '.join(missing)} image, "
                f"which the model of {run.path} needs (modalities {','.join(run.modalities)})"
            )


def model_input(
    runs: Sequence[Path],
    infos: Sequence[Any],
    scans: Sequence[Scan],
    *,
    resample: bool = False,
    rater: int | None = None,
) -> ModelInput:
    """Check ``scans`` against the run(s) and set up their model input.

    Parameters
    ----------
    runs : sequence of Path
        Run or export folders (the first one gives modalities, normalisation and geometry).
    infos : sequence of RunInfo
        Their :func:`~mssoft.files.run_folder.read_ensemble` records
        (:class:`~mssoft.files.run_folder.RunInfo`).
    scans : sequence of Scan
    resample : bool, optional
        Resample to the training voxel size (else scans far off it get a warning).
    rater : int, optional
        Also require and check this rater's mask.

    Raises
    ------
    DataError, ConfigError
        A scan without one of the run's modalities, or with files on different grids.
    """
    info = infos[0]
    check_modalities(scans, info)
    normaliser = run_normaliser(runs[0], info.run_record.config, info.modalities)
    metas = {s.scan_id: check_scan(s, modalities=info.modalities, rater=rater) for s in scans}
    geometry = run_geometry(info.run_record)
    off = voxel_size_warnings(metas, geometry, resample=resample, run=runs[0])
    target = geometry.voxel_size_mm if resample and geometry is not None else None
    return ModelInput(
        modalities=tuple(info.modalities),
        normaliser=normaliser,
        multiple=max(i.input_multiple for i in infos),
        target_mm=target,
        metas=metas,
        geometry=geometry_record(geometry, off, resample=resample),
    )
