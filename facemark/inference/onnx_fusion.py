"""Fold zero ``Pad`` nodes into the ``Conv`` that reads them, in an exported ONNX graph.

TensorFlow's ``SAME`` padding (``mobilenet_v2_tf``, whose ImageNet weights come from
TensorFlow Lite) pads a stride-2 layer's even input by one pixel at the bottom and right
only; PyTorch's ``Conv2d`` pads symmetrically, so :class:`~facemark.models.backbones.
mobilenet.Conv2dSame` pads explicitly and the export holds a ``Pad`` before each of those
convolutions. ONNX's ``Conv`` takes begin and end pads of its own
(``pads = [top, left, bottom, right]``), so each such pair is one ``Conv``: onnxruntime then
runs the whole backbone in its blocked (NCHWc) layout instead of reordering the tensor
around every ``Pad`` (about a sixth of the time of the shipped default model).

Only a ``Pad`` in ``constant`` mode with value 0, padding the two spatial axes of a 4-D
tensor, whose output feeds that one ``Conv`` alone, is folded; the result is the same
function (the export's parity check runs on the folded graph).
"""
from __future__ import annotations

import numpy as np


def _constant(proto, name: str):
    """The value of tensor ``name`` when it depends on no graph input (initializers and
    constant nodes only: the TorchScript exporter computes pad amounts with small
    Constant/Reshape/Slice/Cast chains), evaluated with ONNX's reference evaluator; None
    when it depends on an input."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    inputs = {i.name for i in graph.input} - set(initializers)
    needed, used, stack = [], set(), [name]
    while stack:
        tensor = stack.pop()
        if tensor in inputs:
            return None
        node = producer.get(tensor)
        if node is None or id(node) in used:
            continue
        used.add(id(node))
        needed.append(node)
        stack.extend(t for t in node.input if t)
    order = [n for n in graph.node if id(n) in used]            # graph order is topological
    inits = [initializers[t] for n in order for t in n.input if t in initializers]
    if name in initializers:
        inits.append(initializers[name])
    sub = helper.make_model(
        helper.make_graph(order, "constant", [], [helper.make_tensor_value_info(name, 0, None)],
                          initializer=list({i.name: i for i in inits}.values())),
        opset_imports=list(proto.opset_import))
    try:
        return ReferenceEvaluator(sub).run(None, {})[0]
    except Exception:                      # an op the reference evaluator lacks: leave it
        return None


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def fuse_pads_into_convs(proto) -> int:
    """Fold each foldable ``Pad -> Conv`` pair of ``proto`` (an ``onnx.ModelProto``, edited in
    place) into the ``Conv``'s ``pads``. Returns the number of ``Pad`` nodes removed."""
    from onnx import helper

    graph = proto.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    removed = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            continue
        conv = users[0]
        mode = _attribute(pad, "mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            continue
        if len(pad.input) > 3 and pad.input[3]:
            continue                                     # explicit axes (opset 18+): leave it
        amounts = _constant(proto, pad.input[1]) if len(pad.input) > 1 else None
        if amounts is None or amounts.shape != (8,):
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = _constant(proto, pad.input[2])
            if value is None or np.any(value != 0):
                continue
        amounts = [int(a) for a in amounts]               # N, C, H, W begins; then ends
        if any(amounts[i] != 0 for i in (0, 1, 4, 5)) or min(amounts) < 0:
            continue
        if _attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        old = list(_attribute(conv, "pads", [0, 0, 0, 0]))
        new = [old[0] + amounts[2], old[1] + amounts[3], old[2] + amounts[6], old[3] + amounts[7]]
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend(kept + [helper.make_attribute("pads", new)])
        conv.input[0] = pad.input[0]
        removed.append(pad)
    for pad in removed:
        graph.node.remove(pad)
    return len(removed)
