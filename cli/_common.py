"""Helpers shared by the command modules: progress bars and common options."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import click
from tqdm import tqdm

T = TypeVar("T")

DATA_ARGUMENT = click.argument("data", type=click.Path(exists=True, path_type=Path), metavar="DATA")


def out_option(help_text: str):  # type: ignore[no-untyped-def]
    """The required ``--out`` folder option of a command."""
    return click.option(
        "--out", "out", required=True, type=click.Path(path_type=Path), help=help_text
    )


def progress(items: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr (hidden with ``mssoft -q``)."""
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("quiet"))
    yield from tqdm(
        items,
        desc=desc,
        total=total,
        file=sys.stderr,
        disable=quiet,
        unit="scan",
        dynamic_ncols=True,
        leave=False,
    )


def echo_line(text: str) -> None:
    """Print a result line on stdout without breaking an active progress bar."""
    tqdm.write(text, file=sys.stdout)
