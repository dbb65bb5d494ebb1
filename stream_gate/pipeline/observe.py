"""Observers of the loop: stage times, the run report, the scored-crop dump (and metrics,
in service/metrics.py) watch the pipeline without the loop branching on any of them.

The loop calls every hook of every observer in order; :class:`PipelineObserver` has a
no-op body for each, so an observer defines only what it watches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from stream_gate.stages.decode import Reader
from stream_gate.stages.publish import DirectorySink
from stream_gate.types import Candidate, Emission, Frame, TrackedFace, TrackStep

STAGES = ("decode", "detect", "refine", "track", "align", "score", "select", "publish")


@dataclass(frozen=True, slots=True)
class Health:
    """The loop's state, read when asked: ``ready`` (a stream is live, no sink is down),
    ``backlog`` (entries the sinks hold), ``spool_failing`` (a spool refuses writes)."""

    ready: Callable[[], bool]
    backlog: Callable[[], int]
    spool_failing: Callable[[], bool]


class PipelineObserver:
    """Hooks of the loop, in the order they come within one batch."""

    def on_streams(self, readers: Mapping[str, Reader], health: Health) -> None:
        """The set of streams changed (start, hot reload); ``health`` reads the loop's
        state when asked."""

    def on_loop(self) -> None:
        """One turn of the loop (a batch or an idle wait)."""

    def on_stage(self, stage: str, seconds: float) -> None:
        """A stage spent ``seconds`` on the current batch."""

    def on_tracked(self, frame: Frame, step: TrackStep) -> None:
        """The tracker's result for one frame."""

    def on_skipped(self, frame: Frame, face: TrackedFace, reason: str) -> None:
        """A tracked face not scored: a gate's name, or ``capped`` (rate cap)."""

    def on_scored(self, candidate: Candidate) -> None:
        """A face aligned and scored."""

    def on_published(self, emissions: Sequence[Emission]) -> None:
        """Emissions handed to the sinks."""

    def on_batch_done(self, frames: Sequence[Frame], wide: int) -> None:
        """A batch is through (``wide``: how many of its frames were detected whole)."""

    def on_stream_closed(self, stream_id: str, reader: Reader) -> None:
        """A stream left (hot reload) or the run ended; its reader has stopped."""


@dataclass
class TrackSummary:
    """What happened to one track, kept when the report collects (``collect=True``)."""

    stream_id: str
    track_id: int
    hits: int = 0
    scored: int = 0
    confirmed: bool = False
    best_quality: float = -1.0
    emitted: list[Emission] = field(default_factory=list)
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)


@dataclass
class RunReport(PipelineObserver):
    """Counters and stage times of one run; with ``collect``, every track's summary, the
    emissions and each frame's latency too (demo, bench, tests)."""

    collect: bool = False
    frames: int = 0
    wide_frames: int = 0  # frames detected frame-wide (the rest: refined around tracks)
    faces: int = 0
    scored: int = 0
    gated: int = 0
    capped: int = 0  # faces not scored because of score.max_per_track_hz
    emitted: int = 0
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    streams: dict[str, dict[str, int | str | None]] = field(default_factory=dict)
    tracks: dict[tuple[str, int], TrackSummary] = field(default_factory=dict)
    emissions: list[Emission] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # decode -> published, per frame

    def on_stage(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds

    def on_tracked(self, frame: Frame, step: TrackStep) -> None:
        self.faces += len(step.faces)
        if self.collect:
            for face in step.faces:
                summ = self._summary(frame.stream_id, face.track_id)
                summ.hits, summ.confirmed = face.hits, face.confirmed
                x1, y1, x2, y2 = (float(v) for v in face.box)
                summ.boxes[frame.index] = (x1, y1, x2, y2)

    def on_skipped(self, frame: Frame, face: TrackedFace, reason: str) -> None:
        if reason == "capped":
            self.capped += 1
        else:
            self.gated += 1

    def on_scored(self, candidate: Candidate) -> None:
        self.scored += 1
        if self.collect:
            summ = self._summary(candidate.stream_id, candidate.track_id)
            summ.scored += 1
            summ.best_quality = max(summ.best_quality, candidate.quality)

    def on_published(self, emissions: Sequence[Emission]) -> None:
        self.emitted += len(emissions)
        if self.collect:
            for em in emissions:
                c = em.candidate
                self._summary(c.stream_id, c.track_id).emitted.append(em)
                self.emissions.append(em)

    def on_batch_done(self, frames: Sequence[Frame], wide: int) -> None:
        self.frames += len(frames)
        self.wide_frames += wide
        if self.collect:
            now_ms = time.time() * 1000
            self.latency_ms += [now_ms - f.wall_ms for f in frames]

    def on_stream_closed(self, stream_id: str, reader: Reader) -> None:
        self.streams[stream_id] = {
            "state": reader.state,
            "error": reader.error,
            "decoded": reader.decoded,
            "covered": reader.covered,
            "sampled": reader.sampled,
            "dropped": reader.queue.dropped,
            "corrupt_packets": reader.corrupt_packets,
        }
        self.stage_s["decode"] += reader.decode_s

    def _summary(self, sid: str, track_id: int) -> TrackSummary:
        key = (sid, track_id)
        if key not in self.tracks:
            self.tracks[key] = TrackSummary(sid, track_id)
        return self.tracks[key]


class ScoredDump(PipelineObserver):
    """``--dump-scored``: every scored crop with its scores, emitted or not, and one line
    per face a gate stopped (``gated.jsonl``): what ``stream-gate review`` reads."""

    GATED = "gated.jsonl"

    def __init__(self, sink: DirectorySink) -> None:
        self.sink = sink

    def on_scored(self, candidate: Candidate) -> None:
        self.sink.write_scored(candidate)

    def on_skipped(self, frame: Frame, face: TrackedFace, reason: str) -> None:
        self.sink.append_line(self.GATED, {
            "stream_id": frame.stream_id, "track_id": face.track_id,
            "frame_index": frame.index, "ts_ms": frame.wall_ms, "reason": reason,
            "det_score": round(face.score, 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]})
