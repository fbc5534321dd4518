"""Site A -> site B: Dice and predicted/true volume for each augmentation and normalisation.

Usage::

    nice -n 10 python benchmarks/cross_site.py --out cross_site_out [options]

Runs :func:`mssoft.experiments.demo.cross_site.run_cross_site` (what ``mssoft demo --cross-site``
runs) for every seed x ``--augment`` x ``--normalise`` cell: one soft-mask model trained on site
A's patients, segmenting held-out patients of site A and of site B. The cells of one seed share
one generated data set (the first cell's ``data/``) and the same training seed, so within a seed
only the augmentation and the normalisation differ. A finished cell (its ``config.json`` says
``done``) is read, not rerun, so an interrupted sweep continues where it stopped (a cell written
before the FLAIR-threshold baseline existed is run again).

Every cell also holds the FLAIR-threshold baseline calibrated on the same site-A training scans
(``result.flair_baseline`` of its ``config.json``): the summary gives its Dice per site beside the
model's, the model's Dice minus the baseline's paired by seed and site, and in how many seeds the
model learned (beat the baseline on its validation slices).

Writes ``OUT/cells.csv`` (one row per cell, model and site; ``model`` is ``model`` or
``flair-threshold``), ``OUT/summary.md`` (mean and standard error over the seeds, and each
option's difference from the paper/zscore cell paired by seed) and prints the summary. Defaults
are sized to finish in about 20-30 minutes on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROLES = ("within-site", "cross-site")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("cross_site_out"))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--augment", default="paper,strong")
    parser.add_argument("--normalise", default="zscore,percentile,histogram")
    parser.add_argument("--patients", type=int, default=4, help="site-A training patients")
    parser.add_argument("--heldout", type=int, default=3, help="held-out patients per site")
    parser.add_argument("--timepoints", type=int, default=1)
    parser.add_argument("--shape", default="64,72,40", help="field of view in mm")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    return parser.parse_args(argv)


def _cell(args: argparse.Namespace, seed: int, augment: str, normalise: str, data: Path | None):
    from mssoft.experiments.demo.cross_site import run_cross_site
    from mssoft.experiments.demo.types import DEMO_TRAINING, CrossSiteConfig

    out = args.out / f"seed{seed}_{augment}_{normalise}"
    record = out / "config.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        if stored.get("status") == "done" and "flair_baseline" in stored["result"]:
            return out, _scores(stored["result"])
    training = replace(
        DEMO_TRAINING,
        epochs=args.epochs,
        base_filters=args.base_filters,
        depth=args.depth,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=seed,
        augment=augment,
        normalise=normalise,
    )
    config = CrossSiteConfig(
        out=out,
        patients=args.patients,
        heldout=args.heldout,
        timepoints=args.timepoints,
        shape=tuple(int(v) for v in args.shape.split(",")),
        training=training,
        overwrite=True,
    )
    run_cross_site(config, data=data)
    return out, _scores(json.loads(record.read_text())["result"])


def _scores(result: dict) -> list[dict]:
    """The model's and the baseline's site scores of a cell's ``config.json`` result, each
    with ``model`` and whether the model learned (beat the baseline on its validation slices)."""
    baseline = result["flair_baseline"]
    learned = {"learned": bool(baseline["learned"])}
    return [{"model": "model", **s, **learned} for s in result["scores"]] + [
        {"model": "flair-threshold", **s, **learned} for s in baseline["scores"]
    ]


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (NaN with one value)."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return float(arr.mean()), se


def _summary(rows: list[dict], seeds: list[int], cells: list[tuple[str, str]]) -> str:
    def values(
        augment: str, normalise: str, role: str, key: str, model: str = "model"
    ) -> dict[int, float]:
        return {
            r["seed"]: r[key]
            for r in rows
            if (r["augment"], r["normalise"], r["role"], r.get("model", "model"))
            == (augment, normalise, role, model)
        }

    lines = [
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); mean +- standard error over seeds; "
        "Dice in %, against rater 1; delta = paired difference from paper/zscore; FLAIR thr. = "
        "the FLAIR-threshold baseline calibrated on the same training scans; - FLAIR = model "
        "minus baseline, paired by seed; learned = seeds where the model beat the baseline on "
        "its validation slices.",
        "",
        "| augment | normalise | Dice A->A | Dice A->B | delta Dice A->B | pred/true vol. A->A "
        "| pred/true vol. A->B | FLAIR thr. A->A | FLAIR thr. A->B | A->A - FLAIR "
        "| A->B - FLAIR | learned |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = values("paper", "zscore", "cross-site", "dice")
    for augment, normalise in cells:
        a_dice = _stats(
            [100 * v for v in values(augment, normalise, "within-site", "dice").values()]
        )
        b = values(augment, normalise, "cross-site", "dice")
        b_dice = _stats([100 * v for v in b.values()])
        delta = _stats([100 * (b[s] - base[s]) for s in b if s in base])
        a_vol = _stats(list(values(augment, normalise, "within-site", "volume_ratio").values()))
        b_vol = _stats(list(values(augment, normalise, "cross-site", "volume_ratio").values()))
        flair = {
            role: values(augment, normalise, role, "dice", "flair-threshold")
            for role in ROLES
        }
        model = {role: values(augment, normalise, role, "dice") for role in ROLES}
        flair_dice = {role: _stats([100 * v for v in flair[role].values()]) for role in ROLES}
        above = {
            role: _stats(
                [100 * (model[role][s] - flair[role][s]) for s in model[role] if s in flair[role]]
            )
            for role in ROLES
        }
        learned = values(augment, normalise, "within-site", "learned")
        lines.append(
            f"| {augment} | {normalise} | {a_dice[0]:.1f} +- {a_dice[1]:.1f} "
            f"| {b_dice[0]:.1f} +- {b_dice[1]:.1f} | {delta[0]:+.1f} +- {delta[1]:.1f} "
            f"| {a_vol[0]:.2f} +- {a_vol[1]:.2f} | {b_vol[0]:.2f} +- {b_vol[1]:.2f} "
            + "".join(f"| {flair_dice[r][0]:.1f} +- {flair_dice[r][1]:.1f} " for r in ROLES)
            + "".join(f"| {above[r][0]:+.1f} +- {above[r][1]:.1f} " for r in ROLES)
            + f"| {sum(map(bool, learned.values()))}/{len(learned)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    cells = [(a, n) for a in args.augment.split(",") for n in args.normalise.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for seed in seeds:
        data = None
        for augment, normalise in cells:
            logging.getLogger("cross_site").warning(
                "seed %d: augment=%s normalise=%s", seed, augment, normalise
            )
            out, scores = _cell(args, seed, augment, normalise, data)
            if data is None:  # later cells of this seed reuse the first cell's data
                data = out / "data"
            for s in scores:
                rows.append({"seed": seed, "augment": augment, "normalise": normalise, **s})
    keys = [
        "seed",
        "augment",
        "normalise",
        "model",
        "site",
        "role",
        "dice",
        "pred_volume_ml",
        "true_volume_ml",
        "volume_ratio",
        "learned",
    ]
    with open(args.out / "cells.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    text = _summary(rows, seeds, cells)
    settings = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    (args.out / "summary.md").write_text(f"{text}\n\nSettings: `{settings}`\n")
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    sys.exit(main())
