"""YuNet, the optional faster detector, loaded from a file the config names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_gate.bench.variants import run_pipeline_variant
from stream_gate.config import DetectConfig, load_settings
from stream_gate.errors import ConfigError, ModelError
from stream_gate.geometry import iou_matrix
from stream_gate.stages.detect import build_host_detector

from .conftest import shared_file
from .test_detect import frames_of


@pytest.fixture
def yunet() -> Path:
    return shared_file("models", "yunet_s_dynamic.onnx")


def test_yunet_finds_the_face_centerface_finds(yunet: Path,
                                               lfw_image: Callable[..., Path]) -> None:
    photo = cv2.imread(str(lfw_image()))
    y = build_host_detector(DetectConfig(model="yunet", model_path=yunet)).detect_images([photo])[0]
    c = build_host_detector(DetectConfig(), precise=True).detect_images([photo])[0]
    assert len(y) == 1 and len(c) == 1
    assert iou_matrix(y.boxes, c.boxes)[0, 0] > 0.75
    # Same landmark order (image-left eye first); the two nets, trained on different
    # annotations, agree within 15 % of the eye distance.
    eye = float(np.linalg.norm(c.landmarks[0, 1] - c.landmarks[0, 0]))
    assert y.landmarks[0, 0, 0] < y.landmarks[0, 1, 0]
    assert np.linalg.norm(y.landmarks[0] - c.landmarks[0], axis=1).max() < 0.15 * eye


def test_yunet_on_a_crowd_frame(yunet: Path, media: Callable[[str], Path]) -> None:
    frame = frames_of(media("crowd_walking_1080p.mp4"), {0})[0]
    cfg = DetectConfig(model="yunet", model_path=yunet, max_side=960)
    y = build_host_detector(cfg).detect_images([frame])[0]
    c = build_host_detector(DetectConfig(max_side=960), precise=True).detect_images([frame])[0]
    sure = c.boxes[c.scores > 0.7]
    assert len(sure) >= 5
    found = (iou_matrix(sure, y.boxes).max(axis=1) > 0.5).mean()
    assert found >= 0.8, found


def test_yunet_pipeline_emits_best_shots(yunet: Path, media: Callable[[str], Path]) -> None:
    s = load_settings(None, {
        "detect": {"model": "yunet", "model_path": str(yunet)},
        "streams": [{"id": "walk", "url": str(media("intel_face-demographics-walking.mp4")),
                     "fps": 12}]})
    _, report = run_pipeline_variant(s, None, detect_only=False)
    assert report.emitted >= 1
    assert all(e.candidate.crop.shape == (112, 112, 3) for e in report.emissions)


def test_yunet_needs_a_file_and_a_real_one(yunet: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"detect: .*needs model_path"):
        load_settings(None, {"detect": {"model": "yunet"}})
    with pytest.raises(ModelError, match="YuNet model not found"):
        build_host_detector(DetectConfig(model="yunet", model_path=tmp_path / "nope.onnx"))
    other = shared_file("models", "mobilefacenet_128d.onnx")
    with pytest.raises(ModelError, match="is not a YuNet model"):
        build_host_detector(DetectConfig(model="yunet", model_path=other))
    fixed = shared_file("models", "yunet_s_640_640.onnx")
    with pytest.raises(ModelError, match="fixed input size"):
        build_host_detector(DetectConfig(model="yunet", model_path=fixed))
