"""The loop: batches in, one short pass through the stages per batch, until the streams end.

One decode thread per stream fills that stream's queue; the loop gathers frames from all
queues into one batch (the batch stage), then per batch: track (detect + refine inside)
-> gate -> align_score (one call for every face of the batch) -> select -> publish, each
stream's frames in order. What is measured or recorded is told to the observers.
In cluster mode a :class:`Placement` says which streams run (checked once per turn).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from stream_gate.config import Settings
from stream_gate.log import get_logger
from stream_gate.pipeline.observe import Health, PipelineObserver, RunReport
from stream_gate.pipeline.placement import Placement
from stream_gate.pipeline.streams import Streams, StreamState
from stream_gate.stages.align_score import AlignScore
from stream_gate.stages.batch import Batcher
from stream_gate.stages.publish import Sink
from stream_gate.stages.track import TrackStage
from stream_gate.types import (
    Candidate,
    Emission,
    Frame,
    FrameBatch,
    Origin,
    TrackedFace,
    TrackStep,
)

log = get_logger(__name__)
Transform = Callable[[Frame], Frame]


class Pipeline:
    """Runs the streams until they end, ``duration`` passes or ``stop_event`` is set.

    Built by pipeline/graph.py. ``align_score`` None makes a graph that ends at tracking
    (the bench's detector-only bound). With a ``placement`` (cluster mode) the streams
    that run follow its leases, and the loop runs until stopped even with none.
    """

    def __init__(self, streams: Streams, batcher: Batcher, track: TrackStage,
                 align_score: AlignScore | None, sinks: Sequence[Sink],
                 report: RunReport, observers: Sequence[PipelineObserver] = (),
                 transform: Transform | None = None,
                 placement: Placement | None = None) -> None:
        self.streams = streams  # .settings: the whole config (cluster mode: all workers')
        self.placement = placement
        self._leases: dict[str, Origin] = {}
        if placement is not None:
            placement.configure([s.id for s in streams.settings.streams])
        self.batcher = batcher
        self.track = track
        self.align_score = align_score
        self.sinks = list(sinks)
        self.report = report
        self.observers: list[PipelineObserver] = [report, *observers]
        self.transform = transform  # applied to every frame first (bench: mirrored input)
        self.stop_event = threading.Event()
        self.on_tick: Callable[[], None] | None = None  # once per turn (config reload)
        self._announce()

    def _announce(self) -> None:
        readers = {sid: st.reader for sid, st in self.streams.items()}
        for ob in self.observers:
            ob.on_streams(readers, Health(self.ready, self.backlog, self.spool_failing))

    def ready(self) -> bool:
        """A stream is live and no sink is in an outage; in cluster mode: a member of the
        group, no sink in an outage, and a stream live unless it runs none (a spare)."""
        live = any(st.reader.state == "live" for st in self.streams.values())
        if self.placement is not None:
            live = self.placement.ready() and (live or not self.streams)
        return live and not any(s.down for s in self.sinks)

    def backlog(self) -> int:
        """Entries the sinks hold, waiting for Redis."""
        return sum(s.backlog for s in self.sinks)

    def spool_failing(self) -> bool:
        """A sink's disk spool refuses writes (entries wait in memory meanwhile)."""
        return any(s.spool_error is not None for s in self.sinks)

    def apply(self, settings: Settings) -> None:
        """Take a reloaded config while running (see :meth:`Streams.apply`); in cluster
        mode the placement learns the new stream list and its leases decide what runs."""
        if self.placement is not None:
            self.placement.configure([s.id for s in settings.streams])
        self._restream(settings)

    def _restream(self, settings: Settings) -> None:
        removed, owed = self.streams.apply(
            settings, None if self.placement is None else self._leases)
        self._publish(owed)
        for sid, st in removed:
            self._closed(sid, st)
        self._announce()

    def _place(self) -> None:
        """Cluster mode: start and stop streams as the leases changed since the last turn;
        then tell the placement what runs."""
        if self.placement is None:
            return
        leases = dict(self.placement.leases())
        if leases != self._leases:
            self._leases = leases
            self._restream(self.streams.settings)
        self.placement.running({sid: st.reader.state for sid, st in self.streams.items()})

    def run(self, duration: float | None = None) -> RunReport:
        t_start = time.perf_counter()
        for st in self.streams.values():
            st.reader.start()
        try:
            while not self.stop_event.is_set():
                for ob in self.observers:
                    ob.on_loop()
                if self.on_tick is not None:
                    self.on_tick()
                self._place()
                if duration is not None and time.perf_counter() - t_start >= duration:
                    break
                self._publish(self.streams.end_quiet(time.time() * 1000))
                frames = self.batcher.gather(list(self.streams.values()))
                if frames:
                    if self.transform is not None:
                        frames = [self.transform(f) for f in frames]
                    self._process(self.batcher.pack(frames))
                elif self.placement is None and all(st.queue.exhausted
                                                    for st in self.streams.values()):
                    break
                else:
                    time.sleep(0.002)
        finally:
            self._shutdown()
            self.report.wall_s = time.perf_counter() - t_start
        return self.report

    def _shutdown(self) -> None:
        """Stop every reader (one shared wait for those stuck in a camera read), flush
        their tracks, close the sinks."""
        self.stop_event.set()
        for st in self.streams.values():
            st.stop.set()
        deadline = time.monotonic() + 5.0
        for sid in list(self.streams):
            st, owed = self.streams.remove(sid, max(0.0, deadline - time.monotonic()))
            self._publish(owed)
            self._closed(sid, st)
        if self.placement is not None:
            self.placement.running({})
        for sink in self.sinks:
            sink.close()

    def _closed(self, sid: str, st: StreamState) -> None:
        for ob in self.observers:
            ob.on_stream_closed(sid, st.reader)

    def _stage(self, seconds: dict[str, float]) -> None:
        for stage, s in seconds.items():
            for ob in self.observers:
                ob.on_stage(stage, s)

    def _process(self, batch: FrameBatch) -> None:
        """One batch: track -> gate -> align_score -> select -> publish."""
        result = self.track.step(batch)
        self._stage(result.seconds)
        for frame, step in zip(batch.frames, result.steps, strict=True):
            self.streams[frame.stream_id].saw(frame.wall_ms)
            for ob in self.observers:
                ob.on_tracked(frame, step)
        if self.align_score is not None:
            self._publish(self._gate_score_select(self.align_score, batch, result.steps))
        for ob in self.observers:
            ob.on_batch_done(batch.frames, result.wide)

    def _gate_score_select(self, align_score: AlignScore, batch: FrameBatch,
                           steps: Sequence[TrackStep]) -> list[Emission]:
        """The faces that pass their stream's gates, scored in one call, offered to their
        selectors in frame order; then the tracks that ended, then ``max_wait_s``."""
        t = time.perf_counter()
        todo: list[tuple[StreamState, int, TrackedFace]] = []  # (stream, frame index, face)
        for i, (frame, step) in enumerate(zip(batch.frames, steps, strict=True)):
            st = self.streams[frame.stream_id]
            for face in step.faces:
                reason = st.gate.check(face, frame.t)
                if reason is None:
                    todo.append((st, i, face))
                else:
                    for ob in self.observers:
                        ob.on_skipped(frame, face, reason)
        self._stage({"track": time.perf_counter() - t})
        scored = align_score.run(batch, [(i, face.landmarks) for _, i, face in todo])
        self._stage(scored.seconds)
        t = time.perf_counter()
        out: list[Emission] = []
        for n, (st, i, face) in enumerate(todo):
            frame = batch.frames[i]
            cand = Candidate(
                stream_id=frame.stream_id, track_id=face.track_id, frame_index=frame.index,
                pts=frame.pts, t=frame.t, wall_ms=frame.wall_ms, box=face.box,
                landmarks=face.landmarks, det_score=face.score, crop=scored.crops[n],
                quality=float(scored.scores.quality[n]),
                quality_raw=float(scored.scores.raw[n]),
                signature=(None if scored.scores.signature is None
                           else scored.scores.signature[n]))
            for ob in self.observers:
                ob.on_scored(cand)
            out += st.selector.offer(cand, face.confirmed)
        for frame, step in zip(batch.frames, steps, strict=True):
            out += self.streams[frame.stream_id].ends(step.ended)
        for frame in batch.frames:
            out += self.streams[frame.stream_id].selector.tick(frame.t)
        self._stage({"select": time.perf_counter() - t})
        return out

    def _publish(self, emissions: list[Emission]) -> None:
        if self.placement is not None:  # a lease that lapsed since: not this worker's now
            emissions = [em for em in emissions if self.placement.holds(em)]
        if not emissions:
            return
        t = time.perf_counter()
        for sink in self.sinks:
            sink.publish(emissions)
        self._stage({"publish": time.perf_counter() - t})
        for ob in self.observers:
            ob.on_published(emissions)
        for em in emissions:
            log.info("emitted", stream_id=em.candidate.stream_id, track_id=em.candidate.track_id,
                     reason=em.reason, rank=em.rank, quality=round(em.candidate.quality, 1),
                     emit_id=em.emit_id,
                     epoch=None if em.origin is None else em.origin.epoch)
