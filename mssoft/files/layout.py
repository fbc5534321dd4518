"""Every file and folder name that mssoft writes or reads in its output folders, in one place.

No other module spells an output file name: commands, experiments and the Keras callbacks take
their names (and the per-scan path helpers) from here, so a folder's layout is documented once.

Output folders
--------------
``mssoft build-masks``
    ``config.json``, ``<scan>_softmask.nii.gz``
``mssoft fit`` (a *run folder*)
    ``config.json``, ``split.json``, ``model.keras``, ``history.csv``, ``backup/``, ``logs/``;
    ``intensity_landmarks.json`` with ``--normalise histogram``; ``mssoft calibrate`` adds
    ``calibration.json``
``mssoft export`` (an *export folder*)
    ``config.json``, ``mssoft.json`` (everything a user of the model needs, written last),
    ``1/`` (the TensorFlow SavedModel, in TensorFlow Serving's version-folder layout),
    ``model.keras`` (the run's Keras model, which ``mssoft predict`` loads), and
    ``calibration.json`` when the run was calibrated; ``mssoft.json`` ``inputs`` says what an
    input scan must be (skull-stripped, co-registered, voxel size and tolerance, resampling)
``mssoft predict``
    ``config.json``, ``<scan>_prob.nii.gz``, ``<scan>_seg.nii.gz`` (other namings:
    :mod:`mssoft.files.prediction_names`), ``lesions.csv``, ``scans.csv`` (``.tsv`` in a BIDS
    derivative dataset, with ``dataset_description.json`` and ``.bidsignore``), ``qc/<scan>_qc.png``
    and ``qc.md`` (unless ``--no-qc``)
``mssoft evaluate``
    ``config.json``, ``metrics.csv``, ``summary.json``, ``reliability.png`` (when the predict
    folder holds the probability maps)
``mssoft cv``
    ``config.json``, ``cells/.../result.json``, ``cv_scans.csv``, ``cv_results.csv``, ``table.md``,
    ``sweep.png``
``mssoft demo``
    ``config.json``, ``report.md``, ``comparison.csv``, ``data.png``, ``predictions.png``,
    ``training.png``, ``calibration.png``

Every folder
    ``config.json`` is written before a command's first output file, with ``"status":
    "incomplete"`` until the command has written everything (``"complete"``); the command writing
    a folder holds its ``.mssoft.lock`` locked (``mssoft fit`` while it trains). Atomic writes go through hidden
    ``.<name>.<random>.partial<suffix>`` files that exist only while a file is being written
    (:data:`mssoft.files.atomic.PARTIAL_MARK`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CONFIG_NAME",
    "LOCK_NAME",
    "MODEL_NAME",
    "HISTORY_NAME",
    "SPLIT_NAME",
    "BACKUP_DIR",
    "LOGS_DIR",
    "KERAS_BACKUP_MARKERS",
    "CALIBRATION_NAME",
    "EXPORT_INFO_NAME",
    "SAVED_MODEL_DIR",
    "SAVED_MODEL_FILE",
    "LANDMARKS_NAME",
    "SOFTMASK_SUFFIX",
    "PROB_SUFFIX",
    "SEG_SUFFIX",
    "LESIONS_NAME",
    "SCANS_NAME",
    "QC_DIR",
    "QC_INDEX_NAME",
    "qc_path",
    "BIDS_DESCRIPTION_NAME",
    "BIDS_IGNORE_NAME",
    "METRICS_NAME",
    "SUMMARY_NAME",
    "RELIABILITY_NAME",
    "TRUTH_SUFFIX",
    "truth_path",
    "CV_CELLS_DIR",
    "CV_MASKS_DIR",
    "CELL_RUN_DIR",
    "CELL_PRED_DIR",
    "CELL_EVAL_DIR",
    "CELL_RESULT_NAME",
    "CV_SCANS_NAME",
    "CV_RESULTS_NAME",
    "CV_TABLE_NAME",
    "CV_FIGURE_NAME",
    "CV_COMPARISON_NAME",
    "CV_BASELINE_NAME",
    "cv_fold_baseline_path",
    "DEMO_BASELINE_NAME",
    "DEMO_DATA_DIR",
    "DEMO_MASKS_DIR",
    "DEMO_RUNS_DIR",
    "DEMO_PRED_DIR",
    "DEMO_EVAL_DIR",
    "DEMO_FIGURES_DIR",
    "DEMO_ENTRIES",
    "DEMO_REPORT_NAME",
    "DEMO_TABLE_NAME",
    "DEMO_FIGURE_NAMES",
    "SYNTHETIC_NAME",
    "TRUTH_DIR",
    "soft_mask_path",
    "prob_path",
    "seg_path",
    "SLICE_CACHE_DIR",
    "slice_cache_paths",
]

#: Every output folder: the command, its resolved configuration and package versions.
CONFIG_NAME = "config.json"
#: Locked (``fcntl.flock``) by the one command that may write the folder at a time.
LOCK_NAME = ".mssoft.lock"

# --- run folder (mssoft fit) -------------------------------------------------------------------
MODEL_NAME = "model.keras"
HISTORY_NAME = "history.csv"
SPLIT_NAME = "split.json"
BACKUP_DIR = "backup"
LOGS_DIR = "logs"
#: On-disk slice cache of a run (``--slice-cache disk``): per scan, images, targets and a key.
SLICE_CACHE_DIR = "slice_cache"
#: Files Keras's BackupAndRestore writes into ``backup/`` once an epoch's state is saved.
KERAS_BACKUP_MARKERS = ("training_metadata.json", "training_metadata.json.bkp")
#: Written into the run folder by mssoft calibrate.
CALIBRATION_NAME = "calibration.json"
#: Histogram-standardisation landmarks learned on the training scans (``--normalise histogram``).
LANDMARKS_NAME = "intensity_landmarks.json"

# --- export folder (mssoft export) -------------------------------------------------------------
#: The description of an exported model; its presence marks a folder as a finished export.
EXPORT_INFO_NAME = "mssoft.json"
#: The SavedModel: version 1 of the model, so TensorFlow Serving can serve the folder itself.
SAVED_MODEL_DIR = "1"
#: The graph file TensorFlow writes into a SavedModel folder (its presence marks a finished one).
SAVED_MODEL_FILE = "saved_model.pb"

# --- per-scan volumes --------------------------------------------------------------------------
SOFTMASK_SUFFIX = "_softmask.nii.gz"
PROB_SUFFIX = "_prob.nii.gz"
SEG_SUFFIX = "_seg.nii.gz"

# --- mssoft predict ---------------------------------------------------------------------------
#: One row per lesion and one row per scan (``.csv``; ``.tsv`` in a BIDS derivative dataset).
LESIONS_NAME = "lesions"
SCANS_NAME = "scans"
#: Folder of the per-scan QC pictures, and the cohort index beside it.
QC_DIR = "qc"
QC_INDEX_NAME = "qc.md"
BIDS_DESCRIPTION_NAME = "dataset_description.json"
BIDS_IGNORE_NAME = ".bidsignore"

# --- mssoft evaluate ---------------------------------------------------------------------------
METRICS_NAME = "metrics.csv"
SUMMARY_NAME = "summary.json"
#: Reliability diagram of the probability maps (pooled calibration bins).
RELIABILITY_NAME = "reliability.png"

# --- mssoft cv ---------------------------------------------------------------------------------
#: ``cells/<held-out patient>/<grid point>/repeat<k>/``: one folder per cell.
CV_CELLS_DIR = "cells"
#: ``masks/<grid point>/``: the soft masks of a grid point (a build-masks folder).
CV_MASKS_DIR = "masks"
#: A cell's fit run, predictions and evaluation, inside its folder.
CELL_RUN_DIR, CELL_PRED_DIR, CELL_EVAL_DIR = "run", "pred", "eval"
CELL_RESULT_NAME = "result.json"
CV_SCANS_NAME = "cv_scans.csv"
CV_RESULTS_NAME = "cv_results.csv"
CV_TABLE_NAME = "table.md"
CV_FIGURE_NAME = "sweep.png"
CV_COMPARISON_NAME = "comparison.csv"
#: Per fold (``cells/<held-out patient>/``): the FLAIR-threshold baseline of that fold (its
#: threshold, held-out scores and per-slice overlap counts on the training scans).
CV_BASELINE_NAME = "flair_baseline.json"

# --- mssoft demo -------------------------------------------------------------------------------
#: The demo's step folders: generated data, soft masks, fit runs, predictions, evaluations,
#: figures (the runs, predictions and evaluations hold one folder per model).
DEMO_DATA_DIR, DEMO_MASKS_DIR, DEMO_RUNS_DIR = "data", "softmasks", "runs"
DEMO_PRED_DIR, DEMO_EVAL_DIR, DEMO_FIGURES_DIR = "predictions", "evaluation", "figures"
DEMO_REPORT_NAME = "report.md"
DEMO_TABLE_NAME = "comparison.csv"
#: The demo's FLAIR-threshold baseline: threshold, validation Dice per model, held-out scores.
DEMO_BASELINE_NAME = "flair_baseline.json"
#: Everything a demo writes in its folder (``--overwrite`` removes these and nothing else).
DEMO_ENTRIES = (
    DEMO_DATA_DIR,
    DEMO_MASKS_DIR,
    DEMO_RUNS_DIR,
    DEMO_PRED_DIR,
    DEMO_EVAL_DIR,
    DEMO_FIGURES_DIR,
    DEMO_REPORT_NAME,
    DEMO_TABLE_NAME,
    DEMO_BASELINE_NAME,
)
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
TRUTH_DIR = "truth"
TRUTH_SUFFIX = "_truth.nii.gz"


def soft_mask_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/<scan_id>_softmask.nii.gz``."""
    return Path(folder) / f"{scan_id}{SOFTMASK_SUFFIX}"


def cv_fold_baseline_path(out: str | Path, held_out: str) -> Path:
    """``out/cells/<held_out>/flair_baseline.json``: a cv fold's FLAIR-threshold baseline."""
    return Path(out) / "cells" / held_out / CV_BASELINE_NAME


def prob_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/<scan_id>_prob.nii.gz``."""
    return Path(folder) / f"{scan_id}{PROB_SUFFIX}"


def seg_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/<scan_id>_seg.nii.gz``."""
    return Path(folder) / f"{scan_id}{SEG_SUFFIX}"


def qc_path(folder: str | Path, scan_id: str) -> Path:
    """``folder/qc/<scan_id>_qc.png``."""
    return Path(folder) / QC_DIR / f"{scan_id}_qc.png"


def slice_cache_paths(folder: str | Path, scan_id: str) -> tuple[Path, Path, Path]:
    """``folder/<scan_id>_images.npy``, ``folder/<scan_id>_targets.npy``, ``folder/<scan_id>.json``.

    The slice cache of one scan: its kept image slices, their targets, and the record that says
    what they were made from (written last: a scan without it is not cached).
    """
    folder = Path(folder)
    return (
        folder / f"{scan_id}_images.npy",
        folder / f"{scan_id}_targets.npy",
        folder / f"{scan_id}.json",
    )


def truth_path(flair_file: str | Path, scan_id: str) -> Path:
    """``<patient>/truth/<scan_id>_truth.nii.gz`` next to the folder of the scan's FLAIR file.

    Generated data (:mod:`mssoft.synthetic`) keep the true lesion fraction there; real data sets
    have no such file.
    """
    return Path(flair_file).parent.parent / TRUTH_DIR / f"{scan_id}{TRUTH_SUFFIX}"
