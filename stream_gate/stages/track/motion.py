"""Motion: did anything change in a stream's view since its last frame-wide detection?

A face that enters the view, or turns towards the camera, changes the pixels where it
appears. Where nothing changed since the last frame-wide detection outside the faces
already tracked (which are re-detected on every frame anyway), a new frame-wide
detection would find what the last one found: an idle camera can skip it. The check
compares a thumbnail of the frame (``THUMB_SIDE`` px on its longer side, area-averaged,
so sensor noise and compression flicker average out) with the thumbnail taken at the
last frame-wide detection, pixel by pixel, and counts the thumbnail pixels that changed
by more than ``LEVEL`` grey levels outside the tracked faces, grown by half their size.
A quarter of the area of the smallest face the detector looks for
(``detect.min_face_px``), at the thumbnail's scale, counts as motion (2 pixels for 1080p).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.types import FloatArray, ImageBGR

THUMB_SIDE = 320  # px: a 1080p frame is averaged over 6×6 blocks
LEVEL = 20  # grey levels (of 255) a thumbnail pixel must change by
GROW = 0.5  # tracked faces masked out with half their size around them

Thumb = npt.NDArray[np.int16]


def thumb_scale(image: ImageBGR) -> float:
    """Thumbnail pixels per frame pixel (frames smaller than the thumbnail stay as they are)."""
    h, w = image.shape[:2]
    return min(1.0, THUMB_SIDE / float(max(h, w)))


def thumbnail(image: ImageBGR) -> tuple[Thumb, float]:
    """The frame's grey thumbnail and its scale (thumbnail px per frame px)."""
    h, w = image.shape[:2]
    scale = thumb_scale(image)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # first: 0.9 vs 1.9 ms a 1080p frame
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA) if scale < 1 else grey
    return small.astype(np.int16), scale


class MotionCheck:
    """One stream's reference thumbnail (from its last frame-wide detection)."""

    def __init__(self, min_face_px: float) -> None:
        self.min_face_px = min_face_px
        self.reference: Thumb | None = None
        self._last: tuple[ImageBGR, Thumb, float] | None = None  # the last frame checked

    def _thumbnail(self, image: ImageBGR) -> tuple[Thumb, float]:
        if self._last is None or self._last[0] is not image:
            self._last = (image, *thumbnail(image))
        return self._last[1], self._last[2]

    def reset(self, image: ImageBGR) -> None:
        """This frame was detected frame-wide: later frames are compared with it."""
        self.reference = self._thumbnail(image)[0]
        self._last = None

    def changed_pixels(self, image: ImageBGR, tracked: Sequence[FloatArray]) -> int:
        """Thumbnail pixels that changed since the reference, outside the tracked faces."""
        thumb, scale = self._thumbnail(image)
        if self.reference is None or self.reference.shape != thumb.shape:
            return thumb.size  # no reference yet (or the resolution changed): all new
        moved = np.abs(thumb - self.reference) > LEVEL
        h, w = moved.shape
        for box in tracked:
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            gx, gy = GROW * (x2 - x1), GROW * (y2 - y1)
            c1, r1 = max(int((x1 - gx) * scale), 0), max(int((y1 - gy) * scale), 0)
            c2, r2 = min(int((x2 + gx) * scale) + 1, w), min(int((y2 + gy) * scale) + 1, h)
            moved[r1:r2, c1:c2] = False
        return int(moved.sum())

    def moved(self, image: ImageBGR, tracked: Sequence[FloatArray]) -> bool:
        """Whether a face could have appeared outside the tracked ones since the reference."""
        min_pixels = max(1, round(0.25 * float(self.min_face_px * thumb_scale(image)) ** 2))
        return self.changed_pixels(image, tracked) >= min_pixels
