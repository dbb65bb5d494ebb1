"""Inference runtimes behind two small protocols, and the one backend decision.

- ``onnxruntime``: CPU, every install has it;
- ``tensorrt``: engines built from the same ONNX files (``recipes/``), NVIDIA GPUs;
- ``torch``: the same ONNX files run as PyTorch graphs (torch_engine.py), on a CUDA GPU
  where TensorRT is absent (or on the CPU, as a reference).

:func:`choose_backend` decides once, from ``[runtime]``, whether the stages work on host
arrays (numpy/OpenCV around :class:`Model`) or on torch tensors on a device (around
:class:`DeviceModel`); the composition root (pipeline/graph.py) hands the same
:class:`Backend` to detect, refine and align_score, so they always agree.

May import: config, errors, log, types. GPU packages (torch, tensorrt, pycuda) are
imported only when an engine or a device asks for them, so a CPU install never needs
them; asking for one whose packages are missing stops start-up with one error naming
the package and the extra that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from stream_gate.config import RuntimeConfig
from stream_gate.errors import ModelError
from stream_gate.runtime.ort import OrtModel
from stream_gate.runtime.tensorrt import TrtModel  # imports TensorRT itself only when used

if TYPE_CHECKING:
    import torch


class Model(Protocol):
    """One loaded network: a float32 NCHW batch in, every output as a numpy array out."""

    name: str
    output_names: list[str]  # in the order ``infer`` returns them

    def infer(self, batch: npt.NDArray[np.float32]) -> Sequence[npt.NDArray[np.float32]]: ...


class DeviceModel(Model, Protocol):
    """A network that also takes and returns torch tensors on its device, so the stages
    around it keep their data there (the torch engine; TensorRT with PyTorch on CUDA)."""

    device: torch.device
    dtype: torch.dtype  # the precision its inputs should have (fp16 with runtime.half)

    def infer_tensor(self, batch: torch.Tensor) -> list[torch.Tensor]: ...

    def warm(self, item_shape: tuple[int, ...], up_to: int) -> None:
        """Prepare for batches of 1..``up_to`` items of ``item_shape`` (or do nothing)."""
        ...


@dataclass(frozen=True, slots=True)
class Backend:
    """Where the stages run: ``device`` None for host arrays, else the torch device."""

    cfg: RuntimeConfig
    device: torch.device | None = None

    @property
    def on_device(self) -> bool:
        return self.device is not None


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


def choose_backend(cfg: RuntimeConfig) -> Backend:
    """The one decision of where the stages run, made before any model is loaded.

    onnxruntime: host. torch: its device (``runtime.device``; CPU too, as the reference
    the tests compare with onnxruntime). tensorrt: CUDA tensors where PyTorch sees the
    GPU, so frames cross the bus once per batch; else host arrays through pycuda.
    """
    require(cfg.engine)
    if cfg.engine == "torch":
        from stream_gate.runtime.torch_engine import pick_device  # torch stays optional

        return Backend(cfg, pick_device(cfg))
    if cfg.engine == "tensorrt":
        try:
            import torch
        except ImportError:
            return Backend(cfg)
        return Backend(cfg, torch.device("cuda") if torch.cuda.is_available() else None)
    return Backend(cfg)


def load_model(onnx: bytes, name: str, cfg: RuntimeConfig, threads: int = 0,
               int8: bool = False) -> Model:
    """The ONNX model ``onnx`` on the engine ``cfg.engine`` names (``int8``: TensorRT's
    calibrated int8 engine, built ahead by ``stream-gate engines build --calibrate``)."""
    require(cfg.engine)
    if cfg.engine == "tensorrt":
        return TrtModel(onnx, name, cfg, int8=int8)
    if cfg.engine == "torch":
        from stream_gate.runtime.torch_engine import TorchModel  # torch stays optional

        return TorchModel(onnx, name, cfg, threads=threads)
    return OrtModel(onnx, name, threads=threads, spin=cfg.ort_spin)


def load_device_model(onnx: bytes, name: str, backend: Backend, threads: int = 0,
                      int8: bool = False) -> DeviceModel:
    """The ONNX model on ``backend``'s device (the backend must have one)."""
    if backend.device is None:
        raise ModelError(f"{name}: runtime.engine = {backend.cfg.engine!r} runs on the host "
                         "here, not on a torch device")
    if backend.cfg.engine == "tensorrt":
        return TrtModel(onnx, name, backend.cfg, int8=int8)
    from stream_gate.runtime.torch_engine import TorchModel  # torch stays optional

    return TorchModel(onnx, name, backend.cfg, threads=threads)
