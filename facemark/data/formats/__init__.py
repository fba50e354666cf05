"""Dataset readers: every format yields a list of :class:`facemark.data.sample.Sample`.

Each reader is a function ``read(path, *, scheme=None, on_error=raise_error, **options)``
in its own module, plus ``sniff(path) -> bool`` used when the format is not given.
``open_dataset`` is the one entry point; ``"FORMAT:PATH"`` strings pick a format
explicitly (``facemark data info wflw:/data/WFLW/list_98pt_rect_attr_test.txt``).
"""
from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

from facemark.data.sample import Sample
from facemark.errors import ConfigError, DataError, SkipLog

# format name -> module under facemark.data.formats. Order matters for sniffing: the more
# specific formats come first, the plain image folder last.
FORMATS: dict[str, str] = {
    "wflw": "wflw",          # list_98pt_rect_attr_{train,test}.txt (+ WFLW_images/)
    "cofw": "cofw",          # COFW_{train,test}[_color].mat, 29 points + occlusion
    "cofw68": "cofw68",      # COFW-68 test annotations (Ghiasi & Fowlkes), .mat per image
    "aflw": "aflw",          # AFLWinfo_release.mat, 19 points, full / frontal protocols
    "300vw": "vw300",        # 300VW video folders: NNN/vid.avi + NNN/annot/*.pts
    "lapa": "lapa",          # LaPa: images/ + landmarks/*.txt (106 points)
    "coco": "coco",          # COCO-style keypoint JSON (mmpose face datasets)
    "dlib": "dlib_xml",      # dlib imglab XML
    "ljson": "ljson",        # menpo .ljson files
    "csv": "csv_table",      # name, x0, y0, ... (ytf68 / Udacity style)
    "pts": "pts",            # 300-W / Menpo / LFPW .pts folders and list files
    "folder": "folder",      # unlabelled images
}


def _module(fmt: str):
    if fmt not in FORMATS:
        raise DataError(fmt, f"unknown dataset format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"facemark.data.formats.{FORMATS[fmt]}")


def split_spec(source: str | Path) -> tuple[str | None, str]:
    """``"wflw:/data/x.txt"`` -> ("wflw", "/data/x.txt"); a plain path -> (None, path).

    Environment variables and ``~`` in the path are expanded
    (``"wflw:$FACEMARK_DATA/WFLW/..."``); options stay attached (see ``split_options``).
    """
    text = str(source)
    head, sep, tail = text.partition(":")
    fmt, path = (head, tail) if sep and head in FORMATS else (None, text)
    return fmt, os.path.expanduser(os.path.expandvars(path))


def split_options(path: str) -> tuple[str, dict[str, str]]:
    """``"/data/AFLWinfo_release.mat?split=test&protocol=frontal"`` -> (path, options)."""
    if "?" not in path:
        return path, {}
    path, _, query = path.partition("?")
    options = {}
    for item in query.split("&"):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise DataError(path, f"dataset option {item!r} must look like key=value")
        options[key] = value
    return path, options


def detect_format(path: str | Path) -> str:
    """The first format whose ``sniff`` accepts ``path``; raises DataError listing formats."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "dataset path not found")
    for fmt in FORMATS:
        try:
            module = _module(fmt)
        except ModuleNotFoundError:
            continue
        if module.sniff(path):
            return fmt
    raise DataError(path, "cannot tell the dataset format; give it as FORMAT:PATH with FORMAT "
                          f"one of {', '.join(FORMATS)}")


def open_dataset(source: str | Path, format: str | None = None, *, scheme: str | None = None,
                 skip_bad: bool | SkipLog = False, **options) -> list[Sample]:
    """Read a dataset into a list of samples.

    Args:
        source: a path, or ``"FORMAT:PATH"``.
        format: the format name (overrides one given in ``source``); sniffed when None.
        scheme: landmark scheme name to check the records against (the reader's default
            when None, e.g. ``300w68`` for ``.pts``).
        skip_bad: False: stop at the first bad record with a DataError naming file and line.
            True (or a SkipLog): skip bad records and list them in the log.
        **options: format-specific options (e.g. ``images=`` for CSV, ``protocol=`` for AFLW);
            they can also ride on the path: ``"aflw:/d/AFLWinfo_release.mat?split=test"``.

    Returns:
        list of Sample, in the dataset's order.
    """
    fmt, path = split_spec(source)
    path, spec_options = split_options(path)
    options = {**spec_options, **options}
    if "$" in path:
        raise DataError(path, "the path names an environment variable that is not set "
                              "(e.g. export FACEMARK_DATA=/path/to/datasets)")
    fmt = format or fmt or detect_format(path)
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    reader = _module(fmt).read
    params = inspect.signature(reader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY
                 and n not in ("scheme", "on_error")]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"dataset format {fmt!r} has no option {', '.join(unknown)}; "
                              f"its options: {', '.join(known) or 'none'}")
    return reader(path, scheme=scheme, on_error=log, **options)
