"""Refine: re-detect known faces on full-resolution crops around them (coarse to fine).

The frame-wide detector runs on a scaled-down frame (``detect.max_side``), so a face of
30 px in a 1080p frame is 15 px there and its landmarks are off by a pixel or two of the
original: enough to tilt the aligned crop and cost quality points. Refinement cuts a
square of ``CONTEXT`` × the face's size around each face from the original frame,
shrinks it to ``detect.refine_px`` and runs the same detector on all of them in one
batch (the small faces' windows, below, in batches of their own size). A face too
small for that square to need shrinking is never enlarged: CenterFace misses most
faces under 32 px once they are upscaled (11 of 14 on the 1080p crowd) and places the
landmarks of those it finds worse. Its crop is ``detect.refine_small_px`` of original
pixels instead, on the full-resolution detector's stride grid, so the detector sees
what it would see in the whole frame. That window is larger than ``refine_px``
because the detector's deepest layers look ~100 px around a face: in a 96-px window
most of that is the crop's black border, and the landmarks of faces of 32-48 px land
1.4 px (mean) from where full-frame detection puts them; in 192 px, 0.4 px (0.2 at
256). At that size half a pixel moves a crop's quality by several points (2-5 points
from the full-frame crop's on the crowd at 96 px, ~2 at 192), so the window is worth
its ~4× cost; close faces share one. Faces under ``PRECISE_MIN_PX`` keep a
``refine_px`` window: their quality (~6 on average) moved by under a point.

The same call serves the frames between two frame-wide detections: the tracker's
predicted boxes are refined instead of detecting the whole frame (detection every k-th
frame with the tracker coasting in between, but with real landmarks on every frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np

from stream_gate.detect import FaceDetector, nms
from stream_gate.groups import group_by
from stream_gate.track import buffered, iou_matrix
from stream_gate.types import Detections, FloatArray, ImageBGR

CONTEXT = 2.0  # crop side / face size: room for the motion between frames
# A refined face must overlap the box it was asked for, both grown by half their size
# (the window's margin): a young track's prediction lags a walking face, and plain IoU
# (0.198 on the crowd clip) lost faces the tracker itself would have matched.
MIN_IOU, GROW = 0.2, 0.5
GRID = 32  # CenterFace's coarsest stride: native crops start on its full-frame grid
# Faces under this (box side, frame px) keep a refine_px native window: their crops are
# upsampled 3-4× and score ~6 on average (crowd, 1080p and 720p), and the larger window
# moved their quality by under a point where it moved 32-48 px faces' by 2-3.
PRECISE_MIN_PX = 32


class Window(NamedTuple):
    """A rectangle of a frame to detect on: ``w`` × ``h`` frame pixels from (``x0``,
    ``y0``), given to the detector at ``out_w`` × ``out_h`` px (the same size for the
    native window of small faces; a square shrunk to ``refine_px`` for the others)."""

    x0: int
    y0: int
    w: int
    h: int
    out_w: int
    out_h: int

    @property
    def scale(self) -> float:
        return self.out_w / self.w

    @property
    def native(self) -> bool:
        return (self.w, self.h) == (self.out_w, self.out_h)


def by_output(windows: Sequence[Window]) -> dict[tuple[int, int], list[int]]:
    """The indices of ``windows`` grouped by detector input size (h, w): one batch each."""
    return group_by(range(len(windows)), lambda i: (windows[i].out_h, windows[i].out_w))


def _center(box: FloatArray) -> tuple[float, float]:
    return (float(box[0]) + float(box[2])) / 2, (float(box[1]) + float(box[3])) / 2


class Refiner:
    """Batched re-detection of faces around given boxes, on full-resolution crops."""

    share = True  # small faces close together share one native window (fewer pixels)

    def __init__(self, detector: FaceDetector, size: int, small: int = 0) -> None:
        self.detector = detector
        self.size = size
        self.small = max(small, size)  # native window of a small face (never < size)

    def window(self, box: FloatArray) -> Window:
        """The crop around ``box``: a square of ``CONTEXT`` × the face's size, shrunk to
        ``size``; or for a face small enough not to need shrinking, its native window
        (never a square that would have to be enlarged)."""
        face = max(float(box[2] - box[0]), float(box[3] - box[1]))
        side = round(CONTEXT * face)
        if side <= self.size:
            n = self.small if face >= PRECISE_MIN_PX else self.size
            return self.native_window([_center(box)], n)
        cx, cy = _center(box)
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        return Window(x0, y0, side, side, self.size, self.size)

    @staticmethod
    def native_window(centers: Sequence[tuple[float, float]], n: int) -> Window:
        """Original pixels on the ``GRID`` reaching ``n`` / 2 (± half a grid step) past
        the given face centres on every side: an ``n`` square for one face."""
        half = n / 2
        x0 = round((min(x for x, _ in centers) - half) / GRID) * GRID
        y0 = round((min(y for _, y in centers) - half) / GRID) * GRID
        x1 = round((max(x for x, _ in centers) + half) / GRID) * GRID
        y1 = round((max(y for _, y in centers) + half) / GRID) * GRID
        return Window(x0, y0, x1 - x0, y1 - y0, x1 - x0, y1 - y0)

    def plan(self, jobs: Sequence[tuple[ImageBGR, FloatArray]]) -> list[Window]:
        """Each job's window. With ``share``, small faces of one frame are gathered
        (left to right) into one native window wherever it has fewer pixels than their
        own windows together: the back rows of a crowd sit close, and each face keeps
        at least its own window's margin of context."""
        windows = [self.window(box) for _, box in jobs]
        if not self.share:
            return windows
        small = group_by((i for i, win in enumerate(windows) if win.native),
                         lambda i: (id(jobs[i][0]), windows[i].w))  # (frame, side) -> faces
        for (_, n), idx in small.items():
            groups: list[tuple[list[int], Window]] = []
            for i in sorted(idx, key=lambda i: _center(jobs[i][1])):
                own = windows[i]
                for g, (members, win) in enumerate(groups):
                    both = self.native_window([_center(jobs[m][1]) for m in [*members, i]], n)
                    if both.w * both.h <= win.w * win.h + own.w * own.h:
                        groups[g] = ([*members, i], both)
                        break
                else:
                    groups.append(([i], own))
            for members, win in groups:
                for m in members:
                    windows[m] = win
        return windows

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

    def refine(self, jobs: Sequence[tuple[ImageBGR, FloatArray]],
               on_device: Sequence[Any] | None = None) -> list[Detections]:
        """For each (frame, box): the face found there (0 or 1), in frame pixels.

        ``on_device``: the jobs' frames already on the detector's device; only a
        device-side refiner (device_stages.DeviceRefiner) uses them.
        """
        if not jobs:
            return []
        windows = self.plan(jobs)
        found = [Detections.empty()] * len(jobs)
        for idx in by_output(windows).values():  # one batch per detector input size
            crops: dict[tuple[int, Window], int] = {}  # a shared window is cut once
            for i in idx:
                crops.setdefault((id(jobs[i][0]), windows[i]), i)
            slot = {key: n for n, key in enumerate(crops)}
            heads = self.detector.model.infer(self.detector.blob(
                [self.crop(jobs[i][0], windows[i]) for i in crops.values()]))
            for i in idx:
                found[i] = self.pick(heads, slot[id(jobs[i][0]), windows[i]], jobs[i],
                                     windows[i])
        return found

    def pick(self, heads: Sequence[FloatArray], i: int, job: tuple[ImageBGR, FloatArray],
             win: Window) -> Detections:
        """The face of crop ``i`` that overlaps the asked-for box most, in frame pixels."""
        (image, box), (scale, x0, y0) = job, (win.scale, win.x0, win.y0)
        boxes, scores, marks = self.detector.decode(heads, i, (win.out_h, win.out_w))
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
