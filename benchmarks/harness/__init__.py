"""Speed and memory of every stage of mssoft, against a plain baseline and the machine's limit.

``make bench`` (``benchmarks/run.py``) runs these stages in one process on the same generated scans
(:mod:`mssoft.synthetic`: ISBI-sized 181 x 217 x 181 grids, 10-20 mL of lesions in tens of
lesions, most of them periventricular), except the memory stage, whose ``mssoft fit`` runs are
subprocesses:

==========  ======================================================================================
machine     stated fp32 peak (cores x clock x FLOP/cycle, from ``/proc/cpuinfo``) and measured
            limits (a compiled FMA loop on every core, a NumPy sgemm): :mod:`.machine`
soft_mask   :func:`mssoft.arrays.soft_masks.soft_mask` against iterative ``binary_dilation``:
            :mod:`.soft_masks`
evaluation  post-processing plus every metric against every rater: :mod:`.evaluation`
pipeline    ``tf.data`` slices/s of :func:`mssoft.nn.dataset.make_dataset`, rotation on:
            :mod:`.network`
training    U-Net ``train_on_batch`` slices/s, float32 and mixed bfloat16, FLOPs per slice from the
            layer shapes, fraction of the peak: :mod:`.network`
prediction  :func:`mssoft.workflows.predict.predict_volume` seconds per scan: :mod:`.network`
xla         training step and prediction batch without and with XLA: :mod:`.xla`
teardown    seconds to drop a training-pipeline iterator beside a CPU load, fixed settings
            against autotuned: :mod:`.teardown`
memory      peak resident memory of ``mssoft fit`` for N1 and N2 scans, after the first, the
            middle and the last epoch: :mod:`.memory`
cv_cell     one fold of ``mssoft cv`` step by step, this code against the code before its
            speed-ups: :mod:`.cv_cell`
==========  ======================================================================================

:func:`run_benchmarks` runs them (:mod:`.run`) and adds the ratios and the issue's targets;
:func:`format_report` prints the result. Timings are medians after a warm-up; file I/O is left
out of every stage but the memory one. TensorFlow is imported only by the stages that use it,
after the NumPy stages.

Examples
--------
>>> from harness import QUICK, run_benchmarks, format_report  # doctest: +SKIP
>>> print(format_report(run_benchmarks(QUICK)))  # doctest: +SKIP
"""

from __future__ import annotations

from harness.report import format_report
from harness.run import ratios, run_benchmarks, targets
from harness.settings import FULL, QUICK, STAGES, BenchSettings

__all__ = [
    "BenchSettings",
    "FULL",
    "QUICK",
    "STAGES",
    "format_report",
    "ratios",
    "run_benchmarks",
    "targets",
]
