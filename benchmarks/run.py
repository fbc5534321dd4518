"""``make bench``: every benchmark of ``mssoft bench``, results in ``benchmarks/results.json``.

Usage: ``python benchmarks/run.py [mssoft bench options]`` (e.g. ``--quick``, ``--stages
soft_mask,evaluation``). The table goes to stdout, progress to stderr. About 5 minutes on
2 idle cores; see ``benchmarks/README.md`` for what is measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mssoft.cli.main import cli

RESULTS = Path(__file__).resolve().with_name("results.json")

if __name__ == "__main__":
    cli(["bench", "--out", str(RESULTS), *sys.argv[1:]], prog_name="mssoft")
