"""``facemark analyze``: the papers' analyses on trained models.

    facemark analyze grid s16=a.ckpt s32=b.ckpt s64=c.ckpt --data DATASET --out DIR   # Fig. 7
    facemark analyze heads pip=a.ckpt coord=b.ckpt map=c.ckpt --data A [--data B] --out DIR # Fig. 12
    facemark analyze prior a.ckpt [--images DIR] --out DIR                              # Fig. 9
    facemark analyze similarity brute.ckpt --out DIR       # SepBN Eq. 2 / Fig. 4: BN branches
    facemark analyze oracle brute.ckpt --data DATASET --out DIR   # SepBN Table II best-of-K
    facemark analyze oracle brute.ckpt --data DATASET --convert-to my24.yaml   # another markup

Each prints a table and writes it as Markdown plus a PNG into --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from facemark.errors import ConfigError, SkipLog
from facemark.io import atomic_write_text, markdown_table


def register(sub) -> None:
    p = sub.add_parser("analyze", help="the paper's analyses: grid accuracy, heads, implicit prior",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, helptext in (("grid", "grid-classification accuracy of score maps vs stride"),
                           ("heads", "NME and Point-Var of several models on one or more "
                                     "test sets")):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("models", nargs="+", metavar="[NAME=]MODEL", help=".ckpt or .pt files")
        if name == "heads":
            a.add_argument("--data", required=True, action="append", metavar="[NAME=]DATA",
                           help="labelled test dataset (path or FORMAT:PATH); repeat it for "
                                "several test sets, one group of bars each")
        else:
            a.add_argument("--data", required=True,
                           help="labelled test dataset (path or FORMAT:PATH)")
        a.add_argument("--out", default=None, help="folder for the table (.md) and figure (.png)")
        a.add_argument("--skip-bad", action="store_true")
        a.set_defaults(handler=run_grid if name == "grid" else run_heads)
    a = actions.add_parser("prior", help="predictions on images without faces (implicit prior)")
    a.add_argument("models", nargs="+", metavar="[NAME=]MODEL")
    a.add_argument("--images", default=None, help="folder of face-free pictures to add")
    a.add_argument("--out", default=None)
    a.set_defaults(handler=run_prior)
    a = actions.add_parser("similarity", help="SepBN Eq. 2 / Fig. 4: cosine similarity of the "
                                              "BN branches' statistics vs affine parameters")
    a.add_argument("models", nargs="+", metavar="[NAME=]MODEL",
                   help="models with sepbn_brute, mixbn or sepbn layers")
    a.add_argument("--out", default=None)
    a.set_defaults(handler=run_similarity)
    a = actions.add_parser("oracle", help="SepBN Table II: best-of-K test of a brute-force "
                                          "SepBN model (an oracle: picks by the ground truth)")
    a.add_argument("models", nargs=1, metavar="[NAME=]MODEL", help="a sepbn_brute model")
    a.add_argument("--data", required=True, help="labelled test dataset (path or FORMAT:PATH)")
    a.add_argument("--convert-to", default=None, metavar="SCHEME",
                   help="convert the dataset's ground truth to this scheme first (a name or "
                        "a scheme file), as 'facemark evaluate --convert-to'")
    a.add_argument("--out", default=None)
    a.add_argument("--skip-bad", action="store_true")
    a.set_defaults(handler=run_oracle)


def _named(values: list[str]) -> list[tuple[str | None, str]]:
    """``NAME=VALUE`` arguments -> (NAME or None, VALUE)."""
    from facemark.evaluation.sources import split_named

    return [split_named(v) for v in values]


def _models(args):
    from facemark.models.model_file import load_model

    out = {}
    for name, path in _named(args.models):
        out[name or Path(path).stem] = load_model(path)
    return out


def _test_sets(args) -> tuple[dict[str, list], SkipLog]:
    """``--data`` as ``{name: annotated faces}``. A repeated ``--data`` (``heads``) takes
    ``NAME=DATA``, else a set is named by its file or folder."""
    from facemark.data.formats import open_dataset, split_spec

    log = SkipLog(args.skip_bad)
    pairs = _named(args.data) if isinstance(args.data, list) else [(None, args.data)]
    sets = {}
    for name, spec in pairs:
        name = name or Path(split_spec(spec)[1]).name
        if name in sets:
            raise ConfigError(f"--data: two test sets named {name!r}; name them (NAME=DATA)")
        sets[name] = [s for s in open_dataset(spec, skip_bad=log) if s.landmarks is not None]
        if not sets[name]:
            raise ConfigError(f"--data {spec}: no annotated faces")
    return sets, log


def _samples(args):
    """The faces of the one ``--data`` set, and the SkipLog."""
    sets, log = _test_sets(args)
    return next(iter(sets.values())), log


def _write(args, stem: str, markdown: str, plot) -> None:
    print(markdown)
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / f"{stem}.md", markdown + "\n")   # creates the folder
        plot(out / f"{stem}.png")
        print(f"wrote {out / (stem + '.md')} and {out / (stem + '.png')}")


def run_grid(args) -> int:
    from facemark.evaluation.analyses import grid_accuracy

    models = _models(args)
    samples, log = _samples(args)
    rows = []
    for name, (model, info) in models.items():
        try:
            acc = grid_accuracy(model, samples, crop_rule=info.crop_rule,
                                input_size=info.input_size, on_error=log)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None
        stride = info.model_config.get("net_stride")
        rows.append((name, stride, acc))
    md = markdown_table(["model", "net stride", "grid accuracy %"],
                        [[n, s, f"{100 * a:.2f}"] for n, s, a in rows])

    def plot(path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from facemark.evaluation.plots import _save

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(range(len(rows)), [100 * a for _, _, a in rows], "o-")
        ax.set_xticks(range(len(rows)), [f"{n}\n(stride {s})" for n, s, _ in rows], fontsize=8)
        ax.set_ylabel("grid classification accuracy (%)")
        fig.tight_layout()
        _save(fig, path)

    _write(args, "grid_accuracy", md, plot)
    if log.skipped:
        print(log.summary())
    return 0


def run_heads(args) -> int:
    from facemark.evaluation.analyses import compare_heads

    models = _models(args)
    sets, log = _test_sets(args)
    result = compare_heads(models, sets, on_error=log)
    _write(args, "heads", result.to_markdown(), result.plot)
    if log.skipped:
        print(log.summary())
    return 0


def run_prior(args) -> int:
    import numpy as np

    from facemark.evaluation.analyses import implicit_prior, plot_prior, probe_images

    models = _models(args)
    rows = []
    plots = []
    for name, (model, info) in models.items():
        images = probe_images(info.input_size, args.images)
        results = implicit_prior(model, info, images)
        mean = info.model_config.get("mean_face")
        for img, (_, dist) in results.items():
            rows.append([name, img, "n/a" if np.isnan(dist) else f"{100 * dist:.2f}"])
        plots.append((name, results, images, mean))

    def plot(path):
        for name, results, images, mean in plots:
            target = path if len(plots) == 1 else path.with_name(f"{path.stem}_{name}.png")
            plot_prior(results, images, target, mean)

    md = markdown_table(["model", "image", "distance to mean face (% of its eye distance)"],
                        rows, "llr")
    _write(args, "implicit_prior", md, plot)
    return 0


def run_similarity(args) -> int:
    from facemark.evaluation.sepbn import parameter_similarity

    models = _models(args)
    parts, results = [], []
    for name, (model, info) in models.items():
        try:
            result = parameter_similarity(model, info.input_size)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None
        parts.append(f"### {name}\n\n{result.to_markdown()}")
        results.append((name, result))

    def plot(path):
        for name, result in results:
            result.plot(path if len(results) == 1 else path.with_name(f"{path.stem}_{name}.png"))

    _write(args, "bn_similarity", "\n\n".join(parts), plot)
    return 0


def run_oracle(args) -> int:
    from facemark.evaluation.cross_domain import convert_dataset
    from facemark.evaluation.sepbn import best_of_k

    (name, (model, info)), = _models(args).items()
    samples, log = _samples(args)
    samples, notes = convert_dataset(samples, args.convert_to)
    for note in notes:
        print(note)
    try:
        result = best_of_k(model, samples, crop_rule=info.crop_rule, input_size=info.input_size,
                           scheme=info.scheme, on_error=log)
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None
    _write(args, "best_of_k_oracle", f"### {name}\n\n{result.to_markdown()}", result.plot)
    if log.skipped:
        print(log.summary())
    return 0
