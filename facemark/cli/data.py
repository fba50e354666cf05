"""``facemark data``: list schemes, summarise, check, cache and look at datasets.

DATASET arguments go through :func:`facemark.data.formats.open_dataset`: a path, or
``FORMAT:PATH`` (``csv:ytf68/test_frames_keypoints.csv``), with ``?key=value`` options.

    facemark data schemes
    facemark data info ../shared/data/300w/afw
    facemark data check ../shared/data/300w            # exit status 1 if any problem
    facemark data cache ../shared/data/300w/afw ../shared/data/300w/helen -o cache/300w
    facemark data pack ../shared/data/300w/afw -o packed --size 256   # JPEG crops + CSV
    facemark data show cache/300w -o grid.png --augment
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from facemark.cli.arguments import positive_int
from facemark.data.crops import CROP_RULES
from facemark.data.schemes import get_scheme, list_schemes
from facemark.errors import ConfigError, DataError, FacemarkError, SkipLog



def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="list schemes; summarise, check, cache and show datasets",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=lambda args: p.print_help() or 0)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    s = sub.add_parser("schemes", help="table of the landmark schemes facemark knows")
    s.set_defaults(handler=cmd_schemes)

    s = sub.add_parser("info", help="count, scheme, sets and attributes of a dataset")
    s.add_argument("dataset", metavar="DATASET")
    _reading_options(s)
    s.set_defaults(handler=cmd_info)

    s = sub.add_parser("check", help="decode every image and check every point; exit 1 on problems")
    s.add_argument("dataset", metavar="DATASET")
    s.add_argument("--format", help="dataset format (sniffed when not given)")
    s.add_argument("--scheme", help="landmark scheme to check the records against (a name or "
                                    "a scheme file, .yaml/.json)")
    s.add_argument("--tolerance", type=float, default=0.1, metavar="FRACTION",
                   help="how far outside the image a point may lie, as a fraction of the "
                        "image's longer side (default 0.1: faces cut by the border)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(handler=cmd_check)

    s = sub.add_parser("cache", help="cut the faces of one or more datasets into a crop cache")
    s.add_argument("datasets", nargs="+", metavar="DATASET")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="cache folder to create")
    s.add_argument("--size", type=positive_int, default=256, help="crop side in pixels (256)")
    s.add_argument("--crop-rule", default="300w", metavar="RULE",
                   help="how to cut faces: " + ", ".join(_crop_rules()) + " (default 300w)")
    s.add_argument("--context", type=_context, default=1.0, metavar="C",
                   help="store C times the crop's side around each crop (default 1), so "
                        "training augmentation that moves the box shows real image")
    s.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _reading_options(s)
    s.set_defaults(handler=cmd_cache)

    s = sub.add_parser("pack", help="JPEG crops + CSV landmark tables, to train on another "
                                    "machine", description=_PACK_DOC,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("datasets", nargs="+", metavar="DATASET")
    s.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for the packs (one NAME.csv + NAME/ per dataset)")
    s.add_argument("--names", metavar="A,B,...",
                   help="pack names, one per dataset (default: from the dataset paths)")
    s.add_argument("--size", type=positive_int, default=256,
                   help="crop side the packs are for, in pixels (256)")
    s.add_argument("--context", type=_context, default=1.25, metavar="C",
                   help="each image holds C times the crop's side (default 1.25), for "
                        "training augmentation that moves the box")
    s.add_argument("--crop-rule", default="300w", metavar="RULE",
                   help="a landmark crop rule: " + ", ".join(_crop_rules()) + " (default 300w)")
    s.add_argument("--quality", type=int, default=90, help="JPEG quality, 1-100 (90)")
    s.add_argument("--exclude", metavar="LIST",
                   help="leave out the faces of the images listed in this file, one path per "
                        "line (e.g. validation faces from benchmarks/validation_list.py)")
    s.add_argument("--overwrite", action="store_true", help="replace existing packs")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _reading_options(s)
    s.set_defaults(handler=cmd_pack)

    s = sub.add_parser("show", help="PNG grid of faces with their landmarks, to check by eye")
    s.add_argument("source", metavar="DATASET|CACHE")
    s.add_argument("-o", "--output", required=True, metavar="PNG")
    s.add_argument("--n", type=positive_int, default=16, help="number of faces (16)")
    s.add_argument("--augment", nargs="?", const="pipnet", choices=("pipnet", "sepbn"),
                   help="show augmented crops (recipe: pipnet, the default, or sepbn)")
    s.add_argument("--seed", type=int, default=0, help="seed of the augmentation (0)")
    s.add_argument("--size", type=positive_int, default=256,
                   help="crop side for a dataset (a cache keeps its own) (256)")
    s.add_argument("--crop-rule", default="300w", metavar="RULE",
                   help="crop rule for a dataset (default 300w)")
    _reading_options(s)
    s.set_defaults(handler=cmd_show)


def _reading_options(p) -> None:
    p.add_argument("--format", help="dataset format (sniffed when not given)")
    p.add_argument("--scheme", help="landmark scheme: a name or a scheme file (.yaml/.json); "
                                    "the reader's default when not given")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad records (each is listed) instead of stopping at the first")


def _crop_rules() -> list[str]:
    return list(CROP_RULES)


def _check_scheme(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return get_scheme(name).name
    except KeyError as e:
        raise ConfigError(f"--scheme: {e.args[0]}") from None


def _check_rule(name: str) -> str:
    if name not in _crop_rules():
        raise ConfigError(f"--crop-rule: unknown crop rule {name!r}; known rules: "
                          f"{', '.join(_crop_rules())}")
    return name


def _read(spec: str, args, log):
    from facemark.data.formats import open_dataset
    return open_dataset(spec, args.format, scheme=_check_scheme(args.scheme), skip_bad=log)


def _format_name(spec: str, given: str | None) -> str:
    from facemark.data import formats
    fmt, path = formats.split_spec(spec)
    if given or fmt:
        return given or fmt
    split = getattr(formats, "split_options", None)
    if split is not None:
        path = split(path)[0]
    try:
        return formats.detect_format(path)
    except FacemarkError:
        return "?"


# ----------------------------------------------------------------------- schemes
def cmd_schemes(args) -> int:
    rows = [("name", "points", "NME norm", "flip", "aliases", "description")]
    for name in list_schemes():
        s = get_scheme(name)
        rows.append((s.name, str(s.num_points), s.nme_norm,
                     "yes" if getattr(s, "flippable", True) else "no",
                     ", ".join(s.aliases) or "-", s.description))
    print(_table(rows))
    return 0


def _table(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(r[-1]))
    return "\n".join(line.rstrip() for line in lines)


# ----------------------------------------------------------------------- info
def cmd_info(args) -> int:
    import numpy as np

    log = SkipLog(args.skip_bad)
    samples = _read(args.dataset, args, log)
    print(f"dataset: {args.dataset} (format {_format_name(args.dataset, args.format)})")
    if not samples:
        print("faces: 0")
        print(log.summary())
        return 0
    labelled = [s for s in samples if s.landmarks is not None]
    images = {(s.image, s.frame) for s in samples}
    print(f"faces: {len(samples)} ({len(labelled)} labelled, {len(samples) - len(labelled)} "
          f"unlabelled) in {len(images)} images")
    for name, count in Counter(s.scheme for s in samples).most_common():
        sch = get_scheme(name)
        print(f"scheme: {sch.name} ({sch.num_points} points, NME {sch.nme_norm}): {count} faces")
    if labelled:
        missing = sum(int((~np.isfinite(s.landmarks).all(axis=1)).sum()) for s in labelled)
        total = sum(len(s.landmarks) for s in labelled)
        print(f"points not annotated: {missing} of {total}")
    with_box = sum(s.box is not None for s in samples)
    with_vis = [s for s in samples if s.visible is not None]
    occluded = sum(int((~s.visible).sum()) for s in with_vis)
    frames = sum(s.frame is not None for s in samples)
    print(f"face boxes: {with_box} of {len(samples)}; visibility flags: {len(with_vis)} faces"
          f"{f' ({occluded} points occluded)' if with_vis else ''}; video frames: {frames}")
    values: dict[str, Counter] = {}
    for s in samples:
        for key, value in s.attributes.items():
            values.setdefault(key, Counter())[_short(value)] += 1
    for key, counter in values.items():
        label = "sets" if key == "set" else f"attribute {key}"
        if len(counter) > 12:
            examples = ", ".join(v for v, _ in counter.most_common(3))
            print(f"{label}: {len(counter)} distinct values over {sum(counter.values())} faces "
                  f"(e.g. {examples})")
        else:
            print(f"{label}: " + ", ".join(f"{v} {n}" for v, n in counter.most_common()))
    print(log.summary())
    return 0


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


# ----------------------------------------------------------------------- check
def cmd_check(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from facemark.data.images import read_image

    if not args.tolerance >= 0:
        raise ConfigError(f"--tolerance: expected a fraction >= 0, got {args.tolerance}")
    log = SkipLog(True)
    samples = _read(args.dataset, args, log)
    problems = [str(e) for e in log.skipped]
    by_image: dict[tuple, list] = {}
    for s in samples:
        by_image.setdefault((s.image, s.frame), []).append(s)
    for (image, frame), group in tqdm(by_image.items(), desc="checking images", unit="image",
                                      disable=args.no_progress):
        try:
            h, w = read_image(image, frame).shape[:2]
        except DataError as e:
            where = ", ".join(sorted({s.source for s in group if s.source}))
            problems.append(f"{e}" + (f" (annotation {where})" if where else ""))
            continue
        for s in group:
            problems += _point_problems(s, w, h, args.tolerance, np)
    for line in problems:
        print(line)
    n_bad = len(problems)
    print(f"checked {len(samples)} faces in {len(by_image)} images: "
          f"{'no problems' if not n_bad else f'{n_bad} problem(s)'}", file=sys.stderr)
    return 1 if n_bad else 0


def _point_problems(s, w: int, h: int, tolerance: float, np) -> list[str]:
    where = s.source or s.image
    out = []
    names = get_scheme(s.scheme).names
    margin = tolerance * max(w, h)
    if s.landmarks is not None:
        pts = s.landmarks
        for i in np.flatnonzero(np.isinf(pts).any(axis=1)):
            out.append(f"{where}: point {i} ({names[i]}) is infinite: {pts[i].tolist()}")
        for i in np.flatnonzero(np.isnan(pts).any(axis=1) & ~np.isnan(pts).all(axis=1)):
            out.append(f"{where}: point {i} ({names[i]}) has one NaN coordinate: {pts[i].tolist()}")
        fin = np.isfinite(pts).all(axis=1)
        lo = np.array([-0.5, -0.5]) - margin
        hi = np.array([w - 0.5, h - 0.5]) + margin
        outside = fin & ((pts < lo) | (pts > hi)).any(axis=1)
        for i in np.flatnonzero(outside):
            x, y = pts[i]
            by = max(-0.5 - x, x - (w - 0.5), -0.5 - y, y - (h - 0.5))
            out.append(f"{where}: point {i} ({names[i]}) at ({x:.1f}, {y:.1f}) lies {by:.0f} px "
                       f"outside the {w}x{h} image {s.image}")
    if s.box is not None:
        x1, y1, x2, y2 = (float(v) for v in s.box)
        if not np.isfinite(s.box).all() or x2 <= x1 or y2 <= y1:
            out.append(f"{where}: bad face box {s.box.tolist()} (need x1 < x2, y1 < y2)")
        elif x1 < -margin or y1 < -margin or x2 > w + margin or y2 > h + margin:
            out.append(f"{where}: face box {np.round(s.box, 1).tolist()} lies outside the "
                       f"{w}x{h} image {s.image}")
    return out


# ----------------------------------------------------------------------- cache
def _context(text: str) -> float:
    from facemark.data.cache import MAX_CONTEXT

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1.0 <= value <= MAX_CONTEXT:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to {MAX_CONTEXT:g}, "
                                         f"got {text!r}")
    return value


def cmd_cache(args) -> int:
    from facemark.data.cache import build_cache

    _check_rule(args.crop_rule)
    log = SkipLog(args.skip_bad)
    samples = []
    for spec in args.datasets:
        part = _read(spec, args, log)
        if not part:
            raise DataError(spec, "dataset has no usable faces")
        samples += part
    schemes = sorted({s.scheme for s in samples})
    if len(schemes) > 1:
        raise DataError(" + ".join(args.datasets), f"datasets of different landmark schemes "
                                                   f"({', '.join(schemes)}): one cache holds one scheme")
    cache = build_cache(samples, args.output, size=args.size, rule=args.crop_rule, skip_bad=log,
                        progress=not args.no_progress, overwrite=args.overwrite,
                        scheme=_check_scheme(args.scheme), source=" + ".join(args.datasets),
                        context=args.context)
    around = f", {cache.context:g}x context around {cache.crop_size} px crops" \
        if cache.context != 1.0 else ""
    print(f"wrote {len(cache)} crops of {cache.size}x{cache.size} ({cache.scheme}, crop rule "
          f"{args.crop_rule}{around}) to {cache.path}")
    from_landmarks = sum(r["crop_from"] == "landmarks" for r in cache.records)
    rule_source = cache.meta["crop_rule"]["source"]
    if rule_source == "box" and from_landmarks:
        print(f"note: {from_landmarks} faces have no face box; they were cut around their "
              f"landmarks with the {args.crop_rule} rule's scale")
    unlabelled = int((~cache.labelled).sum())
    if unlabelled:
        print(f"unlabelled crops (no landmarks): {unlabelled}")
    print(log.summary())
    return 0


# ----------------------------------------------------------------------- pack
_PACK_DOC = """Cut labelled faces into JPEG crops and a CSV landmark table per dataset, which a
training config reads as csv:DIR/NAME.csv on a machine without the original images:

    facemark data pack ../shared/data/300w/afw ../shared/data/300w/helen/trainset \\
        -o packed --size 256 --context 1.25 --quality 85

Each image is the crop rule's box enlarged C times, at round(size * C) pixels; a config with
the same crop rule, data.input_size = size and data.context <= C cuts the same crops from
the pack. Faces must have every point annotated. See facemark/data/pack.py.
"""


def _pack_names(specs: list[str], given: str | None) -> list[str]:
    import re

    from facemark.data import formats

    if given:
        names = [n.strip() for n in given.split(",")]
        if len(names) != len(specs):
            raise ConfigError(f"--names: {len(names)} names for {len(specs)} datasets")
    else:
        names = []
        for spec in specs:
            path = Path(formats.split_options(formats.split_spec(spec)[1])[0])
            parts = [p for p in path.with_suffix("").parts[-2:] if p not in ("/", "..", ".")]
            names.append(re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(parts)).strip("._") or "pack")
    if len(set(names)) != len(names):
        raise ConfigError(f"pack names repeat ({', '.join(names)}): give --names")
    return names


def cmd_pack(args) -> int:
    from facemark.data.pack import exclude_images, pack_faces, read_list

    _check_rule(args.crop_rule)
    names = _pack_names(args.datasets, args.names)
    excluded = read_list(args.exclude) if args.exclude else set()
    log = SkipLog(args.skip_bad)
    rows = []
    for spec, name in zip(args.datasets, names):
        samples = _read(spec, args, log)
        kept = exclude_images(samples, excluded)
        if not kept:
            raise DataError(spec, "no face to pack" + (f" once {args.exclude} is left out"
                                                       if excluded else ""))
        result = pack_faces(kept, args.output, name, size=args.size, rule=args.crop_rule,
                            context=args.context, quality=args.quality, skip_bad=log,
                            progress=not args.no_progress, overwrite=args.overwrite,
                            source=spec)
        rows.append([f"csv:{result.csv}", str(result.count), str(len(samples) - len(kept)),
                     str(len(result.skipped)), f"{result.bytes / 2 ** 20:.1f}"])
    print(_table([["pack", "faces", "excluded", "skipped", "MB"], *rows]))
    print(f"total {sum(float(r[4]) for r in rows):.1f} MB of {round(args.size * args.context)} px "
          f"JPEG crops (quality {args.quality}) for {args.size} px training crops")
    print(log.summary())
    return 0


# ----------------------------------------------------------------------- show
def cmd_show(args) -> int:
    import cv2
    import numpy as np

    from facemark.data.cache import CropCache, crop_sample, is_cache
    from facemark.data.images import read_image
    from facemark.inference.draw import draw_grid

    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise ConfigError(f"-o/--output: expected a .png file name, got {str(output)!r}")
    log = SkipLog(args.skip_bad)
    tiles = []                   # (image uint8 (S, S, 3), points (N, 2) crop px, caption)
    if is_cache(args.source):
        cache = CropCache.open(args.source)
        scheme = cache.landmark_scheme
        for i in _spread(len(cache), args.n):
            tiles.append((np.asarray(cache.image(i)), cache.landmarks[i],
                          Path(cache.records[i]["image"]).name))
        size = cache.size
    else:
        _check_rule(args.crop_rule)
        samples = _read(args.source, args, log)
        if not samples:
            raise DataError(args.source, "dataset has no usable faces")
        scheme = get_scheme(samples[0].scheme)
        size = args.size
        for i in _spread(len(samples), args.n):
            s = samples[i]
            try:
                crop, _, pts, _ = crop_sample(s, read_image(s.image, s.frame), size, args.crop_rule)
            except DataError as e:
                log(e)
                continue
            tiles.append((crop, pts, s.name))
    if not tiles:
        raise DataError(args.source, "no face could be shown")
    if args.augment:
        from facemark.data.augment import Augment
        aug = getattr(Augment, args.augment)(scheme, size)
        out = []
        for k, (img, pts, caption) in enumerate(tiles):
            img, pts, _ = aug(img, pts, np.random.default_rng((args.seed, k)))
            out.append((img, pts, caption + " (aug)"))
        tiles = out
    grid = draw_grid(tiles, scheme)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        ok = cv2.imwrite(str(output), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    except (OSError, cv2.error) as e:
        raise DataError(output, f"cannot write the PNG ({str(e).strip().splitlines()[-1]})") from None
    if not ok:
        raise DataError(output, "cannot write the PNG (is the folder writable?)")
    print(f"wrote {len(tiles)} faces to {output}")
    if log.skipped:
        print(log.summary())
    return 0


def _spread(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them if n >= total)."""
    import numpy as np
    if n >= total:
        return list(range(total))
    return sorted({int(round(v)) for v in np.linspace(0, total - 1, n)})
