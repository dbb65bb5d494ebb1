"""Pipeline: wires decode -> batch -> detect -> track -> align -> score -> select -> publish.

One decode thread per stream fills that stream's queue; the main loop gathers frames from
all queues into one batch (up to ``detect.batch_size`` frames, waiting at most
``detect.max_wait_ms``, and no longer than the streams' next frame is due, for a partial
batch). The batch's faces are found and tracked (find.py: frame-wide detection every k-th
frame, refinement around tracks in between), gated, aligned and scored (one scorer call
for all faces of the batch), selected and published, frame by frame in each stream's
order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_gate.align import align_face
from stream_gate.config import ScoreConfig, Settings
from stream_gate.decode import Source, StreamReader
from stream_gate.errors import StartupError
from stream_gate.find import FaceFinder, StreamTracking
from stream_gate.log import get_logger
from stream_gate.metrics import Metrics
from stream_gate.publish import DirectorySink, Sink
from stream_gate.quality_model import CrFiqaScorer
from stream_gate.runtime import device_of
from stream_gate.score import QualityScorer, gate_reason, make_scorer
from stream_gate.select import Selector
from stream_gate.types import (
    Candidate,
    Emission,
    Frame,
    TrackedFace,
    TrackEnd,
)

log = get_logger(__name__)
STAGES = ("decode", "detect", "refine", "track", "align", "score", "select", "publish")


@dataclass
class TrackSummary:
    """What happened to one track, kept when the pipeline runs with ``collect=True``."""

    stream_id: str
    track_id: int
    hits: int = 0
    scored: int = 0
    confirmed: bool = False
    best_quality: float = -1.0
    emitted: list[Emission] = field(default_factory=list)
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)


@dataclass
class RunReport:
    """Counters and stage times of one run."""

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


class _Stream:
    """Per-stream state: reader thread, tracking, selector and its score settings."""

    def __init__(self, settings: Settings, sid: str, model: str, tracking: StreamTracking
                 ) -> None:
        cfg = settings.stream(sid)
        self.url = cfg.url
        self.source = Source.parse(sid, cfg.url, cfg.fps)
        self.stop = threading.Event()  # this stream's own, so it can leave alone
        self.reader = StreamReader(self.source, settings.decode, self.stop)
        self.tracking = tracking
        self.selector = Selector(settings.select_for(sid), model)
        self.score_cfg: ScoreConfig = settings.score_for(sid)
        self.last_scored: dict[int, float] = {}  # track -> media time of its last scoring

    def may_score(self, face: TrackedFace, t: float) -> bool:
        """The per-track scoring cap (``score.max_per_track_hz``; 0 = no cap)."""
        hz = self.score_cfg.max_per_track_hz
        if hz and t - self.last_scored.get(face.track_id, -1e9) < 1.0 / hz - 1e-6:
            return False
        self.last_scored[face.track_id] = t
        return True


class Pipeline:
    """Runs the configured streams until they end, ``duration`` passes or ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink],
        dump_scored: DirectorySink | None = None,
        collect: bool = False,
        detect_only: bool = False,
        metrics: Metrics | None = None,
        on_tick: Callable[[], None] | None = None,
        transform: Callable[[Frame], Frame] | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.dump_scored = dump_scored
        self.collect = collect
        self.detect_only = detect_only  # benchmark bound: decode + detect, nothing after
        self.stop_event = threading.Event()
        self.finder = FaceFinder(settings.detect, settings.runtime)
        self.scorer: QualityScorer = make_scorer(settings.score, settings.runtime)
        # Models on a torch device (torch engine; TensorRT with PyTorch on the GPU): frames
        # go to the device once per batch; detection, alignment and scoring run there
        # (device_stages.py). Imported only then: the CPU install does not need PyTorch.
        self.device_stages: Any = None
        if isinstance(self.scorer, CrFiqaScorer) and device_of(self.scorer.model) is not None:
            from stream_gate.device_stages import DeviceAlignScore

            self.device_stages = DeviceAlignScore(self.scorer)
        self.streams = {s.id: self._new_stream(s.id) for s in settings.streams}
        self.report = RunReport()
        self._turn = 0  # which stream _gather serves first
        self.metrics = metrics
        self.on_tick = on_tick  # called once per loop turn, in this thread (config reload)
        self.transform = transform  # applied to every frame first (bench: mirrored input)
        self._attach_metrics()

    def _new_stream(self, sid: str) -> _Stream:
        return _Stream(self.settings, sid, self.scorer.name,
                       self.finder.new_stream(self.settings.track))

    def _attach_metrics(self) -> None:
        """Point the metrics at the current readers (again after streams change)."""
        if self.metrics is not None:
            self.metrics.attach({sid: st.reader for sid, st in self.streams.items()},
                                self.ready)

    def apply(self, settings: Settings) -> None:
        """Take a reloaded config while running, without touching unchanged streams.

        Thresholds and policies (``score``, ``select``, per-stream overrides) apply at
        once and tracks keep what they hold; streams that left the config are stopped
        and their tracks flushed; new streams (or ones whose url/fps changed) start.
        Detector, decode and tracker settings need a restart.
        """
        wanted = {s.id: s for s in settings.streams}
        for sid in list(self.streams):
            cfg = wanted.get(sid)
            if cfg is None or (cfg.url, cfg.fps) != (self.streams[sid].url,
                                                      self.streams[sid].source.fps):
                self._remove(sid)
        self.settings = settings
        for sid in wanted:
            if sid in self.streams:
                st = self.streams[sid]
                st.selector.cfg = settings.select_for(sid)
                st.score_cfg = settings.score_for(sid)
                continue
            st = self._new_stream(sid)
            try:
                st.source.check()
            except StartupError as exc:
                log.error("stream_rejected", stream_id=sid, error=str(exc))
                continue
            self.streams[sid] = st
            st.reader.start()
            log.info("stream_added", stream_id=sid)
        self._attach_metrics()

    def _remove(self, sid: str) -> None:
        st = self.streams.pop(sid)
        st.stop.set()
        st.reader.join(timeout=5)
        self._publish(self._ends(st, st.tracking.tracker.flush()))
        self._record(sid, st)
        log.info("stream_removed", stream_id=sid)

    def _record(self, sid: str, st: _Stream) -> None:
        self.report.streams[sid] = {
            "state": st.reader.state,
            "error": st.reader.error,
            "decoded": st.reader.decoded,
            "covered": st.reader.covered,
            "sampled": st.reader.sampled,
            "dropped": st.reader.queue.dropped,
            "corrupt_packets": st.reader.corrupt_packets,
        }
        self.report.stage_s["decode"] += st.reader.decode_s

    def ready(self) -> bool:
        """A stream is live and no sink is in an outage."""
        live = any(st.reader.state == "live" for st in self.streams.values())
        return live and not any(getattr(s, "down", False) for s in self.sinks)

    def check_sources(self) -> None:
        """Fail fast on missing or unreadable video files (raises SourceError)."""
        for st in self.streams.values():
            st.source.check()

    def run(self, duration: float | None = None) -> RunReport:
        t_start = time.perf_counter()
        for st in self.streams.values():
            st.reader.start()
        try:
            while not self.stop_event.is_set():
                if self.metrics is not None:
                    self.metrics.heartbeat()
                if self.on_tick is not None:
                    self.on_tick()
                if duration is not None and time.perf_counter() - t_start >= duration:
                    break
                batch = self._gather()
                if batch:
                    self._process(batch)
                elif all(st.reader.queue.exhausted for st in self.streams.values()):
                    break
                else:
                    time.sleep(0.002)
        finally:
            self.stop_event.set()
            for st in self.streams.values():
                st.stop.set()
            deadline = time.monotonic() + 5.0  # readers stuck in a camera read: one wait
            for st in self.streams.values():
                st.reader.join(timeout=max(0.0, deadline - time.monotonic()))
            for sid, st in self.streams.items():
                self._publish(self._ends(st, st.tracking.tracker.flush()))
                self._record(sid, st)
            for sink in self.sinks:
                sink.close()
            self.report.wall_s = time.perf_counter() - t_start
        return self.report

    def _gather(self) -> list[Frame]:
        """Round-robin frames from all queues until the batch is full or the wait is over.

        The wait starts with the first frame of the batch and lasts at most
        ``detect.max_wait_ms``, and at most the time in which the next frame is due from
        the streams together (one analysed frame period divided among them): a frame
        never waits for a batch mate that is not coming soon. Each batch starts one
        stream further on, so with more cameras than batch slots none is starved (its
        drop-oldest queue would otherwise lose every frame).
        """
        size = self.settings.detect.batch_size
        batch: list[Frame] = []
        deadline = 0.0
        order = list(self.streams.values())
        if order:
            self._turn = (self._turn + 1) % len(order)
            order = order[self._turn:] + order[:self._turn]
        while len(batch) < size:
            got = False
            for st in order:
                frame = st.reader.queue.get_nowait() if len(batch) < size else None
                if frame is not None:
                    if not batch:
                        deadline = time.perf_counter() + self._batch_wait_s()
                    batch.append(frame)
                    got = True
            if got:
                continue
            if not batch or time.perf_counter() >= deadline:
                break
            if all(st.reader.queue.closed for st in self.streams.values()):
                break
            time.sleep(0.002)
        return batch

    def _batch_wait_s(self) -> float:
        """How long a partial batch waits: ``max_wait_ms``, capped by the mean gap between
        frames arriving from all live streams together."""
        rate = sum(st.source.fps for st in self.streams.values()
                   if not st.reader.queue.closed)
        return min(self.settings.detect.max_wait_ms / 1e3, 1.0 / rate if rate else 0.0)

    def _timed(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.report.stage_s[stage] += now - t0
        if self.metrics is not None:
            self.metrics.stage.labels(stage).observe(now - t0)
        return now

    def _process(self, frames: list[Frame]) -> None:
        if self.transform is not None:
            frames = [self.transform(f) for f in frames]
        if self.detect_only:
            t = time.perf_counter()
            dets = self.finder.detector.detect([f.image for f in frames])
            self._timed("detect", t)
            self.report.frames += len(frames)
            self.report.faces += sum(len(d) for d in dets)
            self._latency(frames)
            return
        uploaded = None
        if self.device_stages is not None:
            from stream_gate.device_stages import upload_frames

            uploaded = upload_frames([f.image for f in frames], self.device_stages.device)
        steps = self.finder.find(frames, {sid: st.tracking for sid, st in self.streams.items()},
                                 self._timed, uploaded)
        self.report.wide_frames = self.finder.wide_frames
        self.report.frames += len(frames)
        t = time.perf_counter()

        todo: list[tuple[_Stream, Frame, TrackedFace]] = []
        ended: list[tuple[_Stream, list[TrackEnd]]] = []
        for frame, step in zip(frames, steps, strict=True):
            st = self.streams[frame.stream_id]
            self.report.faces += len(step.faces)
            if self.metrics is not None:
                m, sid = self.metrics, frame.stream_id
                m.faces.labels(sid).inc(len(step.faces))
                m.tracks_started.labels(sid).inc(sum(f.hits == 1 for f in step.faces))
                m.tracks_ended.labels(sid).inc(sum(e.confirmed for e in step.ended))
            ended.append((st, step.ended))
            for face in step.faces:
                if self.collect:
                    summ = self._summary(frame.stream_id, face.track_id)
                    summ.hits, summ.confirmed = face.hits, face.confirmed
                    x1, y1, x2, y2 = (float(v) for v in face.box)
                    summ.boxes[frame.index] = (x1, y1, x2, y2)
                if gate_reason(face, st.score_cfg) is not None:
                    self.report.gated += 1
                elif st.may_score(face, frame.t):
                    todo.append((st, frame, face))
                else:
                    self.report.capped += 1
        t = self._timed("track", t)

        if uploaded is not None:  # align + score on the device, in one go
            pos = {id(f): i for i, f in enumerate(frames)}
            crops, scores = self.device_stages.run(
                uploaded, [(pos[id(frame)], face.landmarks) for _, frame, face in todo])
            t = self._timed("score", t)
        else:
            crops = [align_face(frame.image, face.landmarks)[0] for _, frame, face in todo]
            t = self._timed("align", t)
            scores = self.scorer.score(crops, [face.landmarks for _, _, face in todo])
            t = self._timed("score", t)
        self.report.scored += len(todo)

        out: list[Emission] = []
        for i, (st, frame, face) in enumerate(todo):
            cand = Candidate(
                stream_id=frame.stream_id, track_id=face.track_id, frame_index=frame.index,
                pts=frame.pts, t=frame.t, wall_ms=frame.wall_ms, box=face.box,
                landmarks=face.landmarks, det_score=face.score, crop=crops[i],
                quality=float(scores.quality[i]), quality_raw=float(scores.raw[i]),
            )
            if self.collect:
                summ = self._summary(frame.stream_id, face.track_id)
                summ.scored += 1
                summ.best_quality = max(summ.best_quality, cand.quality)
            if self.dump_scored is not None:
                self.dump_scored.write_scored(cand)
            if self.metrics is not None:
                self.metrics.scored.labels(frame.stream_id).inc()
            out += st.selector.offer(cand, face.confirmed)
        for st, ends in ended:
            out += self._ends(st, ends)
        for frame in frames:
            out += self.streams[frame.stream_id].selector.tick(frame.t)
        t = self._timed("select", t)
        self._publish(out)
        self._latency(frames)

    def _latency(self, frames: list[Frame]) -> None:
        now_ms = time.time() * 1000
        if self.collect:
            self.report.latency_ms += [now_ms - f.wall_ms for f in frames]
        if self.metrics is not None:
            for f in frames:
                self.metrics.latency.observe((now_ms - f.wall_ms) / 1000)

    def _ends(self, st: _Stream, ends: list[TrackEnd]) -> list[Emission]:
        out: list[Emission] = []
        for end in ends:
            st.last_scored.pop(end.track_id, None)
            out += st.selector.end(end)
            if end.confirmed:
                log.debug("track_end", stream_id=st.source.stream_id, track_id=end.track_id)
        return out

    def _publish(self, emissions: list[Emission]) -> None:
        if not emissions:
            return
        t = time.perf_counter()
        for sink in self.sinks:
            sink.publish(emissions)
        self._timed("publish", t)
        self.report.emitted += len(emissions)
        if self.metrics is not None:
            self.metrics.backlog.set(sum(getattr(s, "backlog", 0) for s in self.sinks))
            for em in emissions:
                self.metrics.emitted.labels(em.candidate.stream_id, em.reason).inc()
                self.metrics.quality.observe(em.candidate.quality)
        for em in emissions:
            log.info(
                "emitted", stream_id=em.candidate.stream_id, track_id=em.candidate.track_id,
                reason=em.reason, rank=em.rank, quality=round(em.candidate.quality, 1),
            )
            if self.collect:
                self._summary(em.candidate.stream_id, em.candidate.track_id).emitted.append(em)
                self.report.emissions.append(em)

    def _summary(self, sid: str, track_id: int) -> TrackSummary:
        key = (sid, track_id)
        if key not in self.report.tracks:
            self.report.tracks[key] = TrackSummary(sid, track_id)
        return self.report.tracks[key]
