"""Average the landmarks of several prediction files face by face (a model ensemble).

The files must hold the same faces in the same order, as ``facemark evaluate ...
--save-predictions`` writes them for one ``--data`` list. The result is a prediction file
that ``facemark evaluate`` reads back as a SOURCE::

    facemark evaluate d=facemark/weights/default.pt a=facemark/weights/accurate.pt \\
        --data /tmp/val/300w.txt --out /tmp/ens --save-predictions
    python benchmarks/average_predictions.py /tmp/ens/predictions/d.json \\
        /tmp/ens/predictions/a.json --out /tmp/ens/both.json
    facemark evaluate both=/tmp/ens/both.json --data /tmp/val/300w.txt
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from facemark.data.predictions import (PredictedFace, PredictionSet, read_predictions,
                                       write_predictions)
from facemark.errors import DataError


def average(sets: list[PredictionSet], method: str = "average") -> PredictionSet:
    """The face-by-face mean of the points of ``sets`` (same faces, same order, one scheme).

    Raises:
        ValueError: the sets differ in scheme, length or the image/frame of a face.
    """
    first = sets[0]
    for s in sets[1:]:
        if s.scheme != first.scheme or len(s) != len(first):
            raise ValueError(f"{s.path}: {len(s)} faces of {s.scheme}, but {first.path} has "
                             f"{len(first)} of {first.scheme}")
    faces = []
    for i, face in enumerate(first.faces):
        group = [s.faces[i] for s in sets]
        for s, f in zip(sets, group):
            if (f.image, f.frame) != (face.image, face.frame):
                raise ValueError(f"{s.path}: face {i} is {f.image}, but {first.path} has "
                                 f"{face.image}: the files must list the same faces in order")
        points = np.mean([f.points for f in group], axis=0)
        faces.append(PredictedFace(image=face.image, points=points, frame=face.frame))
    return PredictionSet(faces=faces, scheme=first.scheme, method=method, root=first.root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="prediction files (.json/.csv) of the same faces")
    p.add_argument("--out", required=True, help="output prediction file (.json or .csv)")
    p.add_argument("--method", default="average", help="method name to record")
    args = p.parse_args(argv)
    if len(args.files) < 2:
        p.error("name at least two prediction files")
    try:
        result = average([read_predictions(f) for f in args.files], args.method)
    except (ValueError, OSError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_predictions(args.out, result, root=result.root)
    print(f"wrote {args.out}: {len(result)} faces, the mean of {len(args.files)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
