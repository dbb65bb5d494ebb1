"""Refinement on the host: windows cut and resized with OpenCV, one batch per input size."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from stream_gate.geometry import buffered, iou_matrix
from stream_gate.stages.detect.base import FaceDetector
from stream_gate.stages.refine.windows import GROW, MIN_IOU, Job, Planner, Window, by_output
from stream_gate.types import Detections, FloatArray, FrameBatch, ImageBGR


class Refiner:
    """Batched re-detection of faces around given boxes, on full-resolution crops."""

    def __init__(self, codec: FaceDetector, planner: Planner) -> None:
        self.codec = codec
        self.planner = planner

    def crop(self, image: ImageBGR, win: Window) -> ImageBGR:
        """The window's pixels (black past the frame's edges) at the detector's size."""
        x0, y0, w, h = win.x0, win.y0, win.w, win.h
        fh, fw = image.shape[:2]
        region = image[max(y0, 0):min(y0 + h, fh), max(x0, 0):min(x0 + w, fw)]
        if region.shape[:2] != (h, w):  # near the frame edge: pad with black
            top, left = max(-y0, 0), max(-x0, 0)
            region = cv2.copyMakeBorder(
                region, top, h - region.shape[0] - top, left,
                w - region.shape[1] - left, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        if win.native:
            return region
        out: ImageBGR = cv2.resize(region, (win.out_w, win.out_h),
                                   interpolation=cv2.INTER_AREA)
        return out

    def refine(self, batch: FrameBatch, jobs: Sequence[Job]) -> list[Detections]:
        """For each (frame index, box): the face found there (0 or 1), in frame pixels."""
        if not jobs:
            return []
        windows = self.planner.plan(jobs)
        found = [Detections.empty()] * len(jobs)
        for idx in by_output(windows).values():  # one batch per detector input size
            crops: dict[tuple[int, Window], int] = {}  # a shared window is cut once
            for i in idx:
                crops.setdefault((jobs[i][0], windows[i]), i)
            slot = {key: n for n, key in enumerate(crops)}
            heads = self.codec.model.infer(self.codec.blob(
                [self.crop(batch.frames[jobs[i][0]].image, windows[i])
                 for i in crops.values()]))
            for i in idx:
                found[i] = self.pick(heads, slot[jobs[i][0], windows[i]], batch, jobs[i],
                                     windows[i])
        return found

    def pick(self, heads: Sequence[FloatArray], i: int, batch: FrameBatch, job: Job,
             win: Window) -> Detections:
        """The face of crop ``i`` that overlaps the asked-for box most, in frame pixels."""
        (fi, box), (scale, x0, y0) = job, (win.scale, win.x0, win.y0)
        boxes, scores, marks = self.codec.decode(heads, i, (win.out_h, win.out_w))
        if len(scores) == 0:
            return Detections.empty()
        boxes = boxes / scale + np.array([x0, y0, x0, y0], np.float32)
        marks = marks / scale + np.array([x0, y0], np.float32)
        iou = iou_matrix(buffered(box[None, :4], GROW), buffered(boxes, GROW))[0]
        best = int(np.argmax(iou + 1e-3 * scores))  # overlap first, score breaks ties
        if iou[best] < MIN_IOU:
            return Detections.empty()
        frame = batch.frames[fi]
        b = boxes[best:best + 1].copy()
        b[:, 0::2] = np.clip(b[:, 0::2], 0, frame.width)
        b[:, 1::2] = np.clip(b[:, 1::2], 0, frame.height)
        return Detections(b.astype(np.float32), scores[best:best + 1],
                          marks[best:best + 1].astype(np.float32))
