"""Alignment: exact Umeyama on known transforms, and real faces onto the ArcFace template."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from stream_gate.config import DetectConfig
from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE, CROP_SIZE, align_face, umeyama
from stream_gate.stages.detect import build_host_detector


def test_umeyama_recovers_a_known_similarity() -> None:
    angle, scale, t = np.deg2rad(23.0), 2.7, np.array([140.0, -35.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (ARCFACE_TEMPLATE.astype(np.float64) - t) @ np.linalg.inv(scale * rot).T
    m = umeyama(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-4)
    np.testing.assert_allclose(src @ m[:, :2].T + m[:, 2], ARCFACE_TEMPLATE, atol=1e-3)


def test_umeyama_never_reflects() -> None:
    mirrored = ARCFACE_TEMPLATE * np.array([-1.0, 1.0], np.float32)
    m = umeyama(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(m[:, :2]) > 0


def test_real_face_lands_on_the_template(lfw_image: Callable[..., Path]) -> None:
    image = cv2.imread(str(lfw_image()))
    det = build_host_detector(DetectConfig(), precise=True).detect_images([image])[0]
    assert len(det) >= 1
    best = int(np.argmax(det.scores))
    crop, m = align_face(image, det.landmarks[best])
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    mapped = det.landmarks[best] @ m[:, :2].T + m[:, 2]
    # A similarity cannot fit 5 real points exactly; a good face fits within a few px.
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 6.0
    # Detecting again on the aligned crop (padded) finds the face where the template is.
    canvas = cv2.copyMakeBorder(crop, 56, 56, 56, 56, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    again = build_host_detector(DetectConfig(min_face_px=0), precise=True).detect_images(
        [canvas])[0]
    assert len(again) >= 1
    eyes = again.landmarks[int(np.argmax(again.scores))][:2] - 56
    assert np.abs(eyes - ARCFACE_TEMPLATE[:2]).max() < 6.0
