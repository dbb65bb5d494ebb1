"""Tracker: synthetic detections with exact expected track ids, births and deaths."""

from __future__ import annotations

import numpy as np

from stream_gate.config import TrackConfig
from stream_gate.geometry import iou_matrix
from stream_gate.stages.track.tracker import Tracker
from stream_gate.types import Detections


def dets(*faces: tuple[float, float, float, float, float]) -> Detections:
    """Detections from (x1, y1, x2, y2, score) tuples with plausible landmarks."""
    if not faces:
        return Detections.empty()
    arr = np.array(faces, np.float32)
    boxes = arr[:, :4]
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
    lms = boxes[:, None, :2] + rel[None] * np.stack([w, h], 1)[:, None, :]
    return Detections(boxes, arr[:, 4], lms.astype(np.float32))


CFG = TrackConfig(min_hits=3, max_age_s=0.5, high_score=0.5, new_track_score=0.6)


def test_iou_matrix_values() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 1 / 3, 0.0]], atol=1e-6)


def test_two_moving_faces_keep_their_ids_and_confirm_after_min_hits() -> None:
    tr = Tracker(CFG)
    ids_per_frame = []
    confirmed_per_frame = []
    for i in range(6):
        t = i * 0.2
        step = tr.step(dets((10 + 8 * i, 10, 60 + 8 * i, 70, 0.9),
                            (300 - 8 * i, 40, 350 - 8 * i, 100, 0.8)), t)
        ids_per_frame.append([f.track_id for f in step.faces])
        confirmed_per_frame.append([f.confirmed for f in step.faces])
        assert step.ended == []
    assert ids_per_frame == [[1, 2]] * 6
    assert confirmed_per_frame == [[False, False]] * 2 + [[True, True]] * 4


def test_confirmed_track_ends_after_max_age_seconds_once() -> None:
    tr = Tracker(CFG)
    for i in range(3):
        tr.step(dets((10, 10, 60, 70, 0.9)), i * 0.2)
    # Unseen at t=0.6 and 0.8 (0.4 s since last seen <= 0.5): still alive, no face.
    assert tr.step(dets(), 0.6).ended == []
    assert tr.step(dets(), 0.8).ended == []
    step = tr.step(dets(), 1.0)  # 0.6 s unseen > max_age_s
    assert [(e.track_id, e.confirmed, e.hits) for e in step.ended] == [(1, True, 3)]
    assert tr.step(dets(), 1.2).ended == []
    assert tr.flush() == []


def test_track_coasts_through_a_gap_and_keeps_its_id() -> None:
    tr = Tracker(CFG)
    for i in range(3):
        tr.step(dets((10 + 5 * i, 10, 60 + 5 * i, 70, 0.9)), i * 0.2)
    tr.step(dets(), 0.6)  # missed once, predicted forward
    step = tr.step(dets((30, 10, 80, 70, 0.9)), 0.8)
    assert [f.track_id for f in step.faces] == [1]
    assert step.faces[0].hits == 4


def test_tentative_track_dies_on_first_miss_as_unconfirmed() -> None:
    tr = Tracker(CFG)
    tr.step(dets((10, 10, 60, 70, 0.9)), 0.0)
    step = tr.step(dets(), 0.2)
    assert [(e.track_id, e.confirmed) for e in step.ended] == [(1, False)]


def test_low_score_detection_continues_but_never_starts_a_track() -> None:
    tr = Tracker(CFG)
    for i in range(3):
        tr.step(dets((10, 10, 60, 70, 0.9)), i * 0.2)
    # The face blurs: score 0.35 (below high_score) still matches in the second stage;
    # a second low-score detection elsewhere starts nothing.
    step = tr.step(dets((12, 10, 62, 70, 0.35), (200, 200, 250, 260, 0.35)), 0.6)
    assert [(f.track_id, f.hits) for f in step.faces] == [(1, 4)]
    # A detection above high_score but below new_track_score starts nothing either.
    step = tr.step(dets((12, 10, 62, 70, 0.9), (200, 200, 250, 260, 0.55)), 0.8)
    assert [f.track_id for f in step.faces] == [1]


def test_min_hits_one_confirms_immediately_and_flush_reports_all() -> None:
    tr = Tracker(TrackConfig(min_hits=1))
    step = tr.step(dets((10, 10, 60, 70, 0.9), (100, 10, 150, 70, 0.9)), 0.0)
    assert all(f.confirmed for f in step.faces)
    assert sorted((e.track_id, e.confirmed) for e in tr.flush()) == [(1, True), (2, True)]


def test_buffered_iou_follows_a_fast_face_at_a_low_frame_rate() -> None:
    # A 50 px face moving 45 px per sampled frame: its boxes barely overlap frame to
    # frame (IoU 0.05), as for a person walking past at 5 analysed frames/s.
    steps = [dets((10 + 45 * i, 10, 60 + 45 * i, 70, 0.9)) for i in range(5)]
    plain = Tracker(TrackConfig(buffer=0.0, min_hits=3, max_age_s=0.5))
    grown = Tracker(TrackConfig(buffer=0.6, min_hits=3, max_age_s=0.5))
    plain_ids = [[f.track_id for f in plain.step(d, i * 0.2).faces] for i, d in enumerate(steps)]
    grown_ids = [[f.track_id for f in grown.step(d, i * 0.2).faces] for i, d in enumerate(steps)]
    assert grown_ids == [[1]] * 5
    assert len({i for ids in plain_ids for i in ids}) >= 3  # fragments into new tracks
