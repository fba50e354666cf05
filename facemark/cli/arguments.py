"""Argument types shared by the subcommands (``type=`` of ``argparse.add_argument``)."""
from __future__ import annotations

import argparse

from facemark.errors import ConfigError


def _whole_number(text: str, least: int, expected: str) -> int:
    """``int(text)`` if it is at least ``least``, else an argparse error: "expected ..."."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1, or an argparse error saying what was expected."""
    return _whole_number(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """A whole number >= 0, or an argparse error saying what was expected."""
    return _whole_number(text, 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    """A number > 0, or an argparse error saying what was expected."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0, or an argparse error saying what was expected."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def refine_of(args: argparse.Namespace) -> int | None:
    """Extra passes from ``--refine`` / ``--refine-passes N`` / ``--no-refine``: 0 for no
    refining; None (only where the command has ``--no-refine`` and no flag was given) for
    the landmarker's default."""
    off = getattr(args, "no_refine", False)
    if off and (args.refine or args.refine_passes is not None):
        raise ConfigError("--no-refine contradicts --refine / --refine-passes")
    if args.refine_passes is not None and not args.refine:
        raise ConfigError("--refine-passes needs --refine")
    if args.refine:
        return args.refine_passes or 1
    return 0 if off or not hasattr(args, "no_refine") else None
