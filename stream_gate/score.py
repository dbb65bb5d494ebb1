"""Score: cheap geometric gates, then a :class:`QualityScorer` on the aligned crops.

Gates reject faces that no recogniser could use (too small, turned too far, weak
detection) before any pixel work. Scorers map a batch of aligned 112×112 crops to a raw
score and a 0–100 quality. ``heuristic`` is the transparent baseline: sharpness, face
size, frontalness and exposure combined by a weighted geometric mean. The learned
CR-FIQA model plugs in behind the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from stream_gate.config import RuntimeConfig, ScoreConfig
from stream_gate.types import FloatArray, ImageBGR, Scores, TrackedFace


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


def gate_reason(face: TrackedFace, cfg: ScoreConfig) -> str | None:
    """Why a face fails the cheap gates, or None when it should be scored."""
    if face.score < cfg.min_det_score:
        return "det_score"
    if eye_distance(face.landmarks) < cfg.min_eye_px:
        return "eye_distance"
    if abs(yaw_estimate(face.landmarks)) > cfg.max_yaw_deg:
        return "yaw"
    return None


class QualityScorer(Protocol):
    """Batch of aligned crops (+ their frame landmarks) -> raw and 0–100 scores."""

    name: str

    def score(self, crops: Sequence[ImageBGR], landmarks: Sequence[FloatArray]) -> Scores: ...


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


def make_scorer(cfg: ScoreConfig, runtime: RuntimeConfig | None = None) -> QualityScorer:
    """The scorer named by ``score.model``: ``heuristic``, a shipped model or a manifest."""
    if cfg.model == "heuristic":
        return HeuristicScorer()
    from stream_gate.quality_model import CrFiqaScorer

    return CrFiqaScorer(cfg.model, threads=cfg.threads, runtime=runtime)
