"""mssoft: multiple sclerosis lesion segmentation with soft labels (Kats et al., ISBI 2019).

The NumPy-level API is importable from here without loading TensorFlow; the Keras parts live in
``mssoft.nn.unet``, ``mssoft.nn.losses``, ``mssoft.nn.dataset`` and ``mssoft.workflows.fit`` and are imported
explicitly.
"""

from __future__ import annotations

import importlib
from typing import Any

from mssoft._version import __version__

# public name -> module that defines it; loaded on first access so `import mssoft` stays light.
_LAZY = {
    "read_volume": "mssoft.files.nifti",
    "write_volume": "mssoft.files.nifti",
    "discover_scans": "mssoft.files.scans",
    "load_scan": "mssoft.files.scans",
    "soft_mask": "mssoft.arrays.soft_masks",
    "dilation_region": "mssoft.arrays.soft_masks",
    "label_lesions": "mssoft.arrays.lesions",
    "remove_small_lesions": "mssoft.arrays.lesions",
    "zscore_brain": "mssoft.arrays.intensity",
    "MssoftError": "mssoft.errors",
    "DataError": "mssoft.errors",
    "ConfigError": "mssoft.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mssoft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
