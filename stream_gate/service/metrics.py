"""Metrics and health: Prometheus series on ``/metrics``, ``/healthz`` and ``/readyz``.

Counters that the decode threads already keep (frames decoded, sampled, dropped) and the
stream states are read at scrape time by a collector, so the hot path pays nothing for
them; :class:`Metrics` is a pipeline observer for faces, tracks, scores, emissions and
latencies.
``/healthz`` answers 200 while the processing loop turns; ``/readyz`` answers 200 once a
stream is live and the Redis sink has no outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from stream_gate.pipeline.observe import Health, PipelineObserver
from stream_gate.stages.decode import Reader
from stream_gate.types import Candidate, Emission, Frame, TrackStep

STATES = ("starting", "live", "reconnecting", "failed", "ended")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ReaderCollector(Collector):
    """Per-stream decode counters and state, read from the readers when scraped."""

    def __init__(self, readers: Callable[[], Mapping[str, Reader]]) -> None:
        self._readers = readers

    def collect(self) -> Iterator[Any]:
        decoded = CounterMetricFamily("stream_gate_frames_decoded", "Frames decoded",
                                      labels=["stream"])
        sampled = CounterMetricFamily("stream_gate_frames_sampled",
                                      "Frames kept for analysis", labels=["stream"])
        dropped = CounterMetricFamily("stream_gate_frames_dropped",
                                      "Frames dropped because the pipeline fell behind",
                                      labels=["stream"])
        state = GaugeMetricFamily("stream_gate_stream_state", "1 for the stream's state",
                                  labels=["stream", "state"])
        for sid, r in self._readers().items():
            decoded.add_metric([sid], r.decoded)
            sampled.add_metric([sid], r.sampled)
            dropped.add_metric([sid], r.queue.dropped)
            for s in STATES:
                state.add_metric([sid, s], 1.0 if r.state == s else 0.0)
        yield from (decoded, sampled, dropped, state)


class Metrics(PipelineObserver):
    """The process's series, fed as an observer of the pipeline's loop."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.faces = Counter("stream_gate_faces_detected", "Faces detected", ["stream"],
                             registry=r)
        self.tracks_started = Counter("stream_gate_tracks_started", "Tracks started",
                                      ["stream"], registry=r)
        self.tracks_ended = Counter("stream_gate_tracks_ended", "Confirmed tracks ended",
                                    ["stream"], registry=r)
        self.scored = Counter("stream_gate_crops_scored", "Crops scored", ["stream"],
                              registry=r)
        self.emitted = Counter("stream_gate_crops_emitted", "Crops emitted",
                               ["stream", "reason"], registry=r)
        self.quality = Histogram("stream_gate_emitted_quality", "Quality of emitted crops",
                                 buckets=tuple(range(0, 101, 10)), registry=r)
        self.stage = Histogram("stream_gate_stage_seconds", "Time per batch in each stage",
                               ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("stream_gate_frame_to_publish_seconds",
                                 "Frame decoded -> processed and published",
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.backlog = Gauge("stream_gate_publish_backlog",
                             "Entries waiting for Redis (outage backlog)", registry=r)
        self.spool_failing = Gauge("stream_gate_spool_failing",
                                   "1 while the disk spool refuses writes (entries wait in "
                                   "memory)", registry=r)
        self.last_loop = time.monotonic()
        self._readers: Mapping[str, Reader] = {}
        self._ready: Callable[[], bool] = lambda: False
        r.register(_ReaderCollector(lambda: self._readers))

    def on_streams(self, readers: Mapping[str, Reader], health: Health) -> None:
        self._readers = readers
        self._ready = health.ready
        self.backlog.set_function(health.backlog)  # read when scraped
        self.spool_failing.set_function(lambda: float(health.spool_failing()))

    def on_loop(self) -> None:
        self.last_loop = time.monotonic()

    def on_stage(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)

    def on_tracked(self, frame: Frame, step: TrackStep) -> None:
        sid = frame.stream_id
        self.faces.labels(sid).inc(len(step.faces))
        self.tracks_started.labels(sid).inc(sum(f.hits == 1 for f in step.faces))
        self.tracks_ended.labels(sid).inc(sum(e.confirmed for e in step.ended))

    def on_scored(self, candidate: Candidate) -> None:
        self.scored.labels(candidate.stream_id).inc()

    def on_published(self, emissions: Sequence[Emission]) -> None:
        for em in emissions:
            self.emitted.labels(em.candidate.stream_id, em.reason).inc()
            self.quality.observe(em.candidate.quality)

    def on_batch_done(self, frames: Sequence[Frame], wide: int) -> None:
        now = time.time()
        for f in frames:
            self.latency.observe(now - f.wall_ms / 1000)

    @property
    def healthy(self) -> bool:
        return time.monotonic() - self.last_loop < 30.0

    @property
    def ready(self) -> bool:
        return self.healthy and self._ready()

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Start the HTTP endpoint in a daemon thread; returns the server (``.server_port``)."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, code = generate_latest(metrics.registry), 200
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif self.path in ("/healthz", "/readyz"):
                    ok = metrics.healthy if self.path == "/healthz" else metrics.ready
                    body, code = (b"ok\n", 200) if ok else (b"not ready\n", 503)
                    ctype = "text/plain"
                else:
                    body, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes are not events

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server
