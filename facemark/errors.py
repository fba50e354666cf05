"""Errors that facemark reports to the user as one clear line, never as a traceback.

Every error about user input names the file (and line or record where there is one),
what was expected, what arrived, and how to fix it where that is known.
"""
from __future__ import annotations

from pathlib import Path


class FacemarkError(Exception):
    """Base class: the CLI prints ``facemark: error: <message>`` and exits with status 2."""


class DataError(FacemarkError):
    """Bad input data: a missing or corrupt image, a malformed annotation, a NaN.

    Args:
        path: the file the problem is in.
        message: what is wrong, e.g. ``"expected 68 points, got 67"``.
        line: 1-based line (or record) number inside ``path``, where there is one.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class ConfigError(FacemarkError):
    """A configuration key or value that is unknown or out of range; the message names the key."""


class SkipLog:
    """Policy for bad records: raise at once (default) or record and go on (``--skip-bad``).

    Readers call ``on_error(DataError(...))`` for each bad record and continue only if it
    returns. Nothing is dropped silently: skipped records stay listed in ``skipped``.

    Args:
        skip_bad: if False, the first error is raised; if True, errors are collected.
    """

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.skipped: list[DataError] = []

    def __call__(self, error: DataError) -> None:
        if not self.skip_bad:
            raise error
        self.skipped.append(error)

    def summary(self) -> str:
        """One line per skipped record, for printing after a run."""
        if not self.skipped:
            return "skipped: none"
        lines = [f"skipped {len(self.skipped)} bad record(s):"]
        lines += [f"  {e}" for e in self.skipped]
        return "\n".join(lines)


def raise_error(error: DataError) -> None:
    """The default ``on_error``: stop at the first bad record."""
    raise error
