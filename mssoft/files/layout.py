"""Every file and folder name that mssoft writes or reads in its output folders, in one place.

No other module spells an output file name: commands, experiments and the Keras callbacks take
their names (and the per-scan path helpers) from here, so a folder's layout is documented once.

Output folders
--------------
``mssoft build-masks``
    ``config.json``, ``<scan>_softmask.nii.gz``
``mssoft fit`` (a *run folder*)
    ``config.json``, ``split.json``, ``model.keras``, ``history.csv``, ``backup/``, ``logs/``;
    ``mssoft calibrate`` adds ``calibration.json``
``mssoft predict``
    ``config.json``, ``<scan>_prob.nii.gz``, ``<scan>_seg.nii.gz``
``mssoft evaluate``
    ``config.json``, ``metrics.csv``, ``summary.json``, ``reliability.png`` (when the predict
    folder holds the probability maps)
``mssoft cv``
    ``config.json``, ``cells/.../result.json``, ``cv_scans.csv``, ``cv_results.csv``, ``table.md``,
    ``sweep.png``
``mssoft demo``
    ``config.json``, ``report.md``, ``comparison.csv``, ``data.png``, ``predictions.png``,
    ``training.png``, ``calibration.png``
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CONFIG_NAME",
    "MODEL_NAME",
    "HISTORY_NAME",
    "SPLIT_NAME",
    "BACKUP_DIR",
    "LOGS_DIR",
    "KERAS_BACKUP_MARKERS",
    "CALIBRATION_NAME",
    "SOFTMASK_SUFFIX",
    "PROB_SUFFIX",
    "SEG_SUFFIX",
    "METRICS_NAME",
    "SUMMARY_NAME",
    "RELIABILITY_NAME",
    "TRUTH_SUFFIX",
    "truth_path",
    "CELL_RESULT_NAME",
    "CV_SCANS_NAME",
    "CV_RESULTS_NAME",
    "CV_TABLE_NAME",
    "CV_FIGURE_NAME",
    "DEMO_REPORT_NAME",
    "DEMO_TABLE_NAME",
    "DEMO_FIGURE_NAMES",
    "SYNTHETIC_NAME",
    "soft_mask_path",
    "prob_path",
    "seg_path",
]

#: Every output folder: the command, its resolved configuration and package versions.
CONFIG_NAME = "config.json"

# --- run folder (mssoft fit) -------------------------------------------------------------------
MODEL_NAME = "model.keras"
HISTORY_NAME = "history.csv"
SPLIT_NAME = "split.json"
BACKUP_DIR = "backup"
LOGS_DIR = "logs"
#: Files Keras's BackupAndRestore writes into ``backup/`` once an epoch's state is saved.
KERAS_BACKUP_MARKERS = ("training_metadata.json", "training_metadata.json.bkp")
#: Written into the run folder by mssoft calibrate.
CALIBRATION_NAME = "calibration.json"

# --- per-scan volumes --------------------------------------------------------------------------
SOFTMASK_SUFFIX = "_softmask.nii.gz"
PROB_SUFFIX = "_prob.nii.gz"
SEG_SUFFIX = "_seg.nii.gz"

# --- mssoft evaluate ---------------------------------------------------------------------------
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"
#: Reliability diagram of the probability maps (pooled calibration bins).
RELIABILITY_NAME = "reliability.png"

# --- mssoft cv ---------------------------------------------------------------------------------
CELL_RESULT_NAME = "result.json"
CV_SCANS_NAME = "cv_scans.csv"
CV_RESULTS_NAME = "cv_results.csv"
CV_TABLE_NAME = "table.md"
CV_FIGURE_NAME = "sweep.png"

# --- mssoft demo -------------------------------------------------------------------------------
DEMO_REPORT_NAME = "report.md"
DEMO_TABLE_NAME = "comparison.csv"
#: figure key -> file name
DEMO_FIGURE_NAMES = {
    "data": "data.png",
    "predictions": "predictions.png",
    "training": "training.png",
    "calibration": "calibration.png",
}

# --- generated data (mssoft.synthetic) ---------------------------------------------------------
SYNTHETIC_NAME = "synthetic.json"
#: The true lesion fraction of a generated scan (float32), in ``<patient>/truth/``.
TRUTH_SUFFIX = "_truth.nii.gz"


def soft_mask_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/<scan_id>_softmask.nii.gz``."""
    return Path(folder) / f"{scan_id}{SOFTMASK_SUFFIX}"


def prob_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/<scan_id>_prob.nii.gz``."""
    return Path(folder) / f"{scan_id}{PROB_SUFFIX}"


def seg_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/<scan_id>_seg.nii.gz``."""
    return Path(folder) / f"{scan_id}{SEG_SUFFIX}"


def truth_path(flair_file: str | Path, scan_id: str) -> Path:
    """``<patient>/truth/<scan_id>_truth.nii.gz`` next to the folder of the scan's FLAIR file.

    Generated data (:mod:`mssoft.synthetic`) keep the true lesion fraction there; real data sets
    have no such file.
    """
    return Path(flair_file).parent.parent / "truth" / f"{scan_id}{TRUTH_SUFFIX}"
