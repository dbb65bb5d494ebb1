"""The bench's variants: smaller or changed graphs of the same pipeline, on the same input.

- ``naive``: what a newcomer writes (settings only: every sampled frame detected at full
  resolution, batch 1, every face aligned and scored, no gates, no refinement);
- ``decode-only``: demux + decode every frame, no colour conversion (the floor);
- ``detector-only``: a graph that ends at frame-wide detection of every sampled frame,
  with the production settings (the bound);
- ``pipeline``: the production graph;
- ``naive-mirrored``: ``naive`` on the frames flipped left-right (the noise floor of
  best-shot parity);
- ``pipeline-v1``: the production graph as it was before cr-fiqa-s v2: the v1 quality
  model (no signature output) and crops ranked by quality alone (``consensus_weight``
  0): what the v2 model and the track consensus cost.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from stream_gate.bench.report import RssSampler, VariantResult, percentiles
from stream_gate.config import Settings
from stream_gate.errors import SourceError
from stream_gate.log import redact_url
from stream_gate.pipeline.graph import (
    build_frame_detector,
    build_partial,
    build_pipeline,
    check_sources,
)
from stream_gate.pipeline.observe import STAGES, RunReport
from stream_gate.stages.decode import Source, open_source
from stream_gate.stages.detect import Detector
from stream_gate.stages.track import TrackResult
from stream_gate.types import Frame, FrameBatch, TrackedFace, TrackEnd, TrackStep

WARM_UP_S = 2.0


class WideOnly:
    """A track stage that only detects: every frame frame-wide, every face reported as
    an unconfirmed track of its own (the detector-only graph)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def open(self, stream_id: str) -> None:
        pass

    def close(self, stream_id: str) -> list[TrackEnd]:
        return []

    def reset(self, stream_id: str) -> list[TrackEnd]:
        return []

    def step(self, batch: FrameBatch) -> TrackResult:
        t = time.perf_counter()
        dets = self.detector.detect(batch)
        steps = [TrackStep([TrackedFace(k, False, 1, d.boxes[k], float(d.scores[k]),
                                        d.landmarks[k]) for k in range(len(d))], [])
                 for d in dets]
        return TrackResult(steps, {"detect": time.perf_counter() - t}, len(batch))


def decode_only(settings: Settings, duration: float | None) -> VariantResult:
    """Demux + decode every frame of every stream, one thread each, no conversion."""
    counts: dict[str, int] = {}
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()

    failed: dict[str, str] = {}

    def work(sid: str, url: str) -> None:
        try:
            decode(sid, url)
        except Exception as exc:  # said once, after the other streams, without secrets
            failed[sid] = redact_url(f"{type(exc).__name__}: {exc}")

    def decode(sid: str, url: str) -> None:
        src = Source.parse(sid, url, 1.0)
        n = 0
        while True:
            with open_source(src, settings.decode) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                for _ in c.decode(stream):
                    n += 1
                    if duration is not None and time.perf_counter() - t0 >= duration:
                        counts[sid] = n
                        return
            if src.kind != "loop":
                counts[sid] = n
                return

    threads = [threading.Thread(target=work, args=(s.id, s.url)) for s in settings.streams]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if failed:
        sampler.stop()
        raise SourceError("; ".join(f"stream {sid!r}: cannot decode: {why}"
                                    for sid, why in failed.items()))
    wall = time.perf_counter() - t0
    total = sum(counts.values())
    return VariantResult(
        fps=round(total / wall, 1), faces_per_s=0.0,
        stage_ms={"decode": round(wall * 1000 / max(total, 1), 2)},
        latency_ms=percentiles([]), peak_rss_mb=round(sampler.stop(), 1),
        frames_decoded=total, frames_analysed=0, wall_s=round(wall, 2))


def run_pipeline_variant(settings: Settings, duration: float | None, detect_only: bool,
                         transform: Callable[[Frame], Frame] | None = None
                         ) -> tuple[VariantResult, RunReport]:
    """One variant's figures and its report (``detect_only``: the graph ends at
    frame-wide detection)."""
    check_sources(settings)
    if detect_only:
        backend, detector = build_frame_detector(settings)
        pipeline = build_partial(settings, WideOnly(detector), backend, collect=True,
                                 transform=transform)
    else:
        pipeline = build_pipeline(settings, collect=True, transform=transform)
    sampler = RssSampler()
    sampler.start()
    report = pipeline.run(duration)
    peak = sampler.stop()
    decoded = sum(int(s["decoded"] or 0) for s in report.streams.values())
    covered = sum(int(s["covered"] or 0) for s in report.streams.values())
    n = max(report.frames, 1)
    stages = ("decode", "detect") if detect_only else STAGES
    return VariantResult(
        fps=round(covered / report.wall_s, 1),
        faces_per_s=round(report.faces / report.wall_s, 1),
        stage_ms={k: round(report.stage_s[k] * 1000 / n, 2) for k in stages},
        latency_ms=percentiles(report.latency_ms), peak_rss_mb=round(peak, 1),
        frames_decoded=decoded, frames_analysed=report.frames, wall_s=round(report.wall_s, 2),
        wide_frames=report.wide_frames,
    ), report


def naive_settings(settings: Settings) -> Settings:
    """Every sampled frame detected at full resolution, batch 1; every face scored."""
    s = settings.model_copy(deep=True)
    s.detect.max_side = 4096
    s.detect.precision = "fp32"
    s.detect.batch_size = 1
    s.detect.max_wait_ms = 0
    s.detect.every = 1
    s.detect.refine_px = 0
    s.decode.skip_nonref = False
    s.score.min_det_score = 0.0
    s.score.min_eye_px = 0.0
    s.score.max_yaw_deg = 90.0
    s.score.max_per_track_hz = 0.0
    for st in s.streams:
        st.score = st.select = None
    return s


class Mirror:
    """Flips frames left-right and maps a report's track boxes back to the originals."""

    def __init__(self) -> None:
        self.widths: dict[str, int] = {}

    def __call__(self, frame: Frame) -> Frame:
        self.widths[frame.stream_id] = frame.width
        return replace(frame, image=np.ascontiguousarray(frame.image[:, ::-1]))

    def unflip(self, report: RunReport) -> None:
        for t in report.tracks.values():
            w = self.widths[t.stream_id]
            t.boxes = {i: (w - x2, y1, w - x1, y2) for i, (x1, y1, x2, y2) in t.boxes.items()}


def as_v1(settings: Settings) -> Settings:
    """The same settings with the v1 quality model ranking crops alone: ``cr-fiqa-s``
    where the settings use the v2 default, and no consensus (a stream that sets its own
    weight keeps it)."""
    s = settings.model_copy(deep=True)
    if s.score.model == "cr-fiqa-s-v2":
        s.score.model = "cr-fiqa-s"
    s.select.consensus_weight = 0.0
    return s


def with_yunet(settings: Settings, path: Path) -> Settings:
    """The same settings with YuNet (from ``path``) as the detector."""
    s = settings.model_copy(deep=True)
    s.detect = s.detect.model_validate({**s.detect.model_dump(), "model": "yunet",
                                        "model_path": path})
    return s


def warm_up(settings: Settings, seconds: float = WARM_UP_S) -> None:
    """Untimed runs of ``naive`` and of the production settings first, so that the first
    timed variant does not pay the process's one-time costs alone (libraries, thread
    pools, the first touch of naive's ~1 GB of buffers: whichever variant ran first was
    5-20 % slower; on a GPU, cuDNN's ~1 s per new input shape)."""
    print("bench: warming up ...", flush=True, file=sys.stderr)
    for cfg in (naive_settings(settings), settings):
        build_pipeline(cfg).run(seconds)
