"""The command of ``make bench`` (``python benchmarks/run.py``): speed and memory of every stage."""

from __future__ import annotations

from pathlib import Path

import click

from harness.settings import STAGES


def _stages(text: str | None) -> list[str] | None:
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


@click.command("bench", context_settings={"show_default": True})
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every figure to this JSON file (replaced if it exists)  [default: none]",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny scans and networks (a smoke test in about 20 s): the numbers mean nothing.",
)
@click.option(
    "--stages",
    default=None,
    metavar="NAMES",
    help=f"Comma-separated subset of {','.join(STAGES)} (machine always runs)  [default: all]",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Scratch folder of the memory stage (kept)  [default: a temporary folder, removed]",
)
@click.option("--seed", default=0, type=click.IntRange(min=0), help="Seed of the generated data.")
def bench(
    out: Path | None, quick: bool, stages: str | None, workdir: Path | None, seed: int
) -> None:
    """Measure the speed and memory of every stage on generated data, print a table.

    On the same generated ISBI-sized scans (181 x 217 x 181, 10-20 mL of lesions): soft-mask
    build against an iterative binary_dilation baseline; tf.data pipeline against the training
    step; U-Net training (batch 8, base 32, depth 4) in float32 and mixed bfloat16, with its
    FLOPs and the fraction of the machine's fp32 peak (stated from /proc/cpuinfo and measured);
    prediction and evaluation per scan; peak memory of `mssoft fit` on two dataset sizes.
    About 5 minutes on 2 idle cores. Progress goes to stderr, the table to stdout.
    """
    from mssoft.errors import MssoftError

    try:
        _bench(out, quick, stages, workdir, seed)
    except MssoftError as exc:
        raise click.ClickException(str(exc)) from None


def _bench(
    out: Path | None, quick: bool, stages: str | None, workdir: Path | None, seed: int
) -> None:
    from dataclasses import replace

    from harness import FULL, QUICK, format_report, run_benchmarks
    from mssoft.errors import ConfigError
    from mssoft.files.atomic import write_json

    if out is not None and out.is_dir():
        raise ConfigError(f"Invalid value for `--out`: {out} is a folder; give a JSON file name")
    settings = replace(QUICK if quick else FULL, seed=seed)
    results = run_benchmarks(settings, stages=_stages(stages), workdir=workdir)
    if out is not None:
        results["json"] = str(out.resolve())
        write_json(results, out)
    click.echo(format_report(results))
    if out is not None:
        click.echo(f"out={out}")
