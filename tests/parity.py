"""The GPU path's contract with the CPU path, shared by the engines' tests: the same faces
(IoU >= 0.95, one to one), landmarks within 1 px, quality within 1 point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2

from stream_gate.config import DetectConfig, RuntimeConfig, ScoreConfig
from stream_gate.service.engines import face_agreement
from stream_gate.stages.align_score import CrFiqaScorer, QualityScorer
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.detect import build_host_detector
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
    face = build_host_detector(DetectConfig()).detect_images([photo])[0]
    crop = align_face(photo, face.landmarks[0])[0]
    q_cpu = CrFiqaScorer.load().score([crop], [face.landmarks[0]]).quality
    dev = scorer or CrFiqaScorer.load(ScoreConfig().model, runtime)
    q_dev = dev.score([crop], [face.landmarks[0]]).quality
    assert abs(float(q_cpu[0]) - float(q_dev[0])) <= 1.0
