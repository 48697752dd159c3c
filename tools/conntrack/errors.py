"""Errors of the ``conntrack`` command line and the exact text they print.

A :class:`ParameterProblem` (exit status 2) prints ``conntrack v1.4.7 (conntrack-tools):
MSG`` and the "Try" line; an :class:`OtherProblem` (exit status 1) prints only the
prefixed line. :func:`format_error` gives the complete stderr text of either.
"""
from __future__ import annotations

VERSION = "1.4.7"
PROGNAME = "conntrack"
PREFIX = f"{PROGNAME} v{VERSION} (conntrack-tools): "
TRY_LINE = f"Try `{PROGNAME} -h' or '{PROGNAME} --help' for more information.\n"

PARAMETER_PROBLEM = 2
OTHER_PROBLEM = 1


class CliError(Exception):
    """A fatal command-line error: ``message`` (without prefix) and exit ``status``."""

    status = OTHER_PROBLEM

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def text(self) -> str:
        """What the reference prints to stderr for this error."""
        return format_error(self)


class ParameterProblem(CliError):
    """Bad usage: exit status 2, followed by the "Try ..." line."""

    status = PARAMETER_PROBLEM


class OtherProblem(CliError):
    """Any other fatal problem: exit status 1, prefixed line only."""

    status = OTHER_PROBLEM


def format_error(err: CliError) -> str:
    """The complete stderr text of an error (one or two lines, newline-terminated)."""
    text = f"{PREFIX}{err.message}\n"
    if err.status == PARAMETER_PROBLEM:
        text += TRY_LINE
    return text


class Stop(Exception):
    """SIGINT/SIGTERM ended an event listener (``-E``)."""
