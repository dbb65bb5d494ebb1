"""Box and landmark geometry shared by the stages: the one IoU, NMS, merging and grouping.

Every stage that compares boxes (NMS in the detectors, the tracker's association, the
refiner's pick, the bench's track matching) uses :func:`iou_matrix`; the landmark
measures (eye distance, yaw) serve both the cheap gates and the heuristic scorer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from stream_gate.types import Detections, FloatArray

K = TypeVar("K", bound=Hashable)


def iou_matrix(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of boxes ``a`` (N×4) and ``b`` (M×4), as x1, y1, x2, y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    out: npt.NDArray[np.float64] = inter / np.maximum(area_a + area_b - inter, 1e-9)
    return out


def buffered(boxes: npt.NDArray[np.floating], b: float) -> npt.NDArray[np.float64]:
    """Boxes grown by ``b`` × their width/height on every side (C-BIoU's buffer).

    Matching grown boxes tolerates the larger steps between frames sampled at a few
    per second, where plain IoU of a walking face and its prediction drops to zero.
    """
    out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    w = out[:, 2] - out[:, 0]
    h = out[:, 3] - out[:, 1]
    out[:, 0] -= b * w
    out[:, 2] += b * w
    out[:, 1] -= b * h
    out[:, 3] += b * h
    return out


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iou = iou_matrix(boxes[i:i + 1], boxes[rest])[0]
        order = rest[iou < iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def merge(found: Sequence[Detections], nms_iou: float) -> Detections:
    """Several detection sets of one frame as one, duplicates (two tracks on one face)
    removed by NMS."""
    found = [d for d in found if len(d)]
    if not found:
        return Detections.empty()
    boxes = np.concatenate([d.boxes for d in found])
    scores = np.concatenate([d.scores for d in found])
    marks = np.concatenate([d.landmarks for d in found])
    keep = nms(boxes, scores, nms_iou)
    return Detections(boxes[keep], scores[keep], marks[keep])


def group_by(indices: Iterable[int], key: Callable[[int], K]) -> dict[K, list[int]]:
    """``indices`` grouped by ``key(i)``: groups in order of first appearance, each in
    the order given (frames of one size, crops of one input size: one batch a group)."""
    groups: dict[K, list[int]] = {}
    for i in indices:
        groups.setdefault(key(i), []).append(i)
    return groups


def log2_area(boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """log2 of each (x1, y1, x2, y2) box's area in pixels, floored at 1 px²: the size cue
    of ``select.size_weight``, shared with the video benchmark so that it measures what
    the product ranks by."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    out: npt.NDArray[np.float64] = np.log2(np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]),
                                                      1.0))
    return out


def eye_distance(landmarks: FloatArray) -> float:
    """Distance between the eye centres in pixels."""
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def yaw_estimate(landmarks: FloatArray) -> float:
    """Head yaw in degrees from the nose's offset along the eye line (0 = frontal).

    A coarse, roll-invariant estimate: the nose projects onto the eye midpoint for a
    frontal face and moves towards one eye as the head turns.
    """
    left, right, nose = landmarks[0], landmarks[1], landmarks[2]
    axis = right - left
    d = float(np.linalg.norm(axis))
    if d < 1e-6:
        return 90.0
    offset = float(np.dot(nose - (left + right) / 2, axis / d)) / (d / 2)
    return math.degrees(math.asin(max(-1.0, min(1.0, offset))))
