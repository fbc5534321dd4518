"""How often does Dice-loss training collapse to an all-zero output, before and after the guards?

Not part of ``make bench``. Generates one small synthetic data set (the demo's generator:
``mssoft.synthetic.write_isbi_dataset``), then trains ``mssoft fit`` on it (soft masks built on
the fly, ratio 1.2, gamma 0.3, as in the real-data report) for every seed x learning rate, once
with the old settings ("before": head bias 0, no warm-up, bilinear targets) and once with the
current defaults ("after": head bias at the lesion prior, 1-epoch warm-up, nearest-neighbour
targets); ``--variants no_guards`` adds the current targets without the guards. A run counts as
collapsed when it *ended* collapsed (:func:`mssoft.nn.callbacks.collapse_epoch`: training loss
~0 and training Dice 0 from some epoch to the last). A run *learned* when its best validation Dice
beats the FLAIR-threshold baseline's Dice on the same validation slices (the baseline: one
threshold on the brain-z-scored FLAIR, calibrated on the training scans against rater 1;
:mod:`mssoft.workflows.flair_baseline`).

Usage::

    nice -n 10 .venv/bin/python benchmarks/collapse.py [--out DIR] [--seeds 0,1,2,3,4]
        [--learning-rates 1e-4,3e-4,1e-3] [--epochs 8] [--base-filters 8] [--no-mixed-precision]

Prints one line per run on stderr and a Markdown table on stdout, and writes
``DIR/collapse.json`` (every run) and ``DIR/collapse.md`` (the table). ``--table-only`` prints the
table of an earlier ``DIR/collapse.json`` again.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

VARIANTS = {
    "before": {"output_bias": "zero", "warmup_epochs": 0.0, "target_interpolation": "bilinear"},
    "after": {},  # the defaults of TrainingSettings
    # nearest-neighbour targets without the guards: separates the two changes
    "no_guards": {"output_bias": "zero", "warmup_epochs": 0.0},
}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def learned(run: dict) -> bool | None:
    """The run's best validation Dice beats the baseline's on its validation slices (None for a
    run recorded without the baseline's Dice)."""
    level = run.get("baseline_val_dice")
    if level is None:
        return None
    return bool(run["best_val_dice"] > level)


def format_table(runs: list[dict]) -> str:
    """Markdown: per variant and learning rate, runs that ended collapsed, runs that learned
    (beat the FLAIR-threshold baseline on their validation slices), the median best validation
    Dice and the baseline's median Dice on the same slices."""
    import statistics

    variants = list(dict.fromkeys(r["variant"] for r in runs))
    rates = sorted({r["learning_rate"] for r in runs})
    lines = [
        "| variant | learning rate | runs | collapsed | learned (beat the FLAIR threshold) "
        "| median best val Dice | median FLAIR-threshold Dice, same slices |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for variant in variants:
        for rate in rates:
            group = [r for r in runs if r["variant"] == variant and r["learning_rate"] == rate]
            if not group:
                continue
            collapsed = sum(r["collapsed_epoch"] is not None for r in group)
            judged = [learned(r) for r in group if learned(r) is not None]
            count = f"{sum(judged)}" if len(judged) == len(group) else "n/a"
            median = statistics.median(r["best_val_dice"] for r in group)
            levels = [r["baseline_val_dice"] for r in group if "baseline_val_dice" in r]
            level = f"{statistics.median(levels):.2f}" if levels else "n/a"
            lines.append(
                f"| {variant} | {rate:g} | {len(group)} | {collapsed} | {count} | {median:.2f} "
                f"| {level} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("collapse_out"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--learning-rates", default="1e-4,3e-4,1e-3")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--shape", default="64,72,40")
    parser.add_argument("--variants", default="before,after")
    parser.add_argument("--no-mixed-precision", action="store_true")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.table_only:
        print(format_table(json.loads((args.out / "collapse.json").read_text())["runs"]))
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    import keras

    from mssoft.files.scans import discover_scans
    from mssoft.synthetic import write_isbi_dataset
    from mssoft.workflows.fit import fit
    from mssoft.workflows.flair_baseline import (
        calibrate_on_scans,
        run_validation_dice,
        segment_scans,
    )
    from mssoft.workflows.settings import MaskConfig, TrainConfig

    out = args.out.resolve()
    data = out / "data"
    if not data.is_dir():
        shape = tuple(int(v) for v in args.shape.split(","))
        write_isbi_dataset(data, n_patients=args.patients, timepoints=2, shape=shape, seed=0)
    scans = discover_scans(data)  # fit trains (and validates) on every scan
    baseline = segment_scans(calibrate_on_scans(scans, rater=1), scans)
    seeds = [int(v) for v in args.seeds.split(",")]
    rates = _floats(args.learning_rates)
    runs = []
    for variant in args.variants.split(","):
        for rate in rates:
            for seed in seeds:
                run_dir = out / "runs" / f"{variant}_lr{rate:g}_seed{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                config = TrainConfig(
                    data=data,
                    out=run_dir,
                    mask=MaskConfig(ratio=1.2, gamma=0.3),
                    epochs=args.epochs,
                    batch_size=8,
                    learning_rate=rate,
                    base_filters=args.base_filters,
                    depth=args.depth,
                    seed=seed,
                    mixed_precision=not args.no_mixed_precision,
                    strategy="default",
                    **VARIANTS[variant],
                )
                start = time.perf_counter()
                result = fit(config)
                keras.backend.clear_session()
                val_dice = [r.get("val_dice", 0.0) for r in result.history]
                run = {
                    "variant": variant,
                    "learning_rate": rate,
                    "seed": seed,
                    "collapsed_epoch": result.collapsed_epoch,
                    "epochs_flagged": int(sum(r.get("collapsed", 0) for r in result.history)),
                    "best_val_dice": max(val_dice, default=0.0),
                    "baseline_val_dice": run_validation_dice(baseline, scans, run_dir),
                    "last_loss": result.history[-1]["loss"],
                    "seconds": time.perf_counter() - start,
                }
                runs.append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
                shutil.rmtree(run_dir / "logs", ignore_errors=True)
                shutil.rmtree(run_dir / "backup", ignore_errors=True)

    table = format_table(runs)
    print(table)
    (out / "collapse.md").write_text(table + "\n")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / "collapse.json").write_text(json.dumps({"settings": settings, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
