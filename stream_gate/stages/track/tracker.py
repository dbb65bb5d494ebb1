"""Track: a ByteTrack-style multi-face tracker, one instance per stream.

Each frame: predict every track with its Kalman filter; match high-score detections to
all tracks by IoU of buffered (grown) boxes (Hungarian); match the remaining low-score
detections to the tracks still unmatched (this recovers faces whose score dipped from
blur or turning); start
tentative tracks from unmatched high-score detections. A track is confirmed after
``min_hits`` matches; a tentative track dies on its first miss (as in ByteTrack); a
confirmed one ends when unseen for ``max_age_s`` seconds of media time. Every death is
reported once in :class:`TrackStep.ended`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from stream_gate.config import TrackConfig
from stream_gate.geometry import buffered, iou_matrix
from stream_gate.stages.track.kalman import KalmanBox
from stream_gate.types import Detections, FloatArray, TrackedFace, TrackEnd, TrackStep


def match(
    iou: npt.NDArray[np.float64], min_iou: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian matching on IoU; pairs below ``min_iou`` are left unmatched."""
    n, m = iou.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    rows, cols = linear_sum_assignment(-iou)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]
    used_r = {r for r, _ in pairs}
    used_c = {c for _, c in pairs}
    return pairs, [r for r in range(n) if r not in used_r], [c for c in range(m) if c not in used_c]


@dataclass
class _Track:
    track_id: int
    kf: KalmanBox
    hits: int
    last_seen: float
    confirmed: bool


class Tracker:
    """Per-stream tracker; call :meth:`step` for every detected frame, in order."""

    def __init__(self, cfg: TrackConfig) -> None:
        self.cfg = cfg
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    def predicted_boxes(self) -> list[FloatArray]:
        """Where each live track is expected in the next frame (for refinement)."""
        return [tr.kf.peek().astype(np.float32) for tr in self._tracks]

    def max_motion(self) -> float:
        """The fastest live track's displacement per frame, as a fraction of its size."""
        return max((tr.kf.step_motion for tr in self._tracks), default=0.0)

    def step(self, dets: Detections, t: float) -> TrackStep:
        for tr in self._tracks:
            tr.kf.predict()
        high = np.flatnonzero(dets.scores >= self.cfg.high_score)
        low = np.flatnonzero(dets.scores < self.cfg.high_score)
        predicted = buffered(np.array([tr.kf.box for tr in self._tracks]), self.cfg.buffer)
        boxes = buffered(dets.boxes, self.cfg.buffer)

        pairs1, free_tracks, free_high = match(
            iou_matrix(predicted, boxes[high]), self.cfg.match_iou
        )
        matched = [(self._tracks[ti], int(high[di])) for ti, di in pairs1]
        pairs2, _, _ = match(
            iou_matrix(predicted[free_tracks], boxes[low]), self.cfg.low_match_iou
        )
        matched += [(self._tracks[free_tracks[ti]], int(low[di])) for ti, di in pairs2]

        faces: list[TrackedFace] = []
        seen: set[int] = set()
        for tr, di in matched:
            tr.kf.update(dets.boxes[di])
            tr.hits += 1
            tr.last_seen = t
            tr.confirmed = tr.confirmed or tr.hits >= self.cfg.min_hits
            seen.add(tr.track_id)
            faces.append(self._face(tr, dets, di))

        ended: list[TrackEnd] = []
        alive: list[_Track] = []
        for tr in self._tracks:
            if tr.track_id in seen:
                alive.append(tr)
            elif not tr.confirmed or t - tr.last_seen > self.cfg.max_age_s:
                ended.append(TrackEnd(tr.track_id, tr.confirmed, tr.hits))
            else:
                alive.append(tr)

        for di in free_high:
            d = int(high[di])
            if dets.scores[d] < self.cfg.new_track_score:
                continue
            tr = _Track(self._next_id, KalmanBox(dets.boxes[d]), 1, t, self.cfg.min_hits <= 1)
            self._next_id += 1
            alive.append(tr)
            faces.append(self._face(tr, dets, d))
        self._tracks = alive
        faces.sort(key=lambda f: f.track_id)
        return TrackStep(faces=faces, ended=ended)

    def flush(self) -> list[TrackEnd]:
        """End every live track (the stream ended or the process is stopping)."""
        ended = [TrackEnd(tr.track_id, tr.confirmed, tr.hits) for tr in self._tracks]
        self._tracks = []
        return ended

    @staticmethod
    def _face(tr: _Track, dets: Detections, i: int) -> TrackedFace:
        return TrackedFace(
            track_id=tr.track_id,
            confirmed=tr.confirmed,
            hits=tr.hits,
            box=dets.boxes[i],
            score=float(dets.scores[i]),
            landmarks=dets.landmarks[i],
        )
