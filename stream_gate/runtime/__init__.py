"""Inference runtimes behind one small interface, chosen by ``runtime.engine``.

- ``onnxruntime``: CPU, every install has it;
- ``tensorrt``: engines built from the same ONNX files (``engines/`` recipes), NVIDIA GPUs;
- ``torch``: the same ONNX files run as PyTorch graphs (torch_engine.py), on a CUDA GPU
  where TensorRT is absent (or on the CPU, as a reference).

GPU engines are imported only when asked for, so a CPU install never needs CUDA
packages; asking for one whose packages are missing stops start-up with one error naming
the package and the extra that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from stream_gate.config import RuntimeConfig
from stream_gate.errors import ModelError


class Model(Protocol):
    """One loaded network: a float32 NCHW batch in, every output as a numpy array out."""

    name: str
    output_names: list[str]  # in the order ``infer`` returns them

    def infer(self, batch: npt.NDArray[np.float32]) -> Sequence[npt.NDArray[np.float32]]: ...


def device_of(model: object) -> Any:
    """The torch device a model takes tensors on, or None for a host-only model.

    Models of the torch engine, and TensorRT engines when PyTorch sees the GPU, take and
    return device tensors (``infer_tensor``), so the stages around them run on the device.
    """
    return getattr(model, "device", None) if hasattr(model, "infer_tensor") else None


NEEDS: dict[str, tuple[str, ...]] = {"onnxruntime": ("onnxruntime",),
                                     "tensorrt": ("tensorrt", "pycuda.driver"),
                                     "torch": ("torch",)}


def require(engine: str) -> None:
    """Raise one ModelError naming the package when ``engine`` cannot be imported."""
    for module in NEEDS[engine]:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # also a CUDA library that fails to load
            raise ModelError(
                f"runtime.engine = {engine!r} needs the Python package "
                f"{module.split('.')[0]!r} (pip install 'stream-gate[gpu]'): {exc}") from None


def load_model(onnx: bytes, name: str, cfg: RuntimeConfig, threads: int = 0,
               int8: bool = False) -> Model:
    """The ONNX model ``onnx`` on the engine ``cfg.engine`` names (``int8``: TensorRT's
    calibrated int8 engine, built ahead by ``stream-gate engines build --calibrate``)."""
    require(cfg.engine)
    if cfg.engine == "tensorrt":
        from stream_gate.runtime.tensorrt import TrtModel

        return TrtModel(onnx, name, cfg, int8=int8)
    if cfg.engine == "torch":
        from stream_gate.runtime.torch_engine import TorchModel

        return TorchModel(onnx, name, cfg, threads=threads)
    from stream_gate.runtime.ort import OrtModel

    return OrtModel(onnx, name, threads=threads, spin=cfg.ort_spin)
