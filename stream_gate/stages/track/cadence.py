"""Cadence: which frames get frame-wide detection, and which only refinement around tracks.

Detection is spent where it changes the outcome. A stream's frame is detected frame-wide
(new faces are found there) every ``detect.every``-th analysed frame, unless nothing moved
outside the tracked faces since the last frame-wide pass (motion.py): then it waits, up
to ``detect.every_still`` frames. It comes sooner when a tracked face moves so fast that
its next position may fall outside the refinement window (``detect.max_motion``), or when
refining every tracked face would take longer than detecting the frame whole (a dense
crowd), by the running costs of both measured in this process.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_gate.config import DetectConfig
from stream_gate.stages.track.motion import MotionCheck
from stream_gate.stages.track.tracker import Tracker
from stream_gate.types import Frame


@dataclass
class UnitCost:
    """Seconds per unit of work (a frame detected whole, a face refined), as a running
    average in which each call weighs ``DECAY`` times the one after it."""

    DECAY = 0.9
    seconds: float = 0.0
    units: float = 0.0

    def add(self, seconds: float, units: int) -> None:
        if units:
            self.seconds = self.DECAY * self.seconds + seconds
            self.units = self.DECAY * self.units + units

    @property
    def each(self) -> float | None:
        return self.seconds / self.units if self.units else None


class StreamCadence:
    """One stream's frames since its last frame-wide pass and its view then."""

    def __init__(self, cfg: DetectConfig) -> None:
        self.cfg = cfg
        self.since_wide = cfg.every  # the first frame is detected frame-wide
        self.motion = MotionCheck(cfg.min_face_px)

    def decide(self, frame: Frame, tracker: Tracker, wide: UnitCost, face: UnitCost,
               refining: bool) -> bool:
        """Whether this frame is detected frame-wide (else refined around the tracks);
        remembers the answer."""
        due = self.due(frame, tracker, wide, face, refining)
        self.since_wide = 0 if due else self.since_wide + 1
        if due and self.cfg.every_still > self.cfg.every:
            self.motion.reset(frame.image)
        return due

    def due(self, frame: Frame, tracker: Tracker, wide: UnitCost, face: UnitCost,
             refining: bool) -> bool:
        """Whether this frame is due for frame-wide detection (the module doc's rules)."""
        if not refining:
            return True
        due = self.since_wide + 1
        if due >= self.cfg.every and (due >= self.cfg.every_still or self.motion.moved(
                frame.image, tracker.predicted_boxes())):
            return True
        if tracker.max_motion() > self.cfg.max_motion:
            return True
        w, f = wide.each, face.each
        return w is not None and f is not None and tracker.live_tracks * f > w
