"""The cv-cell stage of ``make bench`` alone: one fold's cells of ``mssoft cv``, step by step.

Usage: ``python benchmarks/cv_cell.py [--quick] [--mixed-precision] [--out cv_cell.json]
[--workdir DIR]``.
Runs the cells with the reuse of :func:`mssoft.experiments.cv.run.run_cells` and without it (the
code before it) in one process on the same generated 256 x 256 x 120 scans, prints each step's
seconds and share of the cell, the speed-up and the largest probability difference. See
:mod:`harness.cv_cell`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny scans: a smoke test")
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="train and predict in mixed bfloat16 (as `mssoft cv --mixed-precision`)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures to this JSON")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("harness").setLevel(logging.INFO)

    from dataclasses import replace

    from harness.cv_cell import CELL_FULL, CELL_QUICK, bench_cv_cell, format_cell

    from mssoft.files.atomic import write_json

    settings = CELL_QUICK if args.quick else CELL_FULL
    settings = replace(settings, mixed_precision=args.mixed_precision)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        record = bench_cv_cell(args.workdir, settings)
    else:
        with tempfile.TemporaryDirectory(prefix="mssoft-cv-cell-") as tmp:
            record = bench_cv_cell(Path(tmp), settings)
    if args.out is not None:
        write_json(record, args.out)
    print(format_cell(record))
