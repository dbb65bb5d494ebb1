"""The detector codec: letterbox frames into one batch, decode outputs into frame pixels.

Frames are scaled so their longer side is at most ``max_side`` (detection cost grows with
pixels; smaller faces are lost as it shrinks; by default it follows from ``min_face_px``),
padded to multiples of 32 and stacked. Subclasses name the network (its colour order and
how its outputs decode into boxes, scores and 5 landmarks in input pixels); this class
maps those back to frame pixels. The refine stage uses the same codec on its crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.config import DetectConfig
from stream_gate.runtime import Model
from stream_gate.types import Detections, FloatArray, FrameBatch, ImageBGR

FIND_PX = 8.0  # faces this small at the detector's input are still found (then refined)
MIN_AUTO_SIDE = 640  # below this, detection is cheap: small frames are detected as they are


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How one frame was placed into the detector input: scaled to ``h`` × ``w`` at the
    top left (``sx``, ``sy``: input pixels per frame pixel)."""

    h: int
    w: int
    sx: float
    sy: float


@dataclass(frozen=True, slots=True)
class Layout:
    """A batch's detector input size (multiples of 32) and where each frame sits in it."""

    height: int
    width: int
    frames: list[Letterbox]


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

    def __init__(self, cfg: DetectConfig, model: Model, quantized: bool = False) -> None:
        self.cfg = cfg
        self.model = model
        self.quantized = quantized

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

    def layout(self, shapes: Sequence[tuple[int, ...]]) -> Layout:
        """Where frames of these shapes (H, W, ...) go in one zero-padded batch: each
        scaled down to :meth:`side` (never up), the batch as large as its largest."""
        sizes = [input_size(sh[0], sh[1], self.side(sh[0], sh[1])) for sh in shapes]
        frames = []
        for sh, (_, _, s) in zip(shapes, sizes, strict=True):
            h, w = int(sh[0]), int(sh[1])
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            frames.append(Letterbox(nh, nw, nw / w, nh / h))
        return Layout(max(s[0] for s in sizes), max(s[1] for s in sizes), frames)

    def prepare(
        self, images: Sequence[ImageBGR]
    ) -> tuple[npt.NDArray[np.float32], list[Letterbox]]:
        """Resize, pad and stack frames into one NCHW float batch."""
        lay = self.layout([im.shape for im in images])
        batch = np.zeros((len(images), 3, lay.height, lay.width), np.float32)
        for i, (im, lb) in enumerate(zip(images, lay.frames, strict=True)):
            resized = im if (lb.h, lb.w) == im.shape[:2] else cv2.resize(
                im, (lb.w, lb.h), interpolation=cv2.INTER_AREA
            )
            batch[i, :, :lb.h, :lb.w] = self.blob([resized])[0]
        return batch, lay.frames

    def detect(self, batch: FrameBatch) -> list[Detections]:
        """The faces of every frame of the batch, in frame pixels (host arrays)."""
        return self.detect_images([f.image for f in batch.frames])

    def detect_images(self, images: Sequence[ImageBGR]) -> list[Detections]:
        """The faces of same-purpose images (frames, photos), in their pixels."""
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


