"""Does the TFLite -> torch MobileNetV2 import classify photos as the TFLite model does?

For each ``.tflite`` file, every photo (central 87.5% square, 224 px, uint8) is classified
by (a) the TFLite interpreter itself (``ai-edge-litert``, ``tflite-runtime`` or TensorFlow,
whichever imports; the int8/uint8 model as shipped) and (b) torchvision's MobileNetV2
forward (facemark's ``mobilenet_v2`` features -> global average pool -> dropout -> Linear)
with the imported state dict, on ImageNet-normalised input. Per photo it prints both top-1
classes, whether they are equal and how many of the top-5 classes the two share, then the
means. Two more comparisons separate the causes of disagreement: the dequantised float
graph with TF's SAME padding (``run_float_graph``) against the interpreter (8-bit
activations) and against torch (symmetric padding). Rankings come from logits (the
interpreter's pre-softmax tensor), class 0 "background" dropped.

``--train-mode`` also checks BatchNorm in training mode: weights calibrated on the even-
numbered photos, torch's top-1 with batch statistics on the odd-numbered ones (one batch)
against its eval top-1, for calibrated and uncalibrated (gamma 1) weights.

    pip install ai-edge-litert   # the interpreter; not a facemark dependency
    PYTHONPATH=. python benchmarks/tflite_import_check.py --train-mode
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DEFAULT_FILES = [SHARED / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite",
                 SHARED / "weights" / "mobilenet_v2_1.0_224_quant.tflite"]


def _interpreter_class():
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
            return mod.Interpreter, module
        except ImportError:
            continue
    return None, None


def interpreter_logits(path: Path, images_u8: np.ndarray) -> np.ndarray | None:
    """(N, classes) pre-softmax logits from the TFLite interpreter, dequantised."""
    Interpreter, _ = _interpreter_class()
    if Interpreter is None:
        return None
    with warnings.catch_warnings():  # "for debugging purposes only": this is debugging
        warnings.simplefilter("ignore")
        it = Interpreter(model_path=str(path), num_threads=1,
                         experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    ops = it._get_ops_details()
    softmax = [op for op in ops if op["op_name"] == "SOFTMAX"]
    logit_index = int(softmax[-1]["inputs"][0]) if softmax else it.get_output_details()[0]["index"]
    detail = next(t for t in it.get_tensor_details() if t["index"] == logit_index)
    scale, zero = detail["quantization"]
    out = []
    for img in images_u8:
        x = img[None]
        if inp["dtype"] == np.int8:
            x = (x.astype(np.int16) - 128).astype(np.int8)
        elif inp["dtype"] == np.float32:
            x = x.astype(np.float32) / 127.5 - 1.0
        it.set_tensor(inp["index"], x)
        it.invoke()
        q = it.get_tensor(logit_index).reshape(-1).astype(np.float64)
        out.append((q - zero) * scale if scale else q)
    return np.stack(out)


def torch_classifier(state: dict, arch: str = "mobilenet_v2"):
    """torchvision MobileNetV2's forward on facemark's backbone ``arch`` (``mobilenet_v2``:
    symmetric padding; ``mobilenet_v2_tf``: TensorFlow's SAME padding)."""
    import torch
    from torch import nn

    from facemark.models.backbones import create_backbone

    backbone = create_backbone(arch)
    backbone.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")})
    linear = state["classifier.1.weight"]
    model = nn.Sequential(backbone, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(0.2),
                          nn.Linear(linear.shape[1], linear.shape[0]))
    with torch.no_grad():
        model[4].weight.copy_(linear)
        model[4].bias.copy_(state["classifier.1.bias"])
    return model.eval()


def _top(logits: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ta, tb = _top(a, 5), _top(b, 5)
    same1 = ta[:, 0] == tb[:, 0]
    overlap = np.array([len(set(x) & set(y)) for x, y in zip(ta, tb)])
    return same1, overlap


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES, help=".tflite files")
    p.add_argument("--photos", type=Path, default=SHARED / "data" / "photos")
    p.add_argument("--labels", type=Path, default=SHARED / "weights" / "imagenet_labels.txt",
                   help="class names, one a line, 'background' first")
    p.add_argument("--train-mode", action="store_true",
                   help="also check BatchNorm with batch statistics (see above)")
    p.add_argument("--quiet", action="store_true", help="no per-photo lines")
    args = p.parse_args(argv)

    import torch

    from facemark.data.images import IMAGE_EXTENSIONS
    from facemark.errors import FacemarkError
    from facemark.models.backbones.tflite_import import (
        _convert, _imagenet_normalise, read_calibration_images,
        read_tflite_graph, run_float_graph)

    torch.set_num_threads(1)
    labels = args.labels.read_text().splitlines() if args.labels.is_file() else None
    if labels and len(labels) == 1001:
        labels = labels[1:]  # drop "background": line i now names torch class i

    def name(i: int) -> str:
        return labels[i].split(",")[0] if labels else str(i)

    photos = sorted(q for q in args.photos.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
    images = read_calibration_images(photos)  # float [0, 1] after resize
    images = (images * 255).round() / 255  # on the uint8 grid the interpreter sees
    images_u8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    _, interp_name = _interpreter_class()
    print(f"{len(photos)} photos from {args.photos}; "
          f"interpreter: {interp_name or 'none installed'}")
    try:
        for path in args.files:
            started = time.perf_counter()
            state, summary = _convert(path, None)
            seconds = time.perf_counter() - started
            model = torch_classifier(state)
            tf_padded = torch_classifier(state, "mobilenet_v2_tf")
            with torch.no_grad():
                torch_logits = model(_imagenet_normalise(images)).numpy()
                tf_padded_logits = tf_padded(_imagenet_normalise(images)).numpy()
            graph = read_tflite_graph(path)
            ref = run_float_graph(graph, 2 * images - 1, padding="same").numpy()
            ref = ref[:, 1:] if ref.shape[1] == 1001 else ref
            interp = interpreter_logits(path, images_u8)
            if interp is not None and interp.shape[1] == 1001:
                interp = interp[:, 1:]
            print(f"\n## {path.name} (conversion {seconds:.2f} s without calibration)")
            target = interp if interp is not None else ref
            target_name = "interpreter" if interp is not None else "float reference (SAME)"
            same1, overlap = _agreement(torch_logits, target)
            if not args.quiet:
                print(f"| photo | {target_name} top-1 | torch top-1 | top-1 equal "
                      f"| top-5 overlap |")
                print("|---|---|---|:---:|---:|")
                t_top, o_top = _top(target, 1)[:, 0], _top(torch_logits, 1)[:, 0]
                for i, ph in enumerate(photos):
                    print(f"| {ph.name} | {name(t_top[i])} | {name(o_top[i])} | "
                          f"{'yes' if same1[i] else 'no'} | {overlap[i]}/5 |")
            rows = [("torch vs " + target_name, torch_logits, target),
                    ("torch mobilenet_v2_tf (TF padding) vs " + target_name, tf_padded_logits, target)]
            if interp is not None:
                rows += [("float reference (SAME) vs interpreter", ref, interp),
                         ("torch vs float reference (SAME)", torch_logits, ref)]
            print("\n| comparison | top-1 agreement | mean top-5 overlap |")
            print("|---|---:|---:|")
            for label, a, b in rows:
                s1, ov = _agreement(a, b)
                print(f"| {label} | {s1.sum()}/{len(s1)} ({s1.mean():.0%}) | {ov.mean():.2f}/5 |")
            print(f"largest logit difference, torch mobilenet_v2_tf vs float reference "
                  f"(SAME): {np.abs(tf_padded_logits - ref).max():.2e} (logits up to "
                  f"{np.abs(ref).max():.1f})")
            if args.train_mode:
                _train_mode(path, images, photos, _convert, torch_classifier, _imagenet_normalise)
    except FacemarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _train_mode(path, images, photos, convert, make_classifier, normalise) -> None:
    import torch

    calib, held = images[0::2], images[1::2]
    print(f"\nBatchNorm in training mode (batch statistics of {len(held)} held-out photos; "
          f"calibration on the other {len(calib)}):")
    print("| weights | top-1 = eval top-1 | mean top-5 overlap | floored channels | conversion |")
    print("|---|---:|---:|---:|---:|")
    for label, cal in (("uncalibrated (gamma 1)", None), ("calibrated", calib)):
        started = time.perf_counter()
        state, summary = convert(path, cal)
        seconds = time.perf_counter() - started
        model = make_classifier(state, "mobilenet_v2_tf")
        x = normalise(held)
        with torch.no_grad():
            eval_logits = model(x).numpy()
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.train()  # batch statistics; dropout stays off
            train_logits = model(x).numpy()
        s1, ov = _agreement(train_logits, eval_logits)
        print(f"| {label} | {s1.sum()}/{len(s1)} ({s1.mean():.0%}) | {ov.mean():.2f}/5 | "
              f"{summary.floored_channels} | {seconds:.1f} s |")


if __name__ == "__main__":
    sys.exit(main())
