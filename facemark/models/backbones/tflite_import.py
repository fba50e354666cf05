"""ImageNet MobileNetV2 weights from TensorFlow Lite classifiers, as a torchvision state dict.

No float ImageNet checkpoint can be downloaded everywhere facemark trains, but 8-bit
MobileNetV2 classifiers in TensorFlow Lite format often can (for example google-coral's
``tf2_mobilenet_v2_1.0_224_ptq.tflite``, int8 post-training quantised, and
``mobilenet_v2_1.0_224_quant.tflite``, uint8 quantisation-aware trained).
:func:`mobilenet_v2_state_dict_from_tflite` turns one into a state dict with torchvision's
MobileNetV2 names (``features.*`` and ``classifier.1.*``), which
:func:`facemark.models.backbones.load_backbone_weights` loads into ``mobilenet_v2``. The
flatbuffer is parsed with the ``tflite`` package (``pip install 'facemark[imagenet]'``).

What the conversion does, and what it cannot undo:

* **Dequantisation.** Weights are ``scale * (q - zero_point)``, per tensor or per output
  channel; biases (int32) likewise. The 8-bit rounding of the weights stays (it is the
  information the file holds); the 8-bit rounding of activations is not reproduced, so the
  result is the float network that the quantised one approximates.
* **Layouts.** Convolutions OHWI -> torch OIHW; depthwise 1HWC -> (C, 1, H, W); the
  classifier's 1x1 convolution (or fully connected layer) -> ``classifier.1`` (Linear).
* **Graph order.** The 52 feature convolutions and the classifier are matched to facemark's
  modules in execution order, and each is checked: kind (depthwise or not), shape, stride,
  dilation, fused activation (ReLU6 where torchvision has ReLU6, none on the linear
  projections) and where the residual ADDs are. Anything else raises a ``DataError``
  naming the file.
* **Input convention.** TF MobileNets take ``x_tf = 2 * rgb - 1`` (rgb in [0, 1]); facemark
  feeds ``x = (rgb - mean) / std`` (ImageNet mean/std). Since ``x_tf = 2 * std * x +
  (2 * mean - 1)``, the stem convolution's weight is multiplied by ``2 * std`` per input
  channel and ``sum W (2 * mean - 1)`` (per output channel) is added to its bias, which goes
  into the stem BatchNorm's ``bias``. At the image border torch pads ``x`` with 0, i.e.
  ``x_tf = 2 * mean - 1`` (a slightly darker grey) where TF pads ``x_tf`` with 0 (mid
  grey); this only touches the outermost output pixels of the stem.
* **Padding.** TF's SAME padding is asymmetric for the five stride-2 layers (no pad at the
  top/left, one at the bottom/right on even sizes); torch's MobileNetV2 pads one on every
  side, so each stride-2 layer samples its input one pixel up-left of where TF does. No
  weight change can undo that, so load these weights into ``mobilenet_v2_tf`` (the same
  parameters, TF's padding: :class:`~facemark.models.backbones.mobilenet.Conv2dSame`). On
  the 66 photos in ``shared/data/photos`` it keeps the 8-bit interpreter's top-1 class on
  95% (mean top-5 overlap 4.68/5), and plain ``mobilenet_v2`` on 24% (2.23/5)
  (``benchmarks/tflite_import_check.py``). Calibration statistics are measured with
  ``mobilenet_v2_tf``. :func:`emulate_tf_padding` makes a model compute the TF graph
  exactly (also TF's padding value at the stem), for checks.
* **Activations.** Every fused activation is checked: ReLU6 after expansions, depthwise
  convolutions, the stem and the last 1x1 layer (int8/uint8 output range [0, 6]), none
  after projections, as in torchvision's MobileNetV2.
* **Folded batch norm.** A TFLite convolution is ``W' x + b'`` with BN folded in; the
  original ``W``, ``gamma``, ``beta`` and running statistics cannot be recovered. Each
  convolution becomes ``conv`` + ``BatchNorm2d`` whose eval output is exactly ``W' x + b'``:

  - with ``calibration_images`` (real photos), the float network runs on them and each
    convolution's output ``W' x`` gets its per-channel mean ``mu`` and standard deviation
    ``sigma``; then ``conv.weight = W' / sigma``, ``running_mean = mu / sigma``,
    ``running_var = 1 - eps``, ``weight (gamma) = sigma``, ``bias (beta) = mu + b'``. Eval
    output is unchanged, and in training mode the batch statistics of such images are
    close to the running ones (mean ``mu / sigma``, variance about 1), so a network
    fine-tuned with batch statistics starts from (nearly) the ImageNet function.
    ``sigma`` is floored at ``DEAD_CHANNEL_FRACTION`` of the layer's median ``sigma``
    (channels that are constant, e.g. with all-zero weights), which keeps eval output exact
    and bounds what batch statistics can amplify in such channels.
  - without, ``conv.weight = W'``, ``gamma = 1``, ``beta = b'``, running statistics
    ``(0, 1 - eps)``: exact in eval mode, but batch statistics (training mode) differ a lot
    from the running ones, so training-mode BN rescales every channel to unit variance.
    Prefer calibrated weights (``facemark weights import-tflite SRC -o OUT.pth
    --calibration PHOTOS``) for fine-tuning with BatchNorm in training mode.

* **Classes.** TF-slim/Keras-hub MobileNets have 1001 outputs: class 0 is "background" and
  ImageNet class ``i`` (torchvision's order) is output ``i + 1``. The background row is
  dropped, so ``classifier.1`` has torchvision's 1000 classes in torchvision's order (a
  labels file with the background line: line ``i + 1`` names class ``i``). Dropping one
  logit does not change the ranking of the others. A 1000-output classifier is kept as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from facemark.data.images import IMAGE_EXTENSIONS, read_image
from facemark.errors import DataError
from facemark.io import atomic_write_bytes
from facemark.models.backbones.mobilenet import Conv2dSame, mobilenet_v2_tf
from facemark.models.model import IMAGENET_MEAN, IMAGENET_STD

#: sigma of a channel is floored at this fraction of its layer's median sigma (see module doc).
DEAD_CHANNEL_FRACTION = 1e-2
#: TF MobileNet input convention: ``x_tf = TF_INPUT_SCALE * rgb + TF_INPUT_SHIFT``, rgb in [0, 1].
TF_INPUT_SCALE, TF_INPUT_SHIFT = 2.0, -1.0
IMAGENET_CLASSES = 1000

# TensorFlow Lite schema enums (schema.fbs), kept here so that the names read in messages.
_TENSOR_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                  6: np.bool_, 7: np.int16, 9: np.int8, 10: np.float64}
_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}
_PADDINGS = {0: "same", 1: "valid"}
_CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Operators that pass a tensor on unchanged in the float network (or only reshape / pool it
# for the classifier), walked through when matching the graph.
_PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "MEAN", "AVERAGE_POOL_2D")


@dataclass
class TFLiteOp:
    """One operator of a TFLite graph, with float weights in torch layout where it has any.

    Attributes:
        index: position in the subgraph's operator list (execution order).
        name: builtin operator name, e.g. ``"CONV_2D"``.
        inputs, outputs: tensor indices (-1 for an omitted optional input).
        weight: float32; ``CONV_2D`` (O, I, kh, kw), ``DEPTHWISE_CONV_2D`` (C, 1, kh, kw),
            ``FULLY_CONNECTED`` (O, I); None for other operators.
        bias: float32 (O,), zeros where the file has none.
        stride, dilation: (h, w).
        padding: ``"same"`` or ``"valid"``.
        activation: fused activation: ``"none"``, ``"relu"``, ``"relu6"``, ...
        groups: input channels for depthwise convolutions, else 1.
    """

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "valid"
    activation: str = "none"
    groups: int = 1


@dataclass
class TFLiteGraph:
    """The first subgraph of a ``.tflite`` file, dequantised (see :func:`read_tflite_graph`)."""

    path: Path
    ops: list[TFLiteOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def producer(self) -> dict[int, TFLiteOp]:
        """Tensor index -> the operator that writes it."""
        return {t: op for op in self.ops for t in op.outputs}


@dataclass
class ImportSummary:
    """What :func:`import_tflite_weights` did, for printing."""

    source: Path
    out: Path | None
    layers: int
    classes: int
    dropped_background: bool
    calibration_images: int
    floored_channels: int
    seconds: float


def _import_tflite(path: Path):
    try:
        import tflite  # noqa: F401 (the schema bindings; imported only for .tflite files)
    except ImportError as e:
        raise DataError(path, f"reading TensorFlow Lite weights needs the optional 'tflite' "
                              f"package ({e}): pip install 'facemark[imagenet]' "
                              f"(or pip install tflite)") from None
    return tflite


def _operator_names(tflite) -> dict[int, str]:
    ops = tflite.BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def _options(tflite, op, cls_name: str):
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


class _Reader:
    """Flatbuffer access: constants (dequantised) and shapes of tensors."""

    def __init__(self, path: Path, buf: bytes, tflite):
        self.path, self.buf, self.tflite = path, buf, tflite
        get_root = getattr(tflite.Model, "GetRootAs", None) or tflite.Model.GetRootAsModel
        self.model = get_root(buf, 0)
        if self.model.SubgraphsLength() < 1:
            raise DataError(path, "TensorFlow Lite file has no subgraph")
        self.graph = self.model.Subgraphs(0)
        self.dequantized: dict[int, np.ndarray] = {}  # outputs of DEQUANTIZE on constants

    def shape(self, t: int) -> tuple[int, ...]:
        return tuple(int(s) for s in self.graph.Tensors(t).ShapeAsNumpy()) \
            if self.graph.Tensors(t).ShapeLength() else ()

    def raw(self, t: int) -> np.ndarray | None:
        """The constant data of tensor ``t`` as stored (None if it is not a constant)."""
        tensor = self.graph.Tensors(t)
        buffer = self.model.Buffers(tensor.Buffer())
        if buffer is None:
            return None
        if buffer.DataLength():
            data = buffer.DataAsNumpy().tobytes()
        elif getattr(buffer, "Offset", lambda: 0)() > 1:  # big models: data after the flatbuffer
            data = self.buf[buffer.Offset():buffer.Offset() + buffer.Size()]
        else:
            return None
        dtype = _TENSOR_DTYPES.get(tensor.Type())
        if dtype is None:
            raise DataError(self.path, f"tensor {t} ({tensor.Name().decode(errors='replace')}): "
                                       f"unsupported TensorFlow Lite type {tensor.Type()}")
        return np.frombuffer(data, dtype=dtype).reshape(self.shape(t)).copy()

    def constant(self, t: int) -> np.ndarray | None:
        """Tensor ``t`` as float32 (dequantised), or None where it is computed at run time."""
        if t < 0:
            return None
        if t in self.dequantized:
            return self.dequantized[t]
        q = self.raw(t)
        if q is None:
            return None
        if q.dtype.kind == "f":
            return q.astype(np.float32)
        quant = self.graph.Tensors(t).Quantization()
        if quant is None or quant.ScaleLength() == 0:
            return q.astype(np.float32)  # an integer constant (shapes, axes)
        scale = quant.ScaleAsNumpy().astype(np.float64)
        zero = (quant.ZeroPointAsNumpy().astype(np.float64) if quant.ZeroPointLength()
                else np.zeros_like(scale))
        if scale.size > 1:  # per channel along the quantised dimension
            shape = [1] * q.ndim
            shape[quant.QuantizedDimension()] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        return ((q.astype(np.float64) - zero) * scale).astype(np.float32)


def read_tflite_graph(path: str | Path) -> TFLiteGraph:
    """Parse a ``.tflite`` file's first subgraph; weights dequantised to float32, torch layout.

    Raises:
        DataError naming ``path``: missing ``tflite`` package, missing file, not a TFLite
            flatbuffer, or an unsupported tensor type.
    """
    path = Path(path)
    tflite = _import_tflite(path)
    if not path.is_file():
        raise DataError(path, "TensorFlow Lite file not found")
    buf = path.read_bytes()
    if len(buf) < 8 or not tflite.Model.ModelBufferHasIdentifier(buf, 0):
        raise DataError(path, "not a TensorFlow Lite model (no 'TFL3' flatbuffer identifier)")
    names = _operator_names(tflite)
    try:
        reader = _Reader(path, buf, tflite)
        graph = reader.graph
        ops: list[TFLiteOp] = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = reader.model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            entry = TFLiteOp(i, name, tuple(int(t) for t in op.InputsAsNumpy()),
                             tuple(int(t) for t in op.OutputsAsNumpy()))
            if name == "DEQUANTIZE":
                value = reader.constant(entry.inputs[0])
                if value is not None:
                    reader.dequantized[entry.outputs[0]] = value
            elif name in _CONVOLUTIONS:
                _read_convolution(reader, op, entry)
            elif name in ("ADD", "AVERAGE_POOL_2D"):
                opts = _options(tflite, op, "AddOptions" if name == "ADD" else "Pool2DOptions")
                if opts is not None:
                    entry.activation = _ACTIVATIONS.get(opts.FusedActivationFunction(), "?")
            ops.append(entry)
        return TFLiteGraph(path, ops, tuple(int(t) for t in graph.InputsAsNumpy()),
                           tuple(int(t) for t in graph.OutputsAsNumpy()))
    except DataError:
        raise
    except Exception as e:  # a corrupt flatbuffer fails in many ways
        raise DataError(path, f"cannot parse the TensorFlow Lite model "
                              f"({type(e).__name__}: {str(e)[:200]})") from None


def _read_convolution(reader: _Reader, op, entry: TFLiteOp) -> None:
    name, tflite = entry.name, reader.tflite
    weight = reader.constant(entry.inputs[1])
    if weight is None:
        raise DataError(reader.path, f"operator {entry.index} ({name}): its weights are not a "
                                     f"constant tensor")
    bias = reader.constant(entry.inputs[2]) if len(entry.inputs) > 2 else None
    if name == "FULLY_CONNECTED":
        opts = _options(tflite, op, "FullyConnectedOptions")
    else:
        opts = _options(tflite, op, "Conv2DOptions" if name == "CONV_2D"
                        else "DepthwiseConv2DOptions")
        entry.stride = (opts.StrideH(), opts.StrideW())
        entry.dilation = (opts.DilationHFactor(), opts.DilationWFactor())
        entry.padding = _PADDINGS.get(opts.Padding(), "?")
    if opts is not None:
        entry.activation = _ACTIVATIONS.get(opts.FusedActivationFunction(), "?")
    if name == "CONV_2D":  # OHWI -> OIHW
        weight = weight.transpose(0, 3, 1, 2)
    elif name == "DEPTHWISE_CONV_2D":  # 1HW(C*multiplier) -> (C*multiplier, 1, H, W)
        weight = weight.transpose(3, 0, 1, 2)
        in_shape = reader.shape(entry.inputs[0])
        entry.groups = in_shape[-1] if in_shape else weight.shape[0]
    entry.weight = np.ascontiguousarray(weight, dtype=np.float32)
    entry.bias = (np.zeros(weight.shape[0], np.float32) if bias is None
                  else bias.reshape(-1).astype(np.float32))


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF SAME padding (before, after) of one spatial dimension (Conv2dSame's rule)."""
    return Conv2dSame._pad(size, kernel, stride, dilation)


@torch.no_grad()
def run_float_graph(graph: TFLiteGraph, x_tf: Tensor, padding: str = "same",
                    softmax: bool = False) -> Tensor:
    """Run the dequantised graph in float32 with torch ops: a reference for the conversion.

    Covers the operators of MobileNet-style classifiers (convolutions, ADD, global MEAN /
    AVERAGE_POOL_2D, RESHAPE, SOFTMAX; QUANTIZE and DEQUANTIZE pass values on).

    Args:
        x_tf: (N, 3, H, W) input in the model's own convention (TF MobileNets: [-1, 1]).
        padding: ``"same"`` (TF's, asymmetric for stride 2) or ``"symmetric"``
            (``(k - 1) // 2`` on every side, as torch's MobileNetV2).
        softmax: apply the graph's final SOFTMAX (default: return the logits).

    Returns:
        The graph output, NCHW for maps, (N, classes) after RESHAPE.
    """
    import torch.nn.functional as F

    values: dict[int, Tensor] = {graph.inputs[0]: x_tf.float()}
    for op in graph.ops:
        if op.inputs[0] not in values:  # DEQUANTIZE of a constant: already in op.weight
            continue
        x = values[op.inputs[0]]
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            y = x
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = torch.from_numpy(op.weight)
            kh, kw = w.shape[2:]
            if op.padding == "valid":
                pads = (0, 0, 0, 0)
            elif padding == "same":
                top, bottom = _same_padding(x.shape[2], kh, op.stride[0], op.dilation[0])
                left, right = _same_padding(x.shape[3], kw, op.stride[1], op.dilation[1])
                pads = (left, right, top, bottom)
            elif padding == "symmetric":
                ph, pw = (kh - 1) // 2 * op.dilation[0], (kw - 1) // 2 * op.dilation[1]
                pads = (pw, pw, ph, ph)
            else:
                raise ValueError(f"padding: expected 'same' or 'symmetric', got {padding!r}")
            y = F.conv2d(F.pad(x, pads), w, torch.from_numpy(op.bias), op.stride, 0,
                         op.dilation, op.groups)
        elif op.name == "FULLY_CONNECTED":
            y = F.linear(x.flatten(1), torch.from_numpy(op.weight), torch.from_numpy(op.bias))
        elif op.name == "ADD":
            y = x + values[op.inputs[1]]
        elif op.name in ("MEAN", "AVERAGE_POOL_2D"):
            y = x.mean((2, 3), keepdim=True)
        elif op.name in ("RESHAPE", "SQUEEZE"):
            y = x.flatten(1)
        elif op.name == "SOFTMAX":
            y = x.softmax(1) if softmax else x
        else:
            raise DataError(graph.path, f"{_describe(op)}: not supported by the float reference")
        if op.activation == "relu6":
            y = y.clamp(0, 6)
        elif op.activation == "relu":
            y = y.clamp_min(0)
        elif op.activation != "none":
            raise DataError(graph.path, f"{_describe(op)}: fused activation {op.activation!r} "
                                        f"not supported by the float reference")
        values[op.outputs[0]] = y
    return values[graph.outputs[0]]


def emulate_tf_padding(backbone: nn.Module) -> list:
    """Make a facemark MobileNetV2 pad its stride-2 convolutions like TF (for checks).

    Sets their ``padding`` to 0 and pads in a forward pre-hook instead: TF SAME padding
    (asymmetric), and for the stem the value TF pads with (``x_tf = 0``, i.e. rgb 0.5 after
    ImageNet normalisation). With an imported state dict the backbone then computes what
    the TFLite float graph computes (``run_float_graph(..., padding="same")``). The
    architecture itself is unchanged, so this is for verification, not for training.

    Returns:
        The hook handles (``handle.remove()`` undoes the hooks, not the ``padding``).
    """
    import torch.nn.functional as F

    mean, std = _imagenet_mean_std()
    stem_value = torch.as_tensor((0.5 - mean) / std, dtype=torch.float32).view(1, 3, 1, 1)
    handles = []
    for name, conv in backbone.named_modules():
        if not isinstance(conv, nn.Conv2d) or conv.stride == (1, 1):
            continue
        value = stem_value if conv.in_channels == 3 and conv.groups == 1 else None

        def hook(module, args, value=value):
            x = args[0]
            top, bottom = _same_padding(x.shape[2], module.kernel_size[0], module.stride[0],
                                        module.dilation[0])
            left, right = _same_padding(x.shape[3], module.kernel_size[1], module.stride[1],
                                        module.dilation[1])
            if value is None:
                return (F.pad(x, (left, right, top, bottom)),)
            return (F.pad(x - value, (left, right, top, bottom)) + value,)

        conv.padding = (0, 0)
        handles.append(conv.register_forward_pre_hook(hook))
    return handles


# --------------------------------------------------------------------------------------
# Matching the graph to facemark's MobileNetV2


@dataclass
class _Layer:
    conv: str                 # facemark module name of the nn.Conv2d
    norm: str                 # its BatchNorm2d
    op: TFLiteOp
    weight: np.ndarray        # float64 W' (torch layout)
    bias: np.ndarray          # float64 b'


def _expected_layers(model: nn.Module) -> list[tuple[str, str, nn.Conv2d, bool]]:
    """(conv name, norm name, conv, followed by ReLU6) for facemark's MobileNetV2 features."""
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        parent, last = name.rsplit(".", 1)
        container = model.get_submodule(parent)
        k = int(last)
        relu6 = len(container) > k + 2 and isinstance(container[k + 2], nn.ReLU6)
        out.append((name, f"{parent}.{k + 1}", module, relu6))
    return out


def _residual_blocks(model: nn.Module) -> set[str]:
    """Conv names that end a block with a residual connection."""
    ends = set()
    for name, module in model.named_modules():
        if getattr(module, "use_res_connect", False):
            last = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)][-1]
            ends.add(f"{name}.{last}")
    return ends


def _describe(op: TFLiteOp) -> str:
    return f"operator {op.index} ({op.name})"


def _match_mobilenet_v2(graph: TFLiteGraph, model: nn.Module) -> tuple[list[_Layer], TFLiteOp]:
    """Pair the graph's convolutions with facemark's modules, checking the architecture."""
    path = graph.path
    expected = _expected_layers(model)
    convs = [op for op in graph.ops if op.name in _CONVOLUTIONS]
    not_mbv2 = "is not a MobileNetV2 (width 1.0) ImageNet classifier"
    if len(convs) != len(expected) + 1:
        raise DataError(path, f"{not_mbv2}: expected {len(expected) + 1} convolutions "
                              f"({len(expected)} feature layers + classifier), found {len(convs)}")
    layers = []
    for (conv_name, norm_name, conv, relu6), op in zip(expected, convs):
        where = f"{_describe(op)} for facemark's {conv_name}"
        want_kind = "DEPTHWISE_CONV_2D" if conv.groups > 1 else "CONV_2D"
        problems = []
        if op.name != want_kind:
            problems.append(f"is {op.name}, expected {want_kind}")
        elif op.weight.shape != tuple(conv.weight.shape):
            problems.append(f"has weight shape {op.weight.shape}, expected "
                            f"{tuple(conv.weight.shape)}")
        if op.stride != tuple(conv.stride) or op.dilation != (1, 1):
            problems.append(f"has stride {op.stride} dilation {op.dilation}, expected stride "
                            f"{tuple(conv.stride)} dilation (1, 1)")
        if op.activation != ("relu6" if relu6 else "none"):
            problems.append(f"has fused activation {op.activation!r}, expected "
                            f"{'relu6' if relu6 else 'none'!r}")
        if op.padding != "same":
            problems.append(f"has {op.padding!r} padding, expected 'same'")
        if problems:
            raise DataError(path, f"{not_mbv2}: {where} {'; '.join(problems)}")
        layers.append(_Layer(conv_name, norm_name, op, op.weight.astype(np.float64),
                             op.bias.astype(np.float64)))
    classifier = convs[-1]
    w = classifier.weight
    if (w.ndim not in (2, 4) or (w.ndim == 4 and w.shape[2:] != (1, 1))
            or w.shape[1] != expected[-1][2].out_channels
            or w.shape[0] not in (IMAGENET_CLASSES, IMAGENET_CLASSES + 1)
            or classifier.activation != "none"):
        raise DataError(path, f"{not_mbv2}: the classifier ({_describe(classifier)}) has weight "
                              f"shape {w.shape} and activation {classifier.activation!r}; "
                              f"expected a 1x1 convolution or fully connected layer "
                              f"{expected[-1][2].out_channels} -> 1000 or 1001, no activation")
    _check_connections(graph, layers, classifier, _residual_blocks(model))
    return layers, classifier


def _check_connections(graph: TFLiteGraph, layers: list[_Layer], classifier: TFLiteOp,
                       residual_ends: set[str]) -> None:
    """Each layer reads the previous one's output (through one ADD after residual blocks)."""
    path, producer = graph.path, graph.producer()
    owner = {layer.op.index: layer.conv for layer in layers}

    def source(tensor: int) -> tuple[int | None, set[str]]:
        """(index of the convolution feeding ``tensor``, names of the residual ends added)."""
        added: set[str] = set()
        for _ in range(len(graph.ops)):
            op = producer.get(tensor)
            if op is None:
                return None, added
            if op.name in _CONVOLUTIONS:
                return op.index, added
            if op.name == "ADD":
                if op.activation != "none":
                    raise DataError(path, f"{_describe(op)}: residual ADD with fused "
                                          f"activation {op.activation!r}, expected none")
                feeders = [producer.get(t) for t in op.inputs]
                # the block's projection is the latest convolution feeding the ADD (the
                # other input is the block's input, itself a convolution or an ADD)
                convs = sorted(f.index for f in feeders
                               if f is not None and f.name in _CONVOLUTIONS)
                if not convs:
                    return None, added
                added.add(owner.get(convs[-1], "?"))
                return convs[-1], added
            if op.name not in _PASS_THROUGH:
                return None, added
            tensor = op.inputs[0]
        return None, added

    chain = [layer.op for layer in layers] + [classifier]
    found_residuals: set[str] = set()
    for prev, op in zip([None] + chain[:-1], chain):
        feeder, added = source(op.inputs[0])
        if (prev is None and feeder is not None) or (prev is not None and feeder != prev.index):
            got = "the graph input" if feeder is None else f"operator {feeder}"
            want = "the graph input" if prev is None else f"operator {prev.index}"
            raise DataError(path, f"is not a MobileNetV2 (width 1.0) ImageNet classifier: "
                                  f"{_describe(op)} reads from {got}, expected {want}")
        found_residuals |= added
    if found_residuals != residual_ends:
        raise DataError(path, f"is not a MobileNetV2 (width 1.0) ImageNet classifier: residual "
                              f"connections after {sorted(found_residuals)}, expected after "
                              f"{sorted(residual_ends)}")


# --------------------------------------------------------------------------------------
# Conversion


def _imagenet_mean_std() -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(IMAGENET_MEAN, np.float64), np.asarray(IMAGENET_STD, np.float64)


def _adapt_stem(layer: _Layer) -> None:
    """Make the stem take ImageNet-normalised input instead of TF's [-1, 1] (module doc)."""
    mean, std = _imagenet_mean_std()
    shift = TF_INPUT_SCALE * mean + TF_INPUT_SHIFT            # x_tf = scale*std*x + shift
    layer.bias = layer.bias + np.einsum("oihw,i->o", layer.weight, shift)
    layer.weight = layer.weight * (TF_INPUT_SCALE * std)[None, :, None, None]


def _plain_state(layers: list[_Layer], model: nn.Module) -> dict[str, Tensor]:
    """Uncalibrated unfolding: gamma 1, running statistics (0, 1 - eps), beta b'."""
    state: dict[str, Tensor] = {}
    for layer in layers:
        norm = model.get_submodule(layer.norm)
        c = layer.weight.shape[0]
        state[f"{layer.conv}.weight"] = torch.from_numpy(layer.weight.astype(np.float32))
        state[f"{layer.norm}.weight"] = torch.ones(c)
        state[f"{layer.norm}.bias"] = torch.from_numpy(layer.bias.astype(np.float32))
        state[f"{layer.norm}.running_mean"] = torch.zeros(c)
        state[f"{layer.norm}.running_var"] = torch.full((c,), 1.0 - norm.eps)
        state[f"{layer.norm}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _imagenet_normalise(images: Tensor) -> Tensor:
    mean, std = _imagenet_mean_std()
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


@torch.no_grad()
def _conv_output_stats(model: nn.Module, layers: list[_Layer], images: Tensor,
                       batch_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and (biased) standard deviation of each convolution's output."""
    sums: dict[str, list] = {}
    hooks = []
    for layer in layers:
        def hook(_module, _inputs, output, key=layer.conv):
            acc = sums.setdefault(key, [0, 0.0, 0.0])
            acc[0] += output.numel() // output.shape[1]
            acc[1] = acc[1] + output.sum((0, 2, 3), dtype=torch.float64)
            acc[2] = acc[2] + output.square().sum((0, 2, 3), dtype=torch.float64)
        hooks.append(model.get_submodule(layer.conv).register_forward_hook(hook))
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(_imagenet_normalise(images[start:start + batch_size].float()))
    finally:
        for h in hooks:
            h.remove()
    stats = {}
    for key, (n, s, ss) in sums.items():
        mu = (s / n).numpy()
        var = np.maximum((ss / n).numpy() - mu * mu, 0.0)
        stats[key] = (mu, np.sqrt(var))
    return stats


def _calibrate(state: dict[str, Tensor], layers: list[_Layer], stats, model: nn.Module) -> int:
    """Rescale conv + BN so that batch statistics match the running ones; returns the
    number of channels whose sigma was floored."""
    floored = 0
    for layer in layers:
        mu, sigma = stats[layer.conv]
        floor = max(DEAD_CHANNEL_FRACTION * float(np.median(sigma)), 1e-8)
        s = np.maximum(sigma, floor)
        floored += int((sigma < floor).sum())
        norm = model.get_submodule(layer.norm)
        w = layer.weight / s[:, None, None, None]
        state[f"{layer.conv}.weight"] = torch.from_numpy(w.astype(np.float32))
        state[f"{layer.norm}.weight"] = torch.from_numpy(s.astype(np.float32))
        state[f"{layer.norm}.bias"] = torch.from_numpy((mu + layer.bias).astype(np.float32))
        state[f"{layer.norm}.running_mean"] = torch.from_numpy((mu / s).astype(np.float32))
        state[f"{layer.norm}.running_var"] = torch.full((len(s),), 1.0 - norm.eps)
    return floored


def read_calibration_images(source: str | Path | Sequence[str | Path], size: int = 224,
                            crop_fraction: float = 0.875, limit: int | None = None) -> Tensor:
    """Photos as a float tensor (N, 3, size, size), RGB in [0, 1].

    Each image is cut to its central square, of which the central ``crop_fraction`` is
    kept (TF's ImageNet evaluation crop), and resized to ``size`` (area interpolation).

    Args:
        source: a folder (its images, sorted by name) or a list of image files.
        limit: use at most this many images (the first ones).

    Raises:
        DataError: an unreadable image, or a folder without images.
    """
    import cv2

    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise DataError(folder, "calibration images: not a folder")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise DataError(folder, f"calibration images: no image files "
                                    f"({', '.join(IMAGE_EXTENSIONS)}) in the folder")
    else:
        paths = [Path(p) for p in source]
    if limit is not None:
        paths = paths[:limit]
    out = np.empty((len(paths), size, size, 3), np.float32)
    for i, p in enumerate(paths):
        img = read_image(p)
        h, w = img.shape[:2]
        side = max(1, int(round(min(h, w) * crop_fraction)))
        top, left = (h - side) // 2, (w - side) // 2
        crop = img[top:top + side, left:left + side]
        out[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) / 255.0
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _convert(path: str | Path, calibration_images, batch_size: int = 8
             ) -> tuple[dict[str, Tensor], ImportSummary]:
    import time

    started = time.perf_counter()
    path = Path(path)
    graph = read_tflite_graph(path)
    model = mobilenet_v2_tf()   # statistics measured with the padding the weights expect
    layers, classifier = _match_mobilenet_v2(graph, model)
    _adapt_stem(layers[0])
    state = _plain_state(layers, model)
    floored, n_images = 0, 0
    if calibration_images is not None:
        images = calibration_images
        if not isinstance(images, Tensor):
            images = read_calibration_images(images)
        if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
            raise ValueError(f"calibration_images: expected a (N, 3, H, W) RGB tensor in [0, 1] "
                             f"with N >= 1, got shape {tuple(images.shape)}")
        n_images = len(images)
        model.load_state_dict(state, strict=True)
        stats = _conv_output_stats(model, layers, images, batch_size)
        floored = _calibrate(state, layers, stats, model)
    w = classifier.weight.reshape(classifier.weight.shape[0], -1)
    b = classifier.bias
    drop = w.shape[0] == IMAGENET_CLASSES + 1
    if drop:  # class 0 is "background"; output i + 1 is ImageNet class i
        w, b = w[1:], b[1:]
    state["classifier.1.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
    state["classifier.1.bias"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
    summary = ImportSummary(path, None, len(layers), w.shape[0], drop, n_images, floored,
                            time.perf_counter() - started)
    return state, summary


def mobilenet_v2_state_dict_from_tflite(
        path: str | Path,
        calibration_images: Tensor | str | Path | Iterable[str | Path] | None = None,
) -> dict[str, Tensor]:
    """A torchvision MobileNetV2 state dict (``features.*``, ``classifier.1.*``, 1000 classes)
    from a MobileNetV2 (width 1.0) ImageNet classifier in TensorFlow Lite format.

    The result expects ImageNet-normalised RGB input, as facemark's ``LandmarkModel`` and
    torchvision feed it; see the module documentation for how folded batch norm, TF's
    input range, SAME padding and the background class are handled.

    Args:
        path: the ``.tflite`` file.
        calibration_images: photos to measure each layer's output statistics on, for a
            BatchNorm that behaves in training mode too: a tensor (N, 3, H, W) of RGB in
            [0, 1] (not normalised), a folder of images or a list of image files (read by
            :func:`read_calibration_images`, 224 px). None: data-free fallback (gamma 1).

    Raises:
        DataError naming ``path``: missing ``tflite`` package, not a TFLite file, or not a
            MobileNetV2 classifier (the first mismatching operator is named).
    """
    return _convert(path, calibration_images)[0]


def save_state_dict(state: dict[str, Tensor], path: str | Path) -> Path:
    """``torch.save`` ``state`` to ``path`` atomically (temporary file, then rename).

    Raises:
        DataError: ``path`` cannot be written (the old file, if any, is kept).
    """
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def import_tflite_weights(source: str | Path, out: str | Path,
                          calibration: str | Path | Sequence[str | Path] | None = None,
                          calibration_limit: int | None = None) -> ImportSummary:
    """Convert ``source`` (.tflite) and write the state dict to ``out`` (.pth), atomically.

    Args:
        calibration: a folder of photos or a list of image files (see
            :func:`mobilenet_v2_state_dict_from_tflite`); None for the data-free fallback.
        calibration_limit: use at most this many calibration images.
    """
    images = None
    if calibration is not None:
        images = read_calibration_images(calibration, limit=calibration_limit)
    state, summary = _convert(source, images)
    summary.out = save_state_dict(state, out)
    return summary


__all__ = [
    "DEAD_CHANNEL_FRACTION", "ImportSummary", "TFLiteGraph", "TFLiteOp", "emulate_tf_padding",
    "import_tflite_weights",
    "mobilenet_v2_state_dict_from_tflite", "read_calibration_images", "read_tflite_graph",
    "run_float_graph", "save_state_dict",
]
