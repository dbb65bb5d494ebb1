"""Track: follow each face across a stream's frames (ByteTrack-style), detecting as it goes.

detect_track.py is the stage: frame-wide detection where cadence.py says so (every k-th
frame; later while motion.py sees an idle view; sooner for fast faces or dense crowds),
refinement around the tracks elsewhere, then tracker.py (Kalman boxes from kalman.py,
two-stage IoU association) per stream, in frame order.

May import: stages.detect and stages.refine (detect-every-k with tracking is composite by
nature: the tracker's predictions decide where the next frame is refined), geometry,
config, types.
"""

from __future__ import annotations

from typing import Protocol

from stream_gate.config import DetectConfig, TrackConfig
from stream_gate.stages.detect import Detector
from stream_gate.stages.refine import Refine
from stream_gate.stages.track.detect_track import DetectTrack, TrackResult
from stream_gate.types import FrameBatch, TrackEnd

__all__ = ["DetectTrack", "TrackResult", "TrackStage", "build_detect_track"]


class TrackStage(Protocol):
    """Per-stream tracking state from ``open`` to ``close``; ``step`` takes a batch."""

    def open(self, stream_id: str) -> None: ...

    def close(self, stream_id: str) -> list[TrackEnd]: ...

    def reset(self, stream_id: str) -> list[TrackEnd]:
        """End the stream's live tracks, keep tracking it (a camera gap)."""
        ...

    def step(self, batch: FrameBatch) -> TrackResult: ...


def build_detect_track(cfg: DetectConfig, track: TrackConfig, detector: Detector,
                       refiner: Refine | None) -> DetectTrack:
    """Detection (frame-wide with ``detector``, around tracks with ``refiner``) and tracking."""
    return DetectTrack(cfg, track, detector, refiner)
