"""Inference runtimes behind one small interface, chosen by ``runtime.engine``.

Only ``onnxruntime`` (CPU; every install has it) exists today. GPU engines (TensorRT,
PyTorch on CUDA) plug in here: each is imported only when asked for, so a CPU install
never needs CUDA packages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream_gate.config import RuntimeConfig


class Model(Protocol):
    """One loaded network: a float32 NCHW batch in, every output as a numpy array out."""

    name: str

    def infer(self, batch: npt.NDArray[np.float32]) -> Sequence[npt.NDArray[np.float32]]: ...


def load_model(onnx: bytes, name: str, cfg: RuntimeConfig, threads: int = 0) -> Model:
    """The ONNX model ``onnx`` on the engine ``cfg.engine`` names."""
    from stream_gate.runtime.ort import OrtModel

    return OrtModel(onnx, name, threads=threads, spin=cfg.ort_spin)
