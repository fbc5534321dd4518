"""mssoft: multiple sclerosis lesion segmentation with soft labels (Kats et al., ISBI 2019).

Everything a script needs is importable from here, lazily: ``import mssoft`` loads neither
TensorFlow nor Keras; the first use of a Keras name (``mssoft.build_unet``, ``mssoft.SoftDiceLoss``,
``mssoft.make_dataset`` ...) does. The package is layered (see docs/explanation/architecture.md):
``mssoft.arrays`` (NumPy), ``mssoft.files`` (input/output), ``mssoft.nn`` (Keras),
``mssoft.workflows`` (one per command) and ``mssoft.experiments`` (cv, demo).
"""

from __future__ import annotations

import importlib
from typing import Any

from mssoft._version import __version__

# public name -> module that defines it; loaded on first access so `import mssoft` stays light.
_LAZY = {
    # arrays (NumPy/SciPy)
    "soft_mask": "mssoft.arrays.soft_masks",
    "dilation_region": "mssoft.arrays.soft_masks",
    "label_lesions": "mssoft.arrays.lesions",
    "remove_small_lesions": "mssoft.arrays.lesions",
    "postprocess": "mssoft.arrays.postprocess",
    "scan_metrics": "mssoft.arrays.metrics",
    "zscore_brain": "mssoft.arrays.intensity",
    "Normaliser": "mssoft.arrays.intensity",
    "SliceSet": "mssoft.arrays.slices",
    "split_slices": "mssoft.arrays.slices",
    "pad_slices": "mssoft.arrays.slices",
    # files
    "read_volume": "mssoft.files.nifti",
    "write_volume": "mssoft.files.nifti",
    "discover_scans": "mssoft.files.scans",
    "load_scan": "mssoft.files.scans",
    "resolve_modalities": "mssoft.files.scans",
    # Keras
    "build_unet": "mssoft.nn.unet",
    "input_multiple": "mssoft.nn.unet",
    "SoftDiceLoss": "mssoft.nn.losses",
    "BinarisedDice": "mssoft.nn.losses",
    "make_dataset": "mssoft.nn.dataset",
    "load_run_model": "mssoft.nn.model_files",
    "predict_volume": "mssoft.nn.inference",
    "run_normaliser": "mssoft.files.normalisation",
    # workflows
    "MaskConfig": "mssoft.workflows.settings",
    "TrainingSettings": "mssoft.workflows.settings",
    "TrainConfig": "mssoft.workflows.settings",
    "resolve_mask_source": "mssoft.workflows.training_data",
    "training_scans": "mssoft.workflows.training_data",
    "load_slices": "mssoft.workflows.training_data",
    "fit": "mssoft.workflows.fit",
    "run_pipeline": "mssoft.workflows.pipeline",
    # errors
    "MssoftError": "mssoft.errors",
    "DataError": "mssoft.errors",
    "ConfigError": "mssoft.errors",
    # beyond the paper: several raters, graded rings, calibration, TTA and ensembles
    "multi_rater_soft_mask": "mssoft.arrays.soft_masks",
    "ring_values": "mssoft.arrays.soft_masks",
    "bin_stats": "mssoft.arrays.calibration_metrics",
    "expected_calibration_error": "mssoft.arrays.calibration_metrics",
    "brier_score": "mssoft.arrays.calibration_metrics",
    "AveragedModel": "mssoft.nn.inference",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mssoft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
