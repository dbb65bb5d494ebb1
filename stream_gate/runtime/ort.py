"""onnxruntime sessions: the CPU runtime every install has (``runtime.engine = "onnxruntime"``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from stream_gate.errors import ModelError
from stream_gate.runtime.prelu import for_cpu

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot products, no saturation


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU runs int8 models without saturating: x86 CPUs without VNNI add
    int8 products in 16-bit registers, which overflow and cost accuracy (OpenVINO's and
    onnxruntime's quantization guides), and run int8 no faster than fp32 there."""
    try:
        flags = next((ln for ln in cpuinfo.read_text().splitlines()
                      if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return any(f in flags for f in VNNI_FLAGS)


class OrtModel:
    """One ONNX model on onnxruntime; ``infer`` takes a batch and returns every output."""

    def __init__(self, model: bytes | str, name: str, threads: int = 0,
                 spin: bool = False) -> None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # the shipped models carry harmless unused-initializer notes
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # onnxruntime's worker threads busy-wait for the next job by default. The decode
        # threads need those cores between model calls: with spinning off, the 1080p
        # pipeline covers ~40 % more video per second on 2 cores (see the bench notes).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.prelu_split = 0  # PRelu run as fused convolutions (prelu.py): ~3.5x faster
        try:
            if isinstance(model, bytes):
                model, self.prelu_split = for_cpu(model)
            self.session = ort.InferenceSession(
                model, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelError(f"cannot load model {name}: {exc}") from None
        self.name = name
        self.input_name: str = self.session.get_inputs()[0].name
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]

    def infer(self, batch: npt.NDArray[np.float32]) -> Sequence[npt.NDArray[np.float32]]:
        outputs: Sequence[npt.NDArray[np.float32]] = self.session.run(
            self.output_names, {self.input_name: batch}
        )
        return outputs
