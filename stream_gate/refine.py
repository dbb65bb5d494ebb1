"""Refine: re-detect known faces on full-resolution crops around them (coarse to fine).

The frame-wide detector runs on a scaled-down frame (``detect.max_side``), so a face of
30 px in a 1080p frame is 15 px there and its landmarks are off by a pixel or two of the
original: enough to tilt the aligned crop and cost quality points. Refinement cuts a
square of ``CONTEXT`` × the face's size around each face from the original frame,
shrinks it to ``detect.refine_px`` and runs the same detector on all of them in one
batch. A face too small for that square to need shrinking is never enlarged: CenterFace
misses most faces under 32 px once they are upscaled (11 of 14 on the 1080p crowd) and
places the landmarks of those it finds worse. Its crop is ``refine_px`` of original
pixels instead, on the full-resolution detector's stride grid, so the detector sees
what it would see in the whole frame (landmarks within 3–5 % of the face size of the
full-frame detection for faces under 48 px, vs 6–8 % upscaled).

The same call serves the frames between two frame-wide detections: the tracker's
predicted boxes are refined instead of detecting the whole frame (detection every k-th
frame with the tracker coasting in between, but with real landmarks on every frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from stream_gate.detect import FaceDetector, nms
from stream_gate.track import buffered, iou_matrix
from stream_gate.types import Detections, FloatArray, ImageBGR

CONTEXT = 2.0  # crop side / face size: room for the motion between frames
# A refined face must overlap the box it was asked for, both grown by half their size
# (the window's margin): a young track's prediction lags a walking face, and plain IoU
# (0.198 on the crowd clip) lost faces the tracker itself would have matched.
MIN_IOU, GROW = 0.2, 0.5
GRID = 32  # CenterFace's coarsest stride: native crops start on its full-frame grid


class Refiner:
    """Batched re-detection of faces around given boxes, on full-resolution crops."""

    def __init__(self, detector: FaceDetector, size: int) -> None:
        self.detector = detector
        self.size = size

    def window(self, box: FloatArray) -> tuple[int, int, int]:
        """The square crop around ``box`` in frame pixels: side and top-left corner.

        ``CONTEXT`` × the face's size, or for a small face ``size`` original pixels
        placed on the ``GRID`` (never a square that would have to be enlarged).
        """
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        side = round(CONTEXT * max(x2 - x1, y2 - y1))
        if side <= self.size:
            return (self.size, round((cx - self.size / 2) / GRID) * GRID,
                    round((cy - self.size / 2) / GRID) * GRID)
        return side, round(cx - side / 2), round(cy - side / 2)

    def crop(self, image: ImageBGR, box: FloatArray) -> tuple[ImageBGR, float, int, int]:
        """The square around ``box`` at ``size`` px; its scale and frame origin."""
        side, x0, y0 = self.window(box)
        h, w = image.shape[:2]
        region = image[max(y0, 0):min(y0 + side, h), max(x0, 0):min(x0 + side, w)]
        if region.shape[:2] != (side, side):  # near the frame edge: pad with black
            top, left = max(-y0, 0), max(-x0, 0)
            region = cv2.copyMakeBorder(
                region, top, side - region.shape[0] - top, left,
                side - region.shape[1] - left, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        if side == self.size:
            return region, 1.0, x0, y0
        out = cv2.resize(region, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return out, self.size / side, x0, y0

    def refine(self, jobs: Sequence[tuple[ImageBGR, FloatArray]],
               on_device: Sequence[Any] | None = None) -> list[Detections]:
        """For each (frame, box): the face found there (0 or 1), in frame pixels.

        ``on_device``: the jobs' frames already on the detector's device; only a
        device-side refiner (device_stages.DeviceRefiner) uses them.
        """
        if not jobs:
            return []
        crops = [self.crop(image, box) for image, box in jobs]
        heads = self.detector.model.infer(self.detector.blob([c[0] for c in crops]))
        return [self.pick(heads, i, job, c[1:]) for i, (job, c) in
                enumerate(zip(jobs, crops, strict=True))]

    def pick(self, heads: Sequence[FloatArray], i: int, job: tuple[ImageBGR, FloatArray],
             where: tuple[float, int, int]) -> Detections:
        """The face of crop ``i`` that overlaps the asked-for box most, in frame pixels."""
        (image, box), (scale, x0, y0) = job, where
        boxes, scores, marks = self.detector.decode(heads, i, (self.size, self.size))
        if len(scores) == 0:
            return Detections.empty()
        boxes = boxes / scale + np.array([x0, y0, x0, y0], np.float32)
        marks = marks / scale + np.array([x0, y0], np.float32)
        iou = iou_matrix(buffered(box[None, :4], GROW), buffered(boxes, GROW))[0]
        best = int(np.argmax(iou + 1e-3 * scores))  # overlap first, score breaks ties
        if iou[best] < MIN_IOU:
            return Detections.empty()
        h, w = image.shape[:2]
        b = boxes[best:best + 1].copy()
        b[:, 0::2] = np.clip(b[:, 0::2], 0, w)
        b[:, 1::2] = np.clip(b[:, 1::2], 0, h)
        return Detections(b.astype(np.float32), scores[best:best + 1],
                          marks[best:best + 1].astype(np.float32))


def merge(found: Sequence[Detections], nms_iou: float) -> Detections:
    """One frame's refined faces as one Detections, duplicates (two tracks on one face) removed."""
    found = [d for d in found if len(d)]
    if not found:
        return Detections.empty()
    boxes = np.concatenate([d.boxes for d in found])
    scores = np.concatenate([d.scores for d in found])
    marks = np.concatenate([d.landmarks for d in found])
    keep = nms(boxes, scores, nms_iou)
    return Detections(boxes[keep], scores[keep], marks[keep])
