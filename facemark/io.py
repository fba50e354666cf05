"""Writing files so that a reader never sees half of one, with one-line errors; and the
Markdown tables the reports hold.

A file or folder that cannot be written (no permission, a read-only or full disk, a file
where a folder should be) is a :class:`facemark.errors.DataError` naming it, never a
traceback; an interrupted or failed write leaves the old file (or none).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from facemark.errors import DataError


def _cannot_write(path: Path, error: OSError, what: str = "cannot write") -> DataError:
    reason = error.strerror or error.__class__.__name__
    return DataError(path, f"{what}: {reason}")


def output_folder(path: str | Path, option: str = "-o") -> Path:
    """Create (if needed) and check an output folder before any work is done.

    Args:
        path: the folder.
        option: how the user named it, for the message (``"-o"``, ``"--out"``).

    Raises:
        DataError: ``path`` is an existing file, cannot be created, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, f"{option} is an existing file; {option} needs a folder (give a "
                              "new or existing folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(path, e, f"cannot create the {option} folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(path, f"the {option} folder is not writable (Permission denied); "
                              f"give another {option}")
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    The folder is created; an interrupted write leaves the old file (or none), never a
    truncated one, and no temporary file behind.

    Raises:
        DataError: the file cannot be written (naming it and why, e.g. "No space left on
            device"); the old file is kept.
    """
    # surrogateescape: a file name that is not UTF-8 (Python holds its bytes as surrogates)
    # is written as its own bytes instead of failing with UnicodeEncodeError
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8",
                                                         errors="surrogateescape"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write_text` for bytes (e.g. an encoded image), with the same
    guarantees and the same DataError."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` a temporary file beside ``path``, then rename it into place.

    For writers that need a path or a file (``torch.save``, ``onnx.save``, ``np.savez``
    into ``open(tmp, "wb")``), with the guarantees and the DataError of
    :func:`atomic_write_text`. An exception other than OSError from ``write`` (a check
    that fails) propagates as it is, and ``path`` is left as it was.

    ``tmp`` is a hidden sibling of ``path`` (same folder, so the rename stays on one disk);
    ``write`` must create that file and may leave it half-written when it fails.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _cannot_write(path, e) from None
    finally:
        try:
            if tmp.exists():
                tmp.unlink()
        except OSError:
            pass
    return path


def temp_path(path: str | Path) -> Path:
    """The temporary sibling :func:`atomic_write` writes before the rename (same folder:
    same disk; hidden; one per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]],
                   align: str | None = None) -> str:
    """A Markdown table, one line per row; cells are written with ``str``.

    Args:
        headers: the column names.
        rows: the cells, one sequence per row.
        align: one character per column, ``l`` (text) or ``r`` (numbers); default: the first
            column ``l``, the others ``r``.
    """
    if align is not None and len(align) != len(headers):
        raise ValueError(f"markdown_table: align {align!r} has {len(align)} characters for "
                         f"{len(headers)} columns")
    if align is None:
        align = "l" + "r" * (len(headers) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
