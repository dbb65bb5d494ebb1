"""Refinement windows: which rectangle of which frame each face is re-detected in.

A face gets a square of ``CONTEXT`` × its size, shrunk to ``detect.refine_px``; a face
small enough not to need shrinking gets a native window of ``detect.refine_small_px``
original pixels on the detector's stride grid instead (faces under ``PRECISE_MIN_PX``:
``refine_px``). With sharing, close small faces of one frame get one window.
See docs/decisions/001-refine-windows.md for the measurements behind the sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from stream_gate.geometry import group_by
from stream_gate.types import FloatArray

Job = tuple[int, FloatArray]  # (frame index in the batch, box to refine around)

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


class Planner:
    """Plans the windows of a batch of refinement jobs."""

    def __init__(self, size: int, small: int = 0, share: bool = True) -> None:
        self.size = size
        self.small = max(small, size)  # native window of a small face (never < size)
        self.share = share  # small faces close together share one native window

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

    def plan(self, jobs: Sequence[Job]) -> list[Window]:
        """Each job's window. With ``share``, small faces of one frame are gathered
        (left to right) into one native window wherever it has fewer pixels than their
        own windows together: the back rows of a crowd sit close, and each face keeps
        at least its own window's margin of context."""
        windows = [self.window(box) for _, box in jobs]
        if not self.share:
            return windows
        small = group_by((i for i, win in enumerate(windows) if win.native),
                         lambda i: (jobs[i][0], windows[i].w))  # (frame, side) -> faces
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

