"""PyTorch runtime (``runtime.engine = "torch"``): our ONNX files run as PyTorch graphs.

No converter package is needed (``onnx2torch`` pulls torchvision and a CUDA build of
torch): :class:`OnnxGraph` reads the ONNX graph with the ``onnx`` package and runs its
nodes with ``torch.nn.functional``, on the weights stored in the file. It implements the
operators our models use (CenterFace, the CR-FIQA quality model, YuNet) and names any
other operator at load time, so an unsupported model fails at start-up, not mid-stream.

On a CUDA device the weights are moved there once and, with ``runtime.half``, run in
fp16; :meth:`TorchModel.infer_tensor` takes and returns device tensors so a GPU pipeline
keeps its data on the card between stages. On CPU it is a reference that checks the
conversion against onnxruntime (tests/test_torch_engine.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import structlog
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from stream_gate.config import RuntimeConfig
from stream_gate.errors import ModelError
from stream_gate.runtime.cuda_graphs import GraphRunner, buckets_up_to, run_bucketed

log = structlog.get_logger(__name__)

Tensor = torch.Tensor
Attrs = dict[str, Any]


def _pads(attrs: Attrs, dims: int) -> list[int]:
    """ONNX symmetric pads (begin == end) as PyTorch's ``padding``; else an error."""
    pads = list(attrs.get("pads", [0] * 2 * dims))
    if pads[:dims] != pads[dims:]:
        raise ModelError(f"asymmetric padding {pads} is not supported by the torch engine")
    return pads[:dims]


def _conv(x: Tensor, w: Tensor, b: Tensor | None = None, **a: Any) -> Tensor:
    return F.conv2d(x, w, b, stride=a.get("strides", 1), padding=_pads(a, 2),
                    dilation=a.get("dilations", 1), groups=a.get("group", 1))


def _conv_transpose(x: Tensor, w: Tensor, b: Tensor | None = None, **a: Any) -> Tensor:
    if a.get("output_padding") or a.get("output_shape"):
        raise ModelError("ConvTranspose output_padding/output_shape is not supported")
    return F.conv_transpose2d(x, w, b, stride=a.get("strides", 1), padding=_pads(a, 2),
                              dilation=a.get("dilations", 1), groups=a.get("group", 1))


def _batch_norm(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                **a: Any) -> Tensor:
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _prelu(x: Tensor, slope: Tensor, **_: Any) -> Tensor:
    return torch.where(x >= 0, x, x * slope)  # slope broadcasts as ONNX says (C×1×1 here)


def _gemm(a: Tensor, b: Tensor, c: Tensor | None = None, **at: Any) -> Tensor:
    a = a.T if at.get("transA") else a
    b = b.T if at.get("transB") else b
    out: Tensor = float(at.get("alpha", 1.0)) * (a @ b)
    return out if c is None else out + float(at.get("beta", 1.0)) * c


def _flatten(x: Tensor, **a: Any) -> Tensor:
    axis = a.get("axis", 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _squeeze(x: Tensor, axes_in: Tensor | None = None, **a: Any) -> Tensor:
    dims = axes_in.tolist() if axes_in is not None else a.get("axes")  # opset 13 / 11
    if dims is None:
        return x.squeeze()
    for d in sorted((int(d) % x.dim() for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


def _unsqueeze(x: Tensor, axes_in: Tensor | None = None, **a: Any) -> Tensor:
    dims = axes_in.tolist() if axes_in is not None else a["axes"]
    for d in sorted(int(d) for d in dims):
        x = x.unsqueeze(d if d >= 0 else d + x.dim() + 1)
    return x


def _max_pool(x: Tensor, **a: Any) -> Tensor:
    return F.max_pool2d(x, a["kernel_shape"], stride=a.get("strides", 1),
                        padding=_pads(a, 2), ceil_mode=bool(a.get("ceil_mode", 0)))


def _resize(x: Tensor, roi: Tensor | None = None, scales: Tensor | None = None,
            sizes: Tensor | None = None, **a: Any) -> Tensor:
    mode = a.get("mode", b"nearest").decode()
    coord = a.get("coordinate_transformation_mode", b"half_pixel").decode()
    if mode != "nearest" or coord != "asymmetric" or a.get("nearest_mode", b"") != b"floor":
        raise ModelError(f"Resize {mode}/{coord} is not supported by the torch engine")
    if sizes is not None and sizes.numel():
        return F.interpolate(x, size=[int(v) for v in sizes.tolist()[2:]], mode="nearest")
    assert scales is not None
    return F.interpolate(x, scale_factor=[float(v) for v in scales.tolist()[2:]],
                         mode="nearest")


def _clip(x: Tensor, lo: Tensor | None = None, hi: Tensor | None = None, **a: Any) -> Tensor:
    """ONNX Clip: bounds as inputs (opset 11+) or attributes (opset 6); ReLU6 in MobileNets."""
    low = float(lo) if lo is not None else a.get("min")
    high = float(hi) if hi is not None else a.get("max")
    return x.clamp(min=low, max=high)


def _shape(x: Tensor, **_: Any) -> Tensor:
    return torch.tensor(list(x.shape), dtype=torch.int64)


def _gather(x: Tensor, idx: Tensor, **a: Any) -> Tensor:
    axis = a.get("axis", 0) % x.dim()
    picked = torch.index_select(x, axis, idx.reshape(-1).to(x.device) % x.shape[axis])
    return picked.reshape([*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]])


def _reshape(x: Tensor, shape: Tensor, **_: Any) -> Tensor:
    dims = [int(v) for v in shape.tolist()]
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]  # 0 = keep that dim
    return x.reshape(dims)


def _concat(*xs: Tensor, **a: Any) -> Tensor:
    return torch.cat(xs, dim=a["axis"])


OPS: dict[str, Callable[..., Tensor]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batch_norm,
    "Relu": lambda x, **_: F.relu(x),
    "Sigmoid": lambda x, **_: torch.sigmoid(x),
    "Clip": _clip,
    "PRelu": _prelu,
    "Add": lambda a, b, **_: a + b,
    "MatMul": lambda a, b, **_: a @ b,
    "Gemm": _gemm,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "MaxPool": _max_pool,
    "Resize": _resize,
    "Transpose": lambda x, **a: x.permute(*a["perm"]),
    "Shape": _shape,
    "Gather": _gather,
    "Reshape": _reshape,
    "Concat": _concat,
}


class OnnxGraph(torch.nn.Module):
    """An ONNX graph run node by node with PyTorch ops (weights as buffers)."""

    def __init__(self, model: onnx.ModelProto, name: str) -> None:
        super().__init__()
        graph = model.graph
        missing = sorted({n.op_type for n in graph.node if n.op_type not in OPS}
                         - {"Constant"})
        if missing:
            raise ModelError(f"model {name}: operators {', '.join(missing)} are not "
                             "supported by the torch engine (use runtime.engine = "
                             "\"onnxruntime\" or \"tensorrt\")")
        self.consts: dict[str, Tensor] = {}
        for init in graph.initializer:
            self.consts[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())
        self.nodes: list[tuple[str, list[str], list[str], Attrs]] = []
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self.consts[node.output[0]] = torch.from_numpy(
                    numpy_helper.to_array(attrs["value"]).copy())
                continue
            self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
        taken = set(self.consts)
        self.input_name = next(i.name for i in graph.input if i.name not in taken)
        self.output_names = [o.name for o in graph.output]

    def to_device(self, device: torch.device, dtype: torch.dtype) -> OnnxGraph:
        """Float weights to ``dtype`` on ``device``; integer tensors (shapes) stay as they are."""
        self.consts = {k: v.to(device, dtype) if v.is_floating_point() else v
                       for k, v in self.consts.items()}
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        values = dict(self.consts)
        values[self.input_name] = x
        for op, inputs, outputs, attrs in self.nodes:
            args = [values[i] if i else None for i in inputs]
            while args and args[-1] is None:
                args.pop()
            values[outputs[0]] = OPS[op](*args, **attrs)
        return [values[o] for o in self.output_names]


def pick_device(cfg: RuntimeConfig) -> torch.device:
    """``runtime.device``: "auto" is CUDA when PyTorch sees a GPU, else the CPU."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelError('runtime.device = "cuda" but PyTorch sees no CUDA GPU '
                             f"(torch {torch.__version__}, built for CUDA "
                             f"{torch.version.cuda or 'none'})")
        return torch.device("cuda")
    return torch.device("cpu")


class TorchModel:
    """One ONNX model on PyTorch: numpy in and out (:meth:`infer`) or device tensors."""

    def __init__(self, onnx_bytes: bytes, name: str, cfg: RuntimeConfig,
                 threads: int = 0) -> None:
        self.name = name
        self.device = pick_device(cfg)
        # fp16 only on a GPU: CPUs have no fast fp16 convolutions.
        self.dtype = torch.float16 if cfg.half and self.device.type == "cuda" else torch.float32
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        try:
            proto = onnx.load_from_string(onnx_bytes)
        except Exception as exc:  # onnx raises DecodeError and friends
            raise ModelError(f"cannot load model {name}: {exc}") from None
        self.graph = OnnxGraph(proto, name).to_device(self.device, self.dtype)
        self.output_names: list[str] = self.graph.output_names
        self.on_gpu = self.device.type == "cuda"
        self.runner = GraphRunner(self._run, name) if self.on_gpu and cfg.cuda_graphs else None
        self.warmed: set[tuple[int, ...]] = set()

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Run in ``dtype`` from now on (fp16 arithmetic can be checked on the CPU too)."""
        self.graph.to_device(self.device, dtype)
        self.dtype = dtype
        if self.runner is not None:
            self.runner.graphs.clear()  # captured with the old weights
        self.warmed.clear()

    def warm(self, item_shape: tuple[int, ...], up_to: int) -> None:
        """On a GPU, run every batch bucket of 1..``up_to`` items of ``item_shape`` once
        (cuDNN builds its kernels, the graphs are captured), so a live stream does not
        stall ~1 s at each batch size it meets first. Once per item shape; no-op on CPU."""
        if not self.on_gpu or item_shape in self.warmed:
            return
        self.warmed.add(item_shape)
        t0 = time.perf_counter()
        sizes = buckets_up_to(up_to)
        for n in sizes:
            self.infer_tensor(torch.zeros((n, *item_shape), device=self.device))
        torch.cuda.synchronize(self.device)
        log.info("model_warmed_up", model=self.name, input=list(item_shape), batches=sizes,
                 seconds=round(time.perf_counter() - t0, 2))

    def _run(self, x: Tensor) -> list[Tensor]:
        return [o.float() for o in self.graph(x)]

    @torch.inference_mode()
    def infer_tensor(self, batch: Tensor) -> list[Tensor]:
        """A float NCHW batch (any device) in; the outputs as float32 tensors on the device.

        On a GPU the batch runs in chunks of at most 64, each padded to a power of two
        (every new shape costs cuDNN ~1 s) and replayed as that size's CUDA graph
        (``runtime.cuda_graphs``); see cuda_graphs.py.
        """
        x = batch.to(self.device, self.dtype, non_blocking=True)
        if not self.on_gpu:
            return self._run(x)
        return run_bucketed(self.runner or self._run, x)

    def infer(self, batch: npt.NDArray[np.float32]) -> Sequence[npt.NDArray[np.float32]]:
        return [o.cpu().numpy() for o in self.infer_tensor(torch.from_numpy(batch))]
