"""Prediction from files: ``mssoft predict`` with reading and writing overlapped, and without.

Both variants load the run's model, then for every scan read the NIfTI images, predict every
axial slice, binarise, count lesions and write the probability and segmentation volumes.
``sequential`` does these one after the other (``mssoft predict`` before the overlap);
``overlapped`` is :func:`mssoft.workflows.predict.predict_folder`, which reads the next scan and
writes the previous one in threads while the model works. Timed per dtype policy (float32 and
``--mixed-precision``), variants alternating, on generated ISBI-sized scans written as
``.nii.gz``; seconds per scan = total / scans.

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.settings import BenchSettings

__all__ = ["bench_predict_files"]

logger = logging.getLogger(__name__)


def _sequential(run: Path, data: Path, out: Path, batch: int, mixed: bool) -> None:
    """The loop of ``mssoft predict`` without overlap (reading, model, writing in turn)."""
    from mssoft.arrays.lesions import label_lesions
    from mssoft.arrays.postprocess import Binarisation, bounding_box
    from mssoft.files.layout import prob_path, seg_path
    from mssoft.files.nifti import write_volume
    from mssoft.files.run_folder import read_run
    from mssoft.files.scans import discover_scans
    from mssoft.nn.model_files import load_run_model
    from mssoft.workflows.predict import predict_scan

    info = read_run(run)
    model = load_run_model(run, mixed_precision=mixed)
    binarisation = Binarisation(0.5, 18, 18)
    out.mkdir(parents=True, exist_ok=True)
    for scan in discover_scans(data):
        prob, meta = predict_scan(model, scan, info.modalities, batch_size=batch)
        seg = binarisation.apply(prob)
        write_volume(prob, meta, prob_path(out, scan.scan_id), dtype=np.float32)
        write_volume(seg.astype(np.uint8), meta, seg_path(out, scan.scan_id), dtype=np.uint8)
        box = bounding_box(seg)
        if box is not None:
            label_lesions(seg[box], connectivity=18)


def bench_predict_files(
    model: Any, modalities: tuple[str, ...], settings: BenchSettings, workdir: Path
) -> dict[str, Any]:
    """Seconds per scan of ``mssoft predict`` from and to files, without and with overlap.

    Parameters
    ----------
    model : keras.Model
        A trained (float32) model; saved into a run folder under ``workdir``.
    modalities : tuple of str
        Its channels.
    settings : BenchSettings
        ``predict_file_scans`` scans of ``shape``, ``predict_batch_size``, ``seed``.
    workdir : Path
        Scratch folder.

    Returns
    -------
    dict
        Per dtype policy: ``sequential_seconds_per_scan``, ``overlapped_seconds_per_scan``,
        ``speedup``.
    """
    from mssoft.files.folders import write_config
    from mssoft.files.layout import MODEL_NAME
    from mssoft.nn.inference import model_input_multiple
    from mssoft.synthetic import write_isbi_dataset
    from mssoft.workflows.predict import predict_folder

    data = workdir / "predict_data"
    write_isbi_dataset(
        data,
        n_patients=settings.predict_file_scans,
        timepoints=1,
        shape=settings.shape,
        seed=settings.seed,
        write_truth=False,
        overwrite=True,
    )
    run = workdir / "predict_run"
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / MODEL_NAME)
    write_config(
        run,
        "fit",
        {"modalities": list(modalities), "rater": 1, "input_multiple": model_input_multiple(model)},
    )
    batch = settings.predict_batch_size
    scans = settings.predict_file_scans
    record: dict[str, Any] = {
        "what": "mssoft predict from .nii.gz to .nii.gz (model loading included): reading, model, "
        "writing one after the other vs predict_folder (next scan read and previous written in "
        "threads)",
        "scans": scans,
        "shape": list(settings.shape),
        "batch_size": batch,
    }
    for mixed, policy in ((False, "float32"), (True, "mixed_bfloat16")):
        times: dict[str, float] = {}
        for variant in ("sequential", "overlapped"):
            out = workdir / f"predict_{variant}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            if variant == "sequential":
                _sequential(run, data, out, batch, mixed)
            else:
                predict_folder(
                    run, data, out, batch_size=batch, mixed_precision=mixed, qc=False
                )
            times[variant] = (time.perf_counter() - t0) / scans
        record[policy] = {
            "sequential_seconds_per_scan": times["sequential"],
            "overlapped_seconds_per_scan": times["overlapped"],
            "speedup": times["sequential"] / times["overlapped"],
        }
        logger.info(
            "predict from files %s: %.2f s per scan sequential, %.2f overlapped",
            policy,
            times["sequential"],
            times["overlapped"],
        )
    return record
