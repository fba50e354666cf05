"""The ``facemark`` command: one subcommand per module in this package.

Each subcommand module has ``register(subparsers)``, which adds its parser and sets
``handler`` to a function taking the parsed arguments. Heavy imports (torch, models) happen
inside the handlers, so ``facemark --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from facemark import __version__
from facemark.errors import FacemarkError

# Subcommand modules in the order ``--help`` lists them; a module that does not exist yet
# is skipped, so the CLI grows with the package.
SUBCOMMANDS = ("data", "evaluate", "train", "selftrain", "detect", "calibrate", "export", "bench",
               "analyze", "weights")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facemark", description="Facial landmark detection, training and evaluation.")
    parser.add_argument("--version", action="version", version=f"facemark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"facemark.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"facemark.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _tolerant_output() -> None:
    """File names need not be UTF-8 on Linux (Python holds their bytes as surrogates): print
    such a name escaped (``ph\\udcffoto.png``) instead of failing with UnicodeEncodeError
    mid-run, and keep the output valid UTF-8 for logs."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change (already written)
                pass


def main(argv: list[str] | None = None) -> int:
    _tolerant_output()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # ``section.key=value`` overrides may come after options (``train cfg --devices 2 a.b=1``).
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        result = args.handler(args)
    except FacemarkError as e:
        print(f"facemark: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facemark: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
