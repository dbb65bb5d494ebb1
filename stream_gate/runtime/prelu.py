"""Rewrite Conv -> PRelu into two convolutions that onnxruntime's CPU kernels fuse.

onnxruntime (1.17-1.32) runs PRelu with a per-channel slope as a generic broadcast
outside its blocked (NCHWc) convolution layout, reordering the tensor out of and back
into that layout around it: on the quality model (MobileFaceNet, 17 PRelu) that is
about 80 % of the CPU time, the convolutions themselves under 20 %. For a slope
a < 1 (negative ones too) and y = Conv(x; W, b), with the slope applied per output channel:

    PRelu(y) = a*y + (1 - a)*max(y, 0) = Conv(x; a*W, a*b) + Relu(Conv(x; (1-a)*W, (1-a)*b))

because max((1-a)*y, 0) = (1-a)*max(y, 0) when 1 - a > 0. Both convolutions read the
same input; onnxruntime fuses the Relu into one and the Add into the other, so the
whole activation runs inside its convolution kernels. Exact up to float rounding.
Convs whose output feeds anything besides the PRelu, and layers with a slope of 1 or
more (1 - a <= 0: the Relu term would need a minus sign), are left as they are.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def split_prelu(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every eligible Conv -> PRelu pair rewritten; and how many."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    init = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    for o in graph.output:
        readers[o.name] = readers.get(o.name, 0) + 1

    replace: dict[int, list[onnx.NodeProto]] = {}  # node position -> nodes in its place
    drop: set[int] = set()
    position = {id(n): k for k, n in enumerate(graph.node)}
    done = 0
    for k, prelu in enumerate(graph.node):
        if prelu.op_type != "PRelu" or prelu.input[1] not in init:
            continue
        conv = producer.get(prelu.input[0])
        if conv is None or conv.op_type != "Conv" or readers.get(prelu.input[0]) != 1 \
                or conv.input[1] not in init or (len(conv.input) > 2 and conv.input[2] not in init):
            continue
        w = numpy_helper.to_array(init[conv.input[1]]).astype(np.float32)
        slope = numpy_helper.to_array(init[prelu.input[1]]).astype(np.float32)
        # One slope, or one per channel of an N×C×H×W tensor (shape C×1×1 or 1×C×1×1;
        # a plain [C] would broadcast along the width, not the channels).
        per_channel = slope.shape in ((w.shape[0], 1, 1), (1, w.shape[0], 1, 1))
        if w.ndim != 4 or not (slope.size == 1 or per_channel) \
                or slope.max() >= 1:
            continue
        a = np.broadcast_to(slope.reshape(-1), (w.shape[0],)).astype(np.float32)
        b = numpy_helper.to_array(init[conv.input[2]]).astype(np.float32) \
            if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        stem = f"{prelu.output[0]}__split"
        tensors = {f"{stem}_w_lin": w * a[:, None, None, None], f"{stem}_b_lin": b * a,
                   f"{stem}_w_pos": w * (1 - a)[:, None, None, None],
                   f"{stem}_b_pos": b * (1 - a)}
        graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in tensors.items())
        attrs = list(conv.attribute)
        lin = helper.make_node("Conv", [conv.input[0], f"{stem}_w_lin", f"{stem}_b_lin"],
                               [f"{stem}_lin"], name=f"{stem}_conv_lin")
        pos = helper.make_node("Conv", [conv.input[0], f"{stem}_w_pos", f"{stem}_b_pos"],
                               [f"{stem}_pos"], name=f"{stem}_conv_pos")
        lin.attribute.extend(attrs)
        pos.attribute.extend(attrs)
        relu = helper.make_node("Relu", [f"{stem}_pos"], [f"{stem}_relu"], name=f"{stem}_relu")
        add = helper.make_node("Add", [f"{stem}_lin", f"{stem}_relu"], [prelu.output[0]],
                               name=f"{stem}_add")
        drop.add(position[id(conv)])
        replace[k] = [lin, pos, relu, add]
        done += 1
    if not done:
        return out, 0
    nodes: list[onnx.NodeProto] = []
    for k, n in enumerate(graph.node):
        if k in drop:
            continue
        nodes += replace.get(k, [n])
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out, done


def for_cpu(blob: bytes) -> tuple[bytes, int]:
    """The serialized model with its PRelu split (see above), and how many were split."""
    model = onnx.load_from_string(blob)
    if not any(n.op_type == "PRelu" for n in model.graph.node):
        return blob, 0
    rewritten, done = split_prelu(model)
    return (rewritten.SerializeToString(), done) if done else (blob, 0)
