"""Exceptions raised by mssoft for bad input.

Every error raised for a user's data or options is a :class:`MssoftError` whose message is one line
that names the file or option at fault. The command line turns it into ``Error: <message>`` on
stderr and a non-zero exit code.
"""

from __future__ import annotations

__all__ = ["MssoftError", "DataError", "ConfigError"]


class MssoftError(Exception):
    """Base class of every error mssoft raises for bad input."""


class DataError(MssoftError, ValueError):
    """A data file is missing, unreadable or inconsistent with the others of its scan."""


class ConfigError(MssoftError, ValueError):
    """An option or configuration value is invalid."""
