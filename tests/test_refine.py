"""Refinement: faces found again on full-resolution crops, frame-wide detection only
every k-th frame with the tracked faces refined in between, and fair batching."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stream_gate.bench.variants import run_pipeline_variant
from stream_gate.config import DetectConfig, load_settings
from stream_gate.errors import ConfigError
from stream_gate.geometry import iou_matrix, yaw_estimate
from stream_gate.pipeline.graph import build_pipeline
from stream_gate.stages.detect import build_host_detector
from stream_gate.stages.refine import Planner, Refiner
from stream_gate.stages.refine.windows import PRECISE_MIN_PX
from stream_gate.types import Frame

from .conftest import batch_of
from .test_detect import frames_of

CROWD = "crowd_walking_1080p.mp4"


def test_auto_detector_size_follows_the_smallest_face_asked_for() -> None:
    # min_face_px 16: found at ~8 px -> scale 1/2
    det = build_host_detector(DetectConfig(), precise=True)
    assert det.side(1080, 1920) == 960
    assert det.side(720, 1280) == 640  # never below 640 ...
    assert det.side(270, 480) == 480  # ... nor above the frame
    assert build_host_detector(DetectConfig(min_face_px=32), precise=True).side(2160, 3840) == 960
    assert build_host_detector(DetectConfig(max_side=800), precise=True).side(1080, 1920) == 800


def test_refined_faces_match_full_resolution_detection(media: Callable[[str], Path]) -> None:
    frame = frames_of(media(CROWD), {0})[0]
    full = build_host_detector(DetectConfig(max_side=4096), precise=True).detect_images([frame])[0]
    refiner = Refiner(build_host_detector(DetectConfig(max_side=640), precise=True),
                      Planner(96))
    sure = np.flatnonzero(full.scores > 0.7)
    assert len(sure) >= 5
    refined = refiner.refine(batch_of([frame]), [(0, full.boxes[i]) for i in sure])
    frontal = 0
    for i, r in zip(sure, refined, strict=True):
        assert len(r) == 1, f"face {full.boxes[i]} not found again"
        assert iou_matrix(r.boxes, full.boxes[i:i + 1])[0, 0] > 0.6
        if abs(yaw_estimate(full.landmarks[i])) < 30:  # landmarks of profiles are ambiguous
            frontal += 1
            eye = float(np.linalg.norm(full.landmarks[i, 1] - full.landmarks[i, 0]))
            err = np.linalg.norm(r.landmarks[0] - full.landmarks[i], axis=1).max()
            assert err < 0.25 * eye, (full.boxes[i], err, eye)
    assert frontal >= 3


def test_small_faces_are_found_again_even_from_a_lagging_prediction(
        media: Callable[[str], Path]) -> None:
    """Faces under 40 px (the crowd's back rows) are refined on original pixels, not
    upscaled: every one the full-resolution detector is sure of is found again, with
    landmarks close to its; and also when asked with the box a young track predicts,
    lagging half a face behind (plain IoU with the face < 0.2)."""
    frames = frames_of(media(CROWD), set(range(0, 105, 10)))
    full = build_host_detector(DetectConfig(max_side=4096), precise=True)
    refiner = Refiner(build_host_detector(DetectConfig(max_side=640), precise=True),
                      Planner(96, 192))
    errors: list[float] = []
    for frame in frames:
        faces = full.detect_images([frame])[0]
        size = np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0],
                          faces.boxes[:, 3] - faces.boxes[:, 1])
        for i in np.flatnonzero((faces.scores > 0.5) & (size < 40)):
            box = faces.boxes[i]
            w, h = box[2] - box[0], box[3] - box[1]
            lagging = box - np.array([w, 0.7 * h, w, 0.7 * h], np.float32) / 2
            assert iou_matrix(lagging[None], box[None])[0, 0] < 0.2
            exact, late = refiner.refine(batch_of([frame]), [(0, box), (0, lagging)])
            assert len(exact) == 1 and len(late) == 1, f"small face {box} lost"
            assert iou_matrix(late.boxes, box[None])[0, 0] > 0.6
            errors.append(float(np.linalg.norm(exact.landmarks[0] - faces.landmarks[i],
                                               axis=1).max() / size[i]))
    assert len(errors) >= 8
    assert np.mean(errors) < 0.07  # upscaled crops: 0.078, and 4 of 11 faces lost


def test_small_faces_native_window_puts_landmarks_where_full_frame_detection_does(
        media: Callable[[str], Path]) -> None:
    """The detector's deep layers look ~100 px around a face. A 192-px window of original
    pixels gives them that context, and the landmarks of faces of 32-48 px (which set
    the aligned crop; half a pixel moves a small crop's quality by points) land far
    closer to full-frame detection's than in a 96-px window, mostly black border. Close
    faces sharing one window (fewer pixels to detect on) keep that precision. Faces
    under 32 px, whose quality it barely moves, keep 96-px windows."""
    frames = frames_of(media(CROWD), set(range(0, 105, 5)))
    full = build_host_detector(DetectConfig(precision="fp32", max_side=4096))
    detector = build_host_detector(DetectConfig(), precise=True)  # the pipeline's refiner
    refiners = {"96": Refiner(detector, Planner(96, 96, share=False)),
                "192 own": Refiner(detector, Planner(96, 192, share=False)),
                "192 shared": Refiner(detector, Planner(96, 192))}
    error: dict[str, list[float]] = {name: [] for name in refiners}
    pixels = dict.fromkeys(refiners, 0)
    for frame in frames:
        faces = full.detect_images([frame])[0]
        size = np.maximum(faces.boxes[:, 2] - faces.boxes[:, 0],
                          faces.boxes[:, 3] - faces.boxes[:, 1])
        small = np.flatnonzero((faces.scores > 0.3) & (2 * size <= 96))  # all refined
        # Landmarks worth comparing; faces under PRECISE_MIN_PX keep 96-px windows.
        sure = [i for i in small if faces.scores[i] > 0.5 and size[i] >= PRECISE_MIN_PX]
        for name, refiner in refiners.items():
            jobs = [(0, faces.boxes[i]) for i in small]
            planner = refiner.planner
            assert all(planner.window(faces.boxes[i]).w == (
                96 if size[i] < PRECISE_MIN_PX else planner.small) for i in small)
            pixels[name] += sum(win.w * win.h for win in set(planner.plan(jobs)))
            found = dict(zip(small, refiner.refine(batch_of([frame]), jobs), strict=True))
            error[name] += [float(np.linalg.norm(found[i].landmarks[0] - faces.landmarks[i],
                                                 axis=1).mean()) for i in sure if len(found[i])]
    assert len(error["192 own"]) >= 20
    assert len(error["192 own"]) >= len(error["96"])
    assert len(error["192 shared"]) == len(error["192 own"])
    # Measured (26 faces): 1.4 px mean in 96-px windows, 0.4 px in 192-px ones.
    assert np.mean(error["192 own"]) < 0.6
    assert np.mean(error["192 own"]) < 0.5 * np.mean(error["96"])
    assert np.mean(error["192 shared"]) < np.mean(error["192 own"]) + 0.1
    assert pixels["192 shared"] < 0.97 * pixels["192 own"]  # measured: 0.95


def test_refine_finds_nothing_where_there_is_no_face(media: Callable[[str], Path]) -> None:
    frame = frames_of(media(CROWD), {0})[0]
    sky = np.array([20, 20, 80, 80], np.float32)  # the top-left corner: a wall, no face
    refiner = Refiner(build_host_detector(DetectConfig(), precise=True), Planner(96))
    assert len(refiner.refine(batch_of([frame]), [(0, sky)])[0]) == 0


def test_every_needs_refinement() -> None:
    with pytest.raises(ConfigError, match=r"detect: .*every > 1 needs refine_px > 0"):
        load_settings(None, {"detect": {"every": 3, "refine_px": 0}})


@pytest.mark.slow
def test_frame_wide_detection_every_third_frame_keeps_the_people(
        media: Callable[[str], Path]) -> None:
    """Every 3rd frame detected in full, the rest refined around tracks: the same people
    are tracked and emitted, at a fraction of the frame-wide detections."""
    def run(every: int) -> tuple[int, int, list[float]]:
        s = load_settings(None, {"streams": [{"id": "c", "url": str(media(CROWD))}],
                                 "detect": {"every": every}})
        _, report = run_pipeline_variant(s, None, detect_only=False)
        q = sorted(e.candidate.quality for e in report.emissions)
        return report.frames, report.wide_frames, q

    frames1, wide1, q1 = run(1)
    frames3, wide3, q3 = run(3)
    assert frames1 == frames3 and wide1 == frames1
    assert wide3 <= frames3 / 2  # most frames were refined only
    # As good best shots come out: the five best emitted crops score alike on average.
    assert len(q1) >= 5 and len(q3) >= 5
    assert np.mean(q3[-5:]) >= 0.95 * np.mean(q1[-5:]), (q1, q3)


@pytest.mark.slow
def test_crowds_too_costly_to_refine_are_detected_whole(media: Callable[[str], Path]) -> None:
    """When refining every tracked face costs more than detecting the frame (here:
    512 px refinement crops, ~8 faces), frames are detected whole instead, whatever
    ``every`` says; the same people still come out."""
    def run(refine_px: int) -> tuple[int, int, int]:
        s = load_settings(None, {"streams": [{"id": "c", "url": str(media(CROWD))}],
                                 "detect": {"every": 3, "refine_px": refine_px}})
        _, report = run_pipeline_variant(s, None, detect_only=False)
        return report.frames, report.wide_frames, sum(q.quality > 50 for q in (
            e.candidate for e in report.emissions))

    frames, wide, good = run(96)
    frames_big, wide_big, good_big = run(512)
    assert frames == frames_big
    # The rule weighs measured costs: on a CPU without VNNI the frame-wide pass runs fp32
    # (2-3x dearer than int8), so the big crops win it on fewer frames than on a VNNI
    # CPU; both ways, more frames are detected whole than `every` (a third) and the
    # small crops ask for.
    assert wide <= frames / 2, (wide, wide_big, frames)
    assert wide_big > max(wide, frames / 3 + 1), (wide, wide_big, frames)
    assert good_big >= good - 1


def test_batches_serve_every_camera_in_turn(media: Callable[[str], Path]) -> None:
    """With more cameras than batch slots, no camera is starved of analysis."""
    url = str(media("intel_face-demographics-walking.mp4"))
    s = load_settings(None, {"streams": [{"id": f"cam{i}", "url": url} for i in range(5)],
                             "detect": {"batch_size": 2, "max_wait_ms": 0}})
    pipe = build_pipeline(s, [])
    image = np.zeros((8, 8, 3), np.uint8)
    for sid, st in pipe.streams.items():
        for k in range(4):  # every camera has frames waiting
            st.reader.queue.put(Frame(sid, k, k, k / 5, 0, image), threading.Event())
    served = [f.stream_id for _ in range(5)
              for f in pipe.batcher.gather(list(pipe.streams.values()))]
    assert len(served) == 10
    assert set(served) == set(pipe.streams)  # all five, not the first two over and over
