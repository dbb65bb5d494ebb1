"""DetectTrack: the tracked faces of a batch of frames (detect -> refine -> track).

Detect-every-k with tracking is composite by nature, and this class names the feedback
loop instead of hiding it: the tracker's predictions of the frame before decide where a
frame is refined, so the frames of one stream must go in order. Frames due for frame-wide
detection (cadence.py) are detected in one batch at the scale ``min_face_px`` needs; the
small faces found there, and the tracked faces of every other frame, are detected again
on full-resolution windows (the refine stage). After the frame-wide batch the frames go
in waves (the n-th frame of each stream), one refinement batch a wave.

It owns every stream's tracking state (tracker, cadence) from :meth:`open` to
:meth:`close`; nothing outside reaches into it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from stream_gate.config import DetectConfig, TrackConfig
from stream_gate.geometry import merge
from stream_gate.stages.detect import Detector
from stream_gate.stages.refine import CONTEXT, Job, Refine
from stream_gate.stages.track.cadence import StreamCadence, UnitCost
from stream_gate.stages.track.tracker import Tracker
from stream_gate.types import Detections, FrameBatch, TrackEnd, TrackStep


@dataclass
class _Stream:
    tracker: Tracker
    cadence: StreamCadence


@dataclass(frozen=True, slots=True)
class TrackResult:
    """One batch's tracker steps (in frame order), the seconds spent per stage, and how
    many of its frames were detected frame-wide."""

    steps: list[TrackStep]
    seconds: dict[str, float] = field(default_factory=dict)
    wide: int = 0


class DetectTrack:
    """Frame-wide detection every k-th frame, refinement in between, then tracking."""

    def __init__(self, cfg: DetectConfig, track: TrackConfig, detector: Detector,
                 refiner: Refine | None) -> None:
        self.cfg = cfg
        self.track_cfg = track
        self.detector = detector
        self.refiner = refiner
        self._streams: dict[str, _Stream] = {}
        self.wide_cost = UnitCost()  # per frame detected whole
        self.refine_cost = UnitCost()  # per face refined

    def open(self, stream_id: str) -> None:
        """Start tracking a stream: its first frame is detected frame-wide."""
        self._streams[stream_id] = _Stream(Tracker(self.track_cfg), StreamCadence(self.cfg))

    def close(self, stream_id: str) -> list[TrackEnd]:
        """Stop tracking a stream: its live tracks end."""
        st = self._streams.pop(stream_id, None)
        return st.tracker.flush() if st is not None else []

    def reset(self, stream_id: str) -> list[TrackEnd]:
        """End a stream's live tracks now (its camera went quiet); new tracks get new ids
        and its next frame is detected frame-wide."""
        st = self._streams[stream_id]
        st.cadence = StreamCadence(self.cfg)
        return st.tracker.flush()

    def step(self, batch: FrameBatch) -> TrackResult:
        """Detect (frame-wide in one batch, refined around tracks elsewhere) and track."""
        frames = batch.frames
        seconds = dict.fromkeys(("detect", "refine", "track"), 0.0)
        t = time.perf_counter()
        wide_idx = [i for i, f in enumerate(frames) if self._streams[f.stream_id].cadence.decide(
            f, self._streams[f.stream_id].tracker, self.wide_cost, self.refine_cost,
            self.refiner is not None)]
        found: dict[int, Detections] = dict(zip(
            wide_idx, self.detector.detect(batch.subset(wide_idx)), strict=True))
        now = time.perf_counter()
        seconds["detect"] += now - t
        self.wide_cost.add(now - t, len(wide_idx))
        t = now
        if self.refiner is not None and wide_idx:
            found.update(self._refine_small(self.refiner, batch, found))
            now = time.perf_counter()
            seconds["refine"] += now - t
            t = now

        steps: dict[int, TrackStep] = {}
        for wave in self._waves(batch):
            jobs: list[Job] = []  # this wave's refinement: (frame, predicted box)
            for i in wave:
                if i not in found:
                    jobs += [(i, box) for box in
                             self._streams[frames[i].stream_id].tracker.predicted_boxes()]
            if jobs:
                assert self.refiner is not None  # frames are only refined with a refiner
                refined = self.refiner.refine(batch, jobs)
                for i in wave:
                    if i not in found:
                        found[i] = merge([r for (fi, _), r in zip(jobs, refined, strict=True)
                                          if fi == i], self.cfg.nms_iou)
                now = time.perf_counter()
                seconds["refine"] += now - t
                self.refine_cost.add(now - t, len(jobs))
                t = now
            for i in wave:
                f = frames[i]
                steps[i] = self._streams[f.stream_id].tracker.step(
                    found.get(i, Detections.empty()), f.t)
            now = time.perf_counter()
            seconds["track"] += now - t
            t = now
        return TrackResult([steps[i] for i in range(len(frames))], seconds, len(wide_idx))

    @staticmethod
    def _waves(batch: FrameBatch) -> list[list[int]]:
        """Frame indices in waves: the n-th frame of every stream in wave n."""
        waves: list[list[int]] = []
        seen: dict[str, int] = {}
        for i, f in enumerate(batch.frames):
            n = seen[f.stream_id] = seen.get(f.stream_id, -1) + 1
            if n == len(waves):
                waves.append([])
            waves[n].append(i)
        return waves

    def _refine_small(self, refiner: Refine, batch: FrameBatch, found: dict[int, Detections]
                      ) -> dict[int, Detections]:
        """Faces small at the frame-wide detector's scale, found again at full resolution.

        Their scores (which start tracks) and landmarks (which align crops) are unreliable
        at a few pixels; faces large enough there are kept as they are.
        """
        picks: list[tuple[int, int]] = []  # (frame, detection) pairs, in refine order
        for i, det in found.items():
            f = batch.frames[i]
            s = self.detector.scale(f.height, f.width)
            size = np.maximum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
            picks += [(i, int(k)) for k in np.flatnonzero(size * s * CONTEXT < self.cfg.refine_px)]
        refined = refiner.refine(batch, [(i, found[i].boxes[k]) for i, k in picks])
        picked = set(picks)
        out: dict[int, Detections] = {}
        for i in {i for i, _ in picks}:
            parts = [found[i].subset(np.flatnonzero(
                [(i, k) not in picked for k in range(len(found[i]))]))]
            parts += [r if len(r) else found[i].subset(np.array([k]))
                      for (fi, k), r in zip(picks, refined, strict=True) if fi == i]
            out[i] = merge(parts, self.cfg.nms_iou)
        return out
