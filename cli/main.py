"""The ``mssoft`` command group: options shared by every command, logging, and error handling.

Sub-commands live in one module each and are imported only when called, so ``mssoft --help`` and
``mssoft build-masks`` never load TensorFlow.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys

import click

from mssoft import __version__
from mssoft.errors import MssoftError

from ._tensorflow import quiet_tensorflow

__all__ = ["cli", "COMMANDS"]

#: command name -> (module under mssoft.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "build-masks": ("build_masks", "build_masks", "Build soft lesion masks from expert masks."),
    "fit": ("fit", "fit", "Train the U-Net on soft (or binary) masks."),
    "calibrate": ("calibrate", "calibrate", "Choose the binarisation threshold on training scans."),
    "predict": ("predict", "predict", "Segment scans with a trained run."),
    "export": ("export", "export", "Export a run's model as a TensorFlow SavedModel."),
    "evaluate": ("evaluate", "evaluate", "Compare segmentations with every rater."),
    "cv": ("cv", "cv", "Leave-one-patient-out cross-validation over ratio and gamma."),
    "demo": ("demo", "demo", "Soft against binary training on generated data, with a report."),
}

CONTEXT_SETTINGS = {"show_default": True, "help_option_names": ["-h", "--help"]}


class _LazyGroup(click.Group):
    """Imports each command's module on first use; turns MssoftError and OSError into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[cmd_name]
        module = importlib.import_module(f"mssoft.cli.{module_name}")
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except MssoftError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a file that cannot be read or written: one line naming it
            raise click.ClickException(_describe_os_error(exc)) from None
        except Exception as exc:
            if not _is_tensorflow_file_error(exc):
                raise
            raise click.ClickException(_describe_tensorflow_error(exc)) from None
        except KeyboardInterrupt:
            click.echo("Aborted.", err=True)
            sys.exit(130)


#: File-system errors whose reason goes first: ``No space left on device: <path>``.
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)


def _describe_os_error(exc: OSError) -> str:
    """``<path>: <reason>`` for a file-system error (the paths it names, its reason).

    A full disk or quota reads ``No space left on device: <path>``.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return reason
    if exc.errno in _SPACE_ERRORS:
        return f"{reason}: {' -> '.join(paths)}"
    return f"{' -> '.join(paths)}: {reason}"


def _describe_tensorflow_error(exc: Exception) -> str:
    """One line for TensorFlow's file errors; a full disk as ``No space left on device: <path>``.

    TensorFlow's messages name the file first (``<path>; No space left on device``).
    """
    message = str(getattr(exc, "message", exc)).strip().splitlines()[0]
    path, _, reason = message.partition("; ")
    if "No space left on device" in reason:
        return f"No space left on device: {path}"
    return message


#: TensorFlow's file-system errors (TensorBoard logs, checkpoints): their message names the path.
_TF_FILE_ERRORS = ("PermissionDeniedError", "NotFoundError", "AlreadyExistsError")


def _is_tensorflow_file_error(exc: Exception) -> bool:
    """Whether ``exc`` is one of TensorFlow's file errors (without importing TensorFlow).

    A ``ResourceExhaustedError`` counts when it is a full disk (not when memory ran out).
    """
    errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    if errors is None:
        return False
    kinds = tuple(getattr(errors, name) for name in _TF_FILE_ERRORS if hasattr(errors, name))
    exhausted = getattr(errors, "ResourceExhaustedError", ())
    if exhausted and isinstance(exc, exhausted):
        return "No space left on device" in str(getattr(exc, "message", exc))
    return isinstance(exc, kinds)


@click.group(cls=_LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="mssoft")
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """mssoft: MS lesion segmentation with soft labels (Kats et al., ISBI 2019).

    Results go to stdout; logs and progress bars go to stderr. Every command writes its resolved
    configuration and package versions into its output folder.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    # TensorFlow's C++ start-up lines (oneDNN, CUDA probing, cuInit errors) only with -v.
    quiet_tensorflow(verbose)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # INFO for our own loggers only; -v also shows other libraries' INFO messages.
    logging.getLogger().setLevel(logging.WARNING if verbose == 0 and not quiet else level)
    logging.getLogger("mssoft").setLevel(level)
    ctx.obj = {"quiet": quiet, "verbose": verbose}


def main() -> None:  # pragma: no cover - console entry point alternative
    cli()
