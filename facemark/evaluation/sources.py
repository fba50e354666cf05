"""Where a method's predictions come from: a file, a baseline, or a model.

``facemark evaluate`` takes SOURCE arguments and turns each into a
:class:`~facemark.data.predictions.PredictionSet` with :func:`resolve_predictions`.
The kinds of source live in the ``SOURCES`` registry, tried in order; the first whose
``accepts(arg)`` is true resolves it. Built in here (they need no inference):

* ``file``: a ``.json`` or ``.csv`` prediction file (``docs/prediction-format.md``).
* ``meanface``: the literal word ``meanface``; fits
  :class:`~facemark.evaluation.meanface.MeanFaceBaseline` on the ``train=`` dataset and
  predicts on the evaluated samples.

The kinds that run a model or a detector, ``model`` (a ``.ckpt``/``.pt``, tried first) and
``dlib``, are registered by :mod:`facemark.inference.sources` when it is imported; its
``resolve_predictions`` (this function) is the one to call for every kind, as ``facemark
evaluate`` does.

Adding a kind (the hook the training code uses for model checkpoints)::

    from facemark.evaluation.sources import PredictionSource, register_source

    def _accepts(arg: str) -> bool:
        return arg.endswith(".ckpt")

    def _resolve(arg: str, samples, **kw) -> PredictionSet:
        ...  # load the model, predict on `samples`, return a PredictionSet

    register_source(PredictionSource("checkpoint", _accepts, _resolve,
                                     "a facemark model checkpoint (.ckpt)"))

A resolver receives the evaluated samples and keyword options; it must accept and ignore
options it does not use (``**kw``). Options ``facemark evaluate`` passes: ``train``
(dataset string or list of samples, may be None), ``train_format``, ``crop_rule``,
``skip_bad`` (a SkipLog), ``scheme`` (the evaluated scheme name), ``flip_test``,
``detector`` (None or a face detector name for model sources), ``refine``,
``first_pass_size``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facemark.data.convert import can_convert, convert_samples
from facemark.data.formats import open_dataset
from facemark.data.predictions import SUFFIXES, PredictionSet, read_predictions
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError, DataError, SkipLog
from facemark.evaluation.meanface import MeanFaceBaseline


@dataclass(frozen=True)
class PredictionSource:
    """One kind of SOURCE argument.

    Args:
        name: registry key (shown in error messages and ``--help``).
        accepts: ``accepts(arg) -> bool``, cheap (no file reading beyond a stat).
        resolve: ``resolve(arg, samples, **kw) -> PredictionSet``.
        help: one line describing what the argument looks like.
    """

    name: str
    accepts: Callable[[str], bool]
    resolve: Callable[..., PredictionSet]
    help: str = ""


SOURCES: dict[str, PredictionSource] = {}


def register_source(source: PredictionSource, *, before: str | None = None) -> PredictionSource:
    """Add a kind of source; ``before`` puts it ahead of an existing kind in the lookup order."""
    if source.name in SOURCES:
        raise ValueError(f"prediction source {source.name!r} is registered twice")
    if before is None:
        SOURCES[source.name] = source
        return source
    if before not in SOURCES:
        raise KeyError(f"no prediction source {before!r}; known: {', '.join(SOURCES)}")
    items = list(SOURCES.items())
    pos = [k for k, _ in items].index(before)
    items.insert(pos, (source.name, source))
    SOURCES.clear()
    SOURCES.update(items)
    return source


def split_named(arg: str) -> tuple[str | None, str]:
    """``"name=path"`` -> ("name", "path"); a plain argument -> (None, arg).

    The name may hold letters, digits, ``_ . + -`` (so paths with ``=`` in a folder name
    still work when they contain a ``/``).
    """
    head, sep, tail = arg.partition("=")
    if sep and head and tail and all(c.isalnum() or c in "_.+-" for c in head):
        return head, tail
    return None, arg


def resolve_predictions(arg: str, samples: Sequence, **kw) -> PredictionSet:
    """Turn one SOURCE argument into a PredictionSet (see the module docstring).

    Args:
        arg: the argument, optionally ``name=...`` (the name becomes the method name).
        samples: the evaluated samples.
        **kw: options for the resolvers (``train``, ``crop_rule``, ...).

    Raises:
        ConfigError: no kind of source accepts the argument (lists the kinds).
    """
    name, value = split_named(arg)
    for source in SOURCES.values():
        if source.accepts(value):
            pset = source.resolve(value, samples, **{**kw, "name": name})
            if name:
                pset.method = name
            return pset
    kinds = "; ".join(f"{s.name}: {s.help}" for s in SOURCES.values())
    raise ConfigError(f"SOURCE {arg!r} is not a prediction source I know ({kinds})")


# ---------------------------------------------------------------------------------------
# Built-in kinds
# ---------------------------------------------------------------------------------------
def _file_accepts(arg: str) -> bool:
    return Path(arg).suffix.lower() in SUFFIXES


def _file_resolve(arg: str, samples, *, scheme: str | None = None, **kw) -> PredictionSet:
    pset = read_predictions(arg, scheme=scheme)
    if not pset.method:
        pset.method = Path(arg).stem
    return pset


def _meanface_accepts(arg: str) -> bool:
    return arg == "meanface"


def _meanface_resolve(arg: str, samples, *, train=None, train_format: str | None = None,
                      crop_rule: str | None = None, skip_bad: SkipLog | bool = False,
                      **kw) -> PredictionSet:
    if train is None:
        raise ConfigError("SOURCE meanface needs training faces: give --train DATASET")
    log = skip_bad if isinstance(skip_bad, SkipLog) else SkipLog(bool(skip_bad))
    if isinstance(train, (str, Path)):
        train = open_dataset(train, format=train_format, skip_bad=log)
    labelled = []
    for s in train:
        if s.landmarks is None:
            log(DataError(s.source or s.image, "training face has no landmarks (unlabelled)"))
            continue
        labelled.append(s)
    train = _to_scheme_of(labelled, samples)
    try:
        model = MeanFaceBaseline(crop_rule=crop_rule or "300w").fit(train)
    except KeyError as e:  # unknown crop rule
        raise ConfigError(f"--crop-rule: {e.args[0]}") from None
    except ValueError as e:
        raise ConfigError(f"--train: {e}") from None
    return model.predict(samples)


def _to_scheme_of(train: list, samples) -> list:
    """Training faces converted to the evaluated faces' scheme where they differ and a
    conversion exists (``--convert-to``: the mean face of the converted training points)."""
    if not train or not samples:
        return train
    target = get_scheme(samples[0].scheme)
    if all(get_scheme(s.scheme).name == target.name for s in train) or \
            not all(can_convert(s.scheme, target) for s in train):
        return train      # same scheme, or MeanFaceBaseline reports the mismatch
    return convert_samples(train, target)


register_source(PredictionSource("file", _file_accepts, _file_resolve,
                                 "a .json or .csv prediction file"))
register_source(PredictionSource("meanface", _meanface_accepts, _meanface_resolve,
                                 "the word 'meanface' (needs --train DATASET)"))
