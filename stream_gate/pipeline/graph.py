"""The composition root: the whole pipeline, built in order. Read this file first.

    decode -> batch -> track (detect, refine) -> gate -> align_score -> select -> publish

The backend (host arrays, or torch tensors on a device) is chosen once, here, and the
same answer goes to every stage that runs a model. Each stage's package says what it
does; pipeline/loop.py runs the result, pipeline/streams.py holds the per-stream state,
pipeline/observe.py the report and the other observers.

May import: stages, runtime and below; never cli, bench or service.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream_gate.config import Settings
from stream_gate.pipeline.loop import Pipeline, Transform
from stream_gate.pipeline.observe import PipelineObserver, RunReport
from stream_gate.pipeline.placement import Placement
from stream_gate.pipeline.streams import Streams
from stream_gate.runtime import Backend, choose_backend
from stream_gate.stages.align_score import build_align_score
from stream_gate.stages.batch import build_batcher
from stream_gate.stages.decode import Source
from stream_gate.stages.detect import BuiltDetector, build_detector
from stream_gate.stages.publish import Sink
from stream_gate.stages.refine import build_refiner
from stream_gate.stages.track import TrackStage, build_detect_track


def build_pipeline(settings: Settings, sinks: Sequence[Sink] = (),
                   observers: Sequence[PipelineObserver] = (), collect: bool = False,
                   transform: Transform | None = None,
                   placement: Placement | None = None) -> Pipeline:
    """The full pipeline on the streams of ``settings``, publishing to ``sinks``.

    ``collect``: the run report keeps every track's summary, the emissions and the
    latencies (demo, bench, tests). ``transform``: applied to each frame first (bench).
    ``placement`` (cluster mode): only the streams it leases to this process run.
    """
    backend = choose_backend(settings.runtime)
    # 1-2. decode (one reader per stream, in Streams) and batch, uploaded once on a device
    batcher = build_batcher(settings.detect, backend)
    # 3. track: frame-wide detection every k-th frame, refinement around tracks between
    detector = build_detector(settings.detect, backend)
    refiner = None
    if settings.detect.refine_px:  # its landmarks align the crops: full precision
        precise = build_detector(settings.detect, backend, precise=True) \
            if detector.quantized else detector
        refiner = build_refiner(settings.detect, precise)
    track = build_detect_track(settings.detect, settings.track, detector, refiner)
    # 4-5. gate (per stream, in Streams), then align and score every face of a batch
    align_score = build_align_score(settings.score, backend)
    # 6-7. select (per stream, in Streams) and publish
    streams = Streams(settings, track, align_score.name,
                      origins=None if placement is None else {})
    return Pipeline(streams, batcher, track, align_score, sinks, RunReport(collect=collect),
                    observers, transform, placement)


def check_sources(settings: Settings) -> None:
    """Fail fast, before anything is built, on a video file that is missing or not a
    video (SourceError naming the stream); cameras are tried at run time."""
    for s in settings.streams:
        Source.parse(s.id, s.url, s.fps).check()


def build_partial(settings: Settings, track: TrackStage, backend: Backend | None = None,
                  collect: bool = False, transform: Transform | None = None) -> Pipeline:
    """A graph that ends at ``track`` (no gate, scoring, selection or publishing): the
    bench's smaller variants."""
    backend = backend or choose_backend(settings.runtime)
    streams = Streams(settings, track, model="")
    return Pipeline(streams, build_batcher(settings.detect, backend), track, None, (),
                    RunReport(collect=collect), (), transform)


def build_frame_detector(settings: Settings) -> tuple[Backend, BuiltDetector]:
    """The backend and the frame-wide detector, as the full pipeline builds them."""
    backend = choose_backend(settings.runtime)
    return backend, build_detector(settings.detect, backend)
