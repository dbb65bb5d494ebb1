"""Find: the tracked faces of a batch of frames (detect -> refine -> track).

Detection is spent where it changes the outcome. Frames due for frame-wide detection
(every ``detect.every``-th of a stream; sooner when a face moves fast, or when so many
faces are tracked that refining them all would cost more than detecting the frame; later,
up to ``detect.every_still``, while nothing moves outside the tracked faces) are
detected in one batch at the scale ``min_face_px`` needs. Small faces found there, and the
tracked faces of every other frame, are detected again on full-resolution crops
(refine.py). Each stream's tracker then takes its frames in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_gate.config import DetectConfig, RuntimeConfig, TrackConfig
from stream_gate.detect import make_detector
from stream_gate.motion import MotionCheck
from stream_gate.refine import CONTEXT, Refiner, merge
from stream_gate.runtime import device_of
from stream_gate.track import Tracker
from stream_gate.types import Detections, FloatArray, Frame, ImageBGR, TrackStep

Timer = Callable[[str, float], float]  # (stage, start) -> now, adding the time to the stage


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


@dataclass
class StreamTracking:
    """One stream's tracker, its analysed frames since the last frame-wide pass, and what
    its view looked like then (for the motion check)."""

    tracker: Tracker
    since_wide: int
    motion: MotionCheck


class FaceFinder:
    """Frame-wide detection every k-th frame, refinement in between, then tracking."""

    def __init__(self, cfg: DetectConfig, runtime: RuntimeConfig) -> None:
        self.cfg = cfg
        self.detector = make_detector(cfg, runtime)
        self.refiner: Refiner | None = None
        if cfg.refine_px:
            # Refinement gives the landmarks crops are aligned with: full precision.
            precise = make_detector(cfg, runtime, precise=True) \
                if self.detector.quantized else self.detector
            self.refiner = Refiner(precise, cfg.refine_px, cfg.refine_small_px)
            if device_of(precise.model) is not None:  # crops cut on the GPU
                from stream_gate.device_stages import DeviceRefiner

                self.refiner = DeviceRefiner(precise, cfg.refine_px, cfg.refine_small_px)
        self.wide_frames = 0  # frames detected frame-wide (the rest: refined around tracks)
        self.wide_cost = UnitCost()  # per frame detected whole
        self.refine_cost = UnitCost()  # per face refined

    def new_stream(self, cfg: TrackConfig) -> StreamTracking:
        """Tracking state for a new stream: its first frame is detected frame-wide."""
        return StreamTracking(Tracker(cfg), since_wide=self.cfg.every,
                              motion=MotionCheck(self.cfg.min_face_px))

    def _wide_due(self, st: StreamTracking, frame: Frame) -> bool:
        """Whether this stream's frame gets frame-wide detection (else refinement).

        Frame-wide on every ``detect.every``-th sampled frame (new faces are found
        there) unless nothing moved outside the tracked faces since the last one (then
        it waits, up to ``every_still`` frames); sooner when a tracked face moves so
        fast that its next position may fall outside the refinement window, or when
        refining every tracked face would take longer than detecting the frame whole
        (a dense crowd), by the running costs of both measured in this process.
        """
        if self.refiner is None:
            return True
        due = st.since_wide + 1
        if due >= self.cfg.every and (due >= self.cfg.every_still or st.motion.moved(
                frame.image, st.tracker.predicted_boxes())):
            return True
        if st.tracker.max_motion() > self.cfg.max_motion:
            return True
        wide, face = self.wide_cost.each, self.refine_cost.each
        return wide is not None and face is not None and st.tracker.live_tracks * face > wide

    def find(self, frames: list[Frame], streams: Mapping[str, StreamTracking], timed: Timer,
             uploaded: list[Any] | None = None) -> list[TrackStep]:
        """Detect (frame-wide in one batch, refined around tracks elsewhere) and track.

        ``uploaded``: the frames already on the models' device (device_stages.py).
        Frames of one stream must be tracked in order, and a refined frame needs the
        tracker's prediction from the frame before it; so after the frame-wide batch the
        frames go in waves (the n-th frame of each stream), one refinement batch a wave.
        """
        t = time.perf_counter()
        plan: list[bool] = []
        for f in frames:
            st = streams[f.stream_id]
            wide = self._wide_due(st, f)
            st.since_wide = 0 if wide else st.since_wide + 1
            if wide and self.cfg.every_still > self.cfg.every:
                st.motion.reset(f.image)
            plan.append(wide)
        wide_idx = [i for i, w in enumerate(plan) if w]
        self.wide_frames += len(wide_idx)
        on_device = getattr(self.detector, "detect_uploaded", None)
        if uploaded is not None and on_device is not None:
            dets = on_device([uploaded[i] for i in wide_idx])
        else:
            dets = self.detector.detect([frames[i].image for i in wide_idx])
        found: dict[int, Detections] = dict(zip(wide_idx, dets, strict=True))
        t, t0 = timed("detect", t), t
        self.wide_cost.add(t - t0, len(wide_idx))
        if self.refiner is not None and wide_idx:
            found.update(self._refine_small(frames, found, uploaded))
            t = timed("refine", t)

        waves: list[list[int]] = []
        seen: dict[str, int] = {}
        for i, f in enumerate(frames):
            n = seen[f.stream_id] = seen.get(f.stream_id, -1) + 1
            if n == len(waves):
                waves.append([])
            waves[n].append(i)
        steps: dict[int, TrackStep] = {}
        for wave in waves:
            jobs: list[tuple[int, int]] = []  # (frame, job) pairs of this wave's refinement
            images: list[tuple[ImageBGR, FloatArray]] = []
            for i in wave:
                if i in found:
                    continue
                for box in streams[frames[i].stream_id].tracker.predicted_boxes():
                    jobs.append((i, len(images)))
                    images.append((frames[i].image, box))
            if images:
                assert self.refiner is not None
                refined = self.refiner.refine(
                    images, None if uploaded is None else [uploaded[i] for i, _ in jobs])
                for i in wave:
                    if i not in found:
                        found[i] = merge([refined[j] for fi, j in jobs if fi == i],
                                         self.cfg.nms_iou)
                t, t0 = timed("refine", t), t
                self.refine_cost.add(t - t0, len(images))
            for i in wave:
                f = frames[i]
                steps[i] = streams[f.stream_id].tracker.step(
                    found.get(i, Detections.empty()), f.t)
            t = timed("track", t)
        return [steps[i] for i in range(len(frames))]

    def _refine_small(self, frames: list[Frame], found: dict[int, Detections],
                      uploaded: list[Any] | None) -> dict[int, Detections]:
        """Faces small at the frame-wide detector's scale, found again at full resolution.

        Their scores (which start tracks) and landmarks (which align crops) are unreliable
        at a few pixels; faces large enough there are kept as they are.
        """
        assert self.refiner is not None
        jobs: list[tuple[int, int]] = []  # (frame, detection) pairs, in refine order
        for i, det in found.items():
            f = frames[i]
            s = self.detector.scale(f.height, f.width)
            size = np.maximum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1])
            jobs += [(i, int(k)) for k in np.flatnonzero(size * s * CONTEXT < self.cfg.refine_px)]
        refined = self.refiner.refine([(frames[i].image, found[i].boxes[k]) for i, k in jobs],
                                      None if uploaded is None else [uploaded[i] for i, _ in jobs])
        picked = set(jobs)
        out: dict[int, Detections] = {}
        for i in {i for i, _ in jobs}:
            parts = [found[i].subset(np.flatnonzero(
                [(i, k) not in picked for k in range(len(found[i]))]))]
            parts += [r if len(r) else found[i].subset(np.array([k]))
                      for (fi, k), r in zip(jobs, refined, strict=True) if fi == i]
            out[i] = merge(parts, self.cfg.nms_iou)
        return out
