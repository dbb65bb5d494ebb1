"""The heuristic scorer (``score.model = "heuristic"``): the transparent baseline.

Sharpness, face size, frontalness and exposure of the aligned 112×112 crop, combined by
a weighted geometric mean into a 0–100 quality; no learning, each factor inspectable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.geometry import eye_distance, yaw_estimate
from stream_gate.types import FloatArray, ImageBGR, Scores

# Face region of the aligned 112×112 crop (eyes to chin, cheek to cheek).
_FACE_ROWS = slice(32, 104)
_FACE_COLS = slice(24, 88)


def sharpness(gray: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian over the face region: high for crisp edges."""
    lap = cv2.Laplacian(gray[_FACE_ROWS, _FACE_COLS], cv2.CV_32F)
    return float(lap.var())


class HeuristicScorer:
    """Transparent baseline: no learning, each factor inspectable.

    Factors in [0, 1]:
    - sharpness: Laplacian variance v -> v / (v + 150)
    - size: inter-eye distance in the source frame / 40 px (the template's is 35 px),
      capped at 1: smaller faces were upsampled by alignment and carry less detail
    - frontalness: cos(yaw)
    - exposure: Gaussian around mid-grey, minus the share of clipped pixels
    quality = 100 · sharp^0.4 · size^0.25 · front^0.25 · exposure^0.1
    """

    name = "heuristic"

    def score(self, crops: Sequence[ImageBGR], landmarks: Sequence[FloatArray]) -> Scores:
        raw = np.array(
            [self._one(c, lm) for c, lm in zip(crops, landmarks, strict=True)], np.float32
        ).reshape(-1)
        return Scores(raw=raw, quality=np.clip(raw * 100.0, 0.0, 100.0).astype(np.float32))

    @staticmethod
    def _one(crop: ImageBGR, landmarks: FloatArray) -> float:
        gray: npt.NDArray[np.uint8] = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        v = sharpness(gray)
        sharp = v / (v + 150.0)
        size = min(1.0, eye_distance(landmarks) / 40.0)
        front = max(0.0, math.cos(math.radians(yaw_estimate(landmarks))))
        face = gray[_FACE_ROWS, _FACE_COLS]
        mean = float(face.mean())
        clipped = float(((face <= 5) | (face >= 250)).mean())
        exposure = math.exp(-(((mean - 125.0) / 70.0) ** 2)) * (1.0 - clipped)
        parts = [(sharp, 0.4), (size, 0.25), (front, 0.25), (exposure, 0.1)]
        return float(math.prod(max(p, 1e-6) ** w for p, w in parts))
