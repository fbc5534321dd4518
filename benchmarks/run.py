"""``make bench``: every benchmark, results in ``benchmarks/results.json``.

Usage: ``python benchmarks/run.py [options]`` (e.g. ``--quick``, ``--stages soft_mask,evaluation``;
``--help`` lists them). The table goes to stdout, progress to stderr. See ``benchmarks/README.md``
for what is measured. The harness (``benchmarks/harness``) is not part of the installed package.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("mssoft").setLevel(logging.INFO)
    logging.getLogger("harness").setLevel(logging.INFO)

    from harness.command import bench

    bench(["--out", str(RESULTS), *sys.argv[1:]], prog_name="make bench")
