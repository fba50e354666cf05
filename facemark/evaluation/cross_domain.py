"""Cross-domain evaluation: a model of one scheme on a dataset annotated in another.

PIPNet's cross-domain setting (papers/pipnet.txt, Sec. 4.1.2) trains on 300W (68 points)
and tests on COFW-68 and WFLW-68: WFLW's 98 points converted to the 68 by
:mod:`facemark.data.convert`, and every dataset cropped in one style (GSL crops,
:func:`facemark.data.crops.gsl_crop_rule`). ``facemark evaluate`` uses this module for
``--convert-to SCHEME`` and ``--crop-rule gsl``:

    samples, notes = convert_dataset(samples, "300w68")       # wflw98 -> 300w68
    rule, note = resolve_crop_rule("gsl", "wflw:/data/WFLW", None, "wflw98")   # "wflw68"
"""
from __future__ import annotations

from collections.abc import Sequence

from facemark.data.convert import convert_samples, get_conversion
from facemark.data.crops import CROP_RULES, gsl_crop_rule
from facemark.data.formats import detect_format, split_options, split_spec
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, FacemarkError

#: The ``--crop-rule`` value that picks the GSL crop of the evaluated dataset.
GSL = "gsl"


def convert_dataset(samples: Sequence, convert_to: str | None) -> tuple[list, list[str]]:
    """The samples' ground truth converted to the scheme ``convert_to`` (None: unchanged).

    Args:
        samples: the evaluated samples (annotated).
        convert_to: target scheme name or alias, or None.

    Returns:
        (samples, notes): the converted samples (:func:`facemark.data.convert.convert_samples`)
        and report notes saying what was converted and how (empty when nothing was).

    Raises:
        ConfigError: an unknown scheme, or no conversion from the dataset's scheme (the
            message lists the known conversions).
    """
    samples = list(samples)
    if convert_to is None:
        return samples, []
    try:
        dst = get_scheme(convert_to)
    except KeyError as e:
        raise ConfigError(f"--convert-to: {e.args[0]}") from None
    sources = sorted({get_scheme(s.scheme).name for s in samples})
    notes = []
    for src in sources:
        if src == dst.name:
            continue
        try:
            conv = get_conversion(src, dst)
        except ValueError as e:
            raise ConfigError(f"--convert-to {dst.name}: {e}") from None
        notes.append(f"ground truth converted from {src} to {dst.name}: {conv.description}")
    return convert_samples(samples, dst), notes


def dataset_format(data: str, format: str | None = None) -> str | None:
    """The format name of a ``--data`` argument: ``format``, the ``FORMAT:`` prefix, or
    the sniffed format (None when it cannot be told)."""
    fmt, path = split_spec(data)
    if format or fmt:
        return format or fmt
    try:
        return detect_format(split_options(path)[0])
    except FacemarkError:   # an unreadable path fails later, in the reader, with its message
        return None


def resolve_crop_rule(rule: str | None, data: str, format: str | None,
                      scheme: str | None) -> tuple[str | None, list[str]]:
    """A ``--crop-rule`` value as a crop rule name.

    Args:
        rule: None (the model's own rule), a name in ``CROP_RULES``, or ``"gsl"``.
        data, format: the ``--data`` and ``--format`` arguments (``gsl`` looks at the format).
        scheme: the scheme the dataset is annotated in, before any conversion.

    Returns:
        (rule name or None, report notes).

    Raises:
        ConfigError: an unknown rule (lists the known ones and ``gsl``).
    """
    if rule is None or rule in CROP_RULES:
        return rule, []
    if rule == GSL:
        fmt = dataset_format(data, format)
        name = gsl_crop_rule(fmt, scheme)
        r = CROP_RULES[name]
        what = (("landmark" if r.source == "landmarks" else "given") + f" box x{r.scale:g}"
                + (f", top {r.top_cut:.0%} cut" if r.top_cut else ""))
        return name, [f"GSL crops (PIPNet's cross-domain setting) for a {fmt or 'unknown'} "
                      f"dataset in {scheme}: crop rule {name!r} ({what})"]
    raise ConfigError(f"--crop-rule {rule!r} is not a crop rule; known: "
                      f"{', '.join(CROP_RULES)}, or {GSL} (the cross-domain crop of the dataset)")
