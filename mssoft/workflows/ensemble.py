"""Several runs as one predictor, with optional test-time augmentation (``calibrate``/``predict``).

An *ensemble* is a list of run folders of ``mssoft fit`` with the same input channels; its
probability is the mean of the runs' probabilities (:class:`mssoft.nn.inference.AveragedModel`).
``tta="flip"`` averages each slice's probabilities with those of its left-right mirror.

Where the threshold lives:

* one run: ``RUN/calibration.json`` as always (it records the ``tta`` it was chosen with);
* several runs: ``mssoft calibrate RUN1 RUN2 ... DATA --out FOLDER`` writes
  ``FOLDER/calibration.json`` naming the runs and the TTA; ``mssoft predict RUN1 RUN2 ... DATA
  --calibration FOLDER`` uses it. ``predict`` warns when the calibration was made for other runs
  or another TTA than it is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mssoft.arrays.postprocess import Binarisation
from mssoft.errors import ConfigError
from mssoft.files.layout import CALIBRATION_NAME
from mssoft.files.run_folder import RunInfo, read_run, resolve_binarisation
from mssoft.nn.inference import TTA_MODES

__all__ = ["as_runs", "read_ensemble", "load_ensemble", "ensemble_binarisation", "check_tta"]

logger = logging.getLogger(__name__)

RunsLike = str | Path | Sequence[str | Path]


def as_runs(run: RunsLike) -> list[Path]:
    """One run folder or several, as a list of paths (duplicates refused)."""
    runs = [Path(run)] if isinstance(run, (str, Path)) else [Path(r) for r in run]
    if not runs:
        raise ConfigError("Invalid value for `RUN`: expected at least one run folder")
    resolved = [r.resolve() for r in runs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"Invalid value for `RUN`: a run folder is named twice ({runs})")
    return runs


def check_tta(tta: str) -> str:
    """``tta`` if it is one of :data:`mssoft.nn.inference.TTA_MODES`, else a ConfigError."""
    if tta not in TTA_MODES:
        raise ConfigError(
            f"Invalid value for `--tta`. Expected one of {', '.join(TTA_MODES)}. Received: {tta!r}"
        )
    return tta


def read_ensemble(runs: Sequence[Path]) -> list[RunInfo]:
    """Read every run's ``config.json``; the runs must take the same channels in the same order.

    Raises
    ------
    DataError
        A run folder is not a finished ``mssoft fit`` run.
    ConfigError
        The runs' input channels differ.
    """
    infos = [read_run(r) for r in runs]
    for info in infos[1:]:
        if info.modalities != infos[0].modalities:
            raise ConfigError(
                f"Invalid value for `RUN`: {info.path} takes {','.join(info.modalities)} but "
                f"{infos[0].path} takes {','.join(infos[0].modalities)}; an ensemble's runs need "
                "the same input channels"
            )
    return infos


def load_ensemble(runs: Sequence[Path], *, tta: str = "none") -> Any:
    """The runs' models as one predictor (a run's own model when one run without TTA).

    Imports TensorFlow.
    """
    from mssoft.nn.inference import averaged_model
    from mssoft.nn.model_files import load_run_model

    return averaged_model([load_run_model(r) for r in runs], tta=check_tta(tta))


def _setup(folder: Path) -> dict[str, Any] | None:
    """The ``runs`` and ``tta`` a calibration file records (None without the file)."""
    path = folder / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # resolve_binarisation reports the unreadable file
    return record if isinstance(record, dict) else None


def ensemble_binarisation(
    runs: Sequence[Path],
    *,
    calibration: str | Path | None = None,
    threshold: float | None = None,
    min_size: int | None = None,
    tta: str = "none",
) -> tuple[Binarisation, str]:
    """The binarisation of an ensemble: options, then its calibration, then the defaults.

    Parameters
    ----------
    runs : sequence of Path
    calibration : path-like, optional
        Folder holding the ensemble's ``calibration.json`` (default: the run's own folder with one
        run; none with several, so the defaults apply unless ``threshold`` is given).
    threshold, min_size, tta
        As ``mssoft predict``.

    Returns
    -------
    binarisation : Binarisation
    source : str
        As :func:`mssoft.files.run_folder.resolve_binarisation`.
    """
    folder = Path(calibration) if calibration is not None else None
    if folder is not None and folder.is_file():
        folder = folder.parent
    if folder is None and len(runs) == 1:
        folder = runs[0]
    if folder is None:
        base = Binarisation()
        if threshold is None:
            logger.warning(
                "no --calibration for an ensemble of %d runs: using threshold %g and min_size %d "
                "(run `mssoft calibrate RUN... DATA --out FOLDER` first)",
                len(runs),
                base.threshold,
                base.min_size if min_size is None else min_size,
            )
        return (
            Binarisation(
                base.threshold if threshold is None else threshold,
                base.min_size if min_size is None else min_size,
                base.connectivity,
            ),
            "default" if threshold is None else "option",
        )
    setup = _setup(folder)
    if setup is not None and threshold is None:
        wanted = sorted(str(r.resolve()) for r in runs)
        recorded = sorted(str(Path(r).resolve()) for r in setup.get("runs", [setup.get("run")]) if r)
        if recorded and recorded != wanted:
            logger.warning(
                "%s was calibrated for the runs %s, not %s",
                folder / CALIBRATION_NAME,
                ", ".join(recorded),
                ", ".join(wanted),
            )
        if setup.get("tta", "none") != tta:
            logger.warning(
                "%s was calibrated with --tta %s, predicting with --tta %s",
                folder / CALIBRATION_NAME,
                setup.get("tta", "none"),
                tta,
            )
    return resolve_binarisation(folder, threshold=threshold, min_size=min_size)
