"""The GPU path's contract with the CPU path, shared by the engines' tests: the same faces
(IoU >= 0.95, one to one), landmarks within 1 px, quality within 1 point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2

from stream_gate.align import align_face
from stream_gate.config import DetectConfig, RuntimeConfig, ScoreConfig
from stream_gate.detect import make_detector
from stream_gate.engines_tool import face_agreement
from stream_gate.score import QualityScorer, make_scorer
from stream_gate.types import Detections


def assert_same_faces(a: Detections, b: Detections, landmark_px: float = 1.0) -> None:
    """Every confident face of ``a`` is in ``b`` (IoU >= 0.95), landmarks within ``landmark_px``."""
    agree = face_agreement(a, b)
    assert agree.ious
    assert min(agree.ious) >= 0.95, agree.ious
    assert agree.one_to_one
    assert agree.max_landmark_px <= landmark_px


def assert_same_quality(lfw_image: Callable[..., Path], runtime: RuntimeConfig,
                        scorer: QualityScorer | None = None) -> None:
    """A real face photo scores within 1 point on ``runtime`` (or ``scorer``) and on
    onnxruntime."""
    photo = cv2.imread(str(lfw_image()))
    face = make_detector(DetectConfig()).detect([photo])[0]
    crop = align_face(photo, face.landmarks[0])[0]
    q_cpu = make_scorer(ScoreConfig()).score([crop], [face.landmarks[0]]).quality
    dev = scorer or make_scorer(ScoreConfig(), runtime)
    q_dev = dev.score([crop], [face.landmarks[0]]).quality
    assert abs(float(q_cpu[0]) - float(q_dev[0])) <= 1.0
