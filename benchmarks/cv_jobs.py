"""``mssoft cv --jobs``: wall time of one small sweep with 1 job, 2 jobs of 1 thread each
(``cores // jobs`` on 2 cores), and 2 jobs as ``mssoft cv`` runs them (``job_threads``).

Usage: ``python benchmarks/cv_jobs.py [--shape 64,64,48] [--epochs 2] [--out cv_jobs.json]``.
The three runs are made one after the other in fresh folders on the same generated data
(2 patients x 2 time points, ratios 1.0 and 1.2: 4 cells). On a shared machine compare the
ratios of one run of this script, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,64,48")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import mssoft.experiments.cv.run as cv_run
    from mssoft.experiments.cv.run import CVConfig, run_cv
    from mssoft.synthetic import write_isbi_dataset
    from mssoft.workflows.settings import TrainingSettings

    shape = tuple(int(v) for v in args.shape.split(","))
    default = cv_run.job_threads

    def one_share(jobs: int, gpus: int, cores: int | None = None) -> int:
        return max(1, (cores or len(os.sched_getaffinity(0))) // jobs)

    record: dict[str, object] = {"shape": shape, "epochs": args.epochs, "cells": 4}
    with tempfile.TemporaryDirectory(prefix="mssoft-cv-jobs-") as tmp:
        data = Path(tmp) / "data"
        write_isbi_dataset(data, n_patients=2, timepoints=2, shape=shape, seed=0)
        for name, jobs, threads in (
            ("jobs1", 1, default),
            ("jobs2_cores_shared_out", 2, one_share),
            ("jobs2_default", 2, default),
        ):
            cv_run.job_threads = threads
            config = CVConfig(
                data=data,
                out=Path(tmp) / name,
                ratios=(1.0, 1.2),
                gammas=(0.3,),
                jobs=jobs,
                training=TrainingSettings(
                    modalities=("flair",), epochs=args.epochs, base_filters=args.base_filters
                ),
            )
            t0 = time.perf_counter()
            result = run_cv(config)
            record[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
            assert result.complete
            print(f"{name}: {record[f'{name}_seconds']} s", flush=True)
    cv_run.job_threads = default
    for name in ("jobs2_cores_shared_out", "jobs2_default"):
        record[f"{name}_speedup"] = record["jobs1_seconds"] / record[f"{name}_seconds"]
    print(json.dumps(record, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=1))
