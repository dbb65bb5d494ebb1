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

A channel with a slope a >= 1 is concave, which a sum of a line and a Relu cannot be;
its negation is not: -PRelu(y) = -y + max((1-a)*y, 0), the same two convolutions with
-W and (1-a)*W. Such channels are computed negated, and the sign is folded into every
Conv that reads the PRelu's output (its weights for that input channel times -1), so
the graph's result is unchanged. That needs every reader to be a Conv with its own
weights; otherwise, and for Convs whose output feeds anything besides the PRelu, the
layer is left as it is.
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

    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    weights: dict[str, np.ndarray] = {}  # conv weights changed by a folded sign, by name

    def array(name: str) -> np.ndarray:
        return weights[name] if name in weights else \
            numpy_helper.to_array(init[name]).astype(np.float32)

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
        w = array(conv.input[1])
        slope = numpy_helper.to_array(init[prelu.input[1]]).astype(np.float32)
        # One slope, or one per channel of an N×C×H×W tensor (shape C×1×1 or 1×C×1×1;
        # a plain [C] would broadcast along the width, not the channels).
        per_channel = slope.shape in ((w.shape[0], 1, 1), (1, w.shape[0], 1, 1))
        if w.ndim != 4 or not (slope.size == 1 or per_channel):
            continue
        a = np.broadcast_to(slope.reshape(-1), (w.shape[0],)).astype(np.float32)
        concave = a >= 1
        if concave.any() and not _can_fold_sign(prelu.output[0], consumers, readers, init):
            continue
        sign = np.where(concave, -1.0, 1.0).astype(np.float32)
        lin = np.where(concave, -1.0, a).astype(np.float32)  # = sign * a below 1, -1 above
        b = array(conv.input[2]) if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        for reader in consumers.get(prelu.output[0], []) if concave.any() else []:
            weights[reader.input[1]] = _flip_inputs(array(reader.input[1]), sign, reader)
        stem = f"{prelu.output[0]}__split"
        tensors = {f"{stem}_w_lin": w * lin[:, None, None, None], f"{stem}_b_lin": b * lin,
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
    for t in graph.initializer:  # the readers' weights with a folded sign
        if t.name in weights:
            t.CopyFrom(numpy_helper.from_array(weights[t.name], t.name))
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


def _can_fold_sign(tensor: str, consumers: dict[str, list[onnx.NodeProto]],
                   readers: dict[str, int], init: dict[str, onnx.TensorProto]) -> bool:
    """Whether a sign per channel of ``tensor`` can move into everything that reads it:
    only Convs read it (not a graph output), each reading it as its input and owning its
    weights (an initializer no other node reads)."""
    nodes = consumers.get(tensor, [])
    if not nodes or readers.get(tensor) != len(nodes):
        return False
    return all(n.op_type == "Conv" and n.input[0] == tensor and tensor not in n.input[1:]
               and n.input[1] in init and readers.get(n.input[1]) == 1 for n in nodes)


def _flip_inputs(w: np.ndarray, sign: np.ndarray, conv: onnx.NodeProto) -> np.ndarray:
    """``conv``'s weights (Cout × Cin/group × kh × kw) with input channel c times
    ``sign[c]``: the same output for an input whose channel c was multiplied by it."""
    group = next((int(a.i) for a in conv.attribute if a.name == "group"), 1)
    per_group_in, per_group_out = w.shape[1], w.shape[0] // group
    out = w.copy()
    for c in np.flatnonzero(sign < 0):
        g, local = divmod(int(c), per_group_in)
        out[g * per_group_out : (g + 1) * per_group_out, local] *= -1
    return out


def for_cpu(blob: bytes) -> tuple[bytes, int]:
    """The serialized model with its PRelu split (see above), and how many were split."""
    model = onnx.load_from_string(blob)
    if not any(n.op_type == "PRelu" for n in model.graph.node):
        return blob, 0
    rewritten, done = split_prelu(model)
    return (rewritten.SerializeToString(), done) if done else (blob, 0)
