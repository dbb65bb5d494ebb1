"""``stream-gate run``: the gate on the streams of a config file, until stopped.

Start-up problems (bad config, missing or unreadable video, unreachable Redis, a model
that does not load) raise :class:`StartupError` before any stream starts; SIGTERM and
SIGINT stop the loop, flush every track and close the sinks within
``decode.shutdown_grace_s``.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import Any

from stream_gate import early
from stream_gate.config import Settings, check_runnable, load_settings
from stream_gate.errors import ConfigError
from stream_gate.log import get_logger
from stream_gate.pipeline.graph import build_pipeline, check_sources
from stream_gate.pipeline.observe import PipelineObserver, RunReport, ScoredDump
from stream_gate.service.cluster import cluster_member
from stream_gate.service.metrics import Metrics
from stream_gate.service.reload import ConfigReloader
from stream_gate.stages.publish import DirectorySink, RedisSink, build_sinks

log = get_logger("stream_gate.cli")


def apply_outputs(settings: Settings, args: argparse.Namespace) -> None:
    """``--out`` and ``--dump-scored`` over the config's ``[output]``."""
    if args.out is not None:
        settings.output.dir = args.out
    if args.dump_scored is not None:
        settings.output.dump_scored = args.dump_scored


def run_gate(settings: Settings, duration: float | None, collect: bool,
             serve_metrics: bool = False, reload_from: Path | None = None
             ) -> tuple[RunReport, RedisSink]:
    """Check, build and run the pipeline of ``settings``; the report and the Redis sink."""
    check_runnable(settings)
    check_sources(settings)
    observers: list[PipelineObserver] = []
    if settings.output.dump_scored is not None:
        observers.append(ScoredDump(DirectorySink(settings.output.dump_scored,
                                                  settings.redis.jpeg_quality,
                                                  what="output.dump_scored")))
    metrics = Metrics() if serve_metrics and settings.metrics.port else None
    if metrics is not None:
        observers.append(metrics)
    # Cluster mode: Redis checked now; leases taken once the pipeline can run cameras.
    member = cluster_member(settings) if settings.cluster.enabled else None
    try:
        redis_sink, sinks = build_sinks(settings, None if member is None else member.holds)
    except BaseException:
        if member is not None:
            member.stop()
        raise
    try:
        pipeline = build_pipeline(settings, sinks, observers, collect=collect,
                                  placement=member)
        if member is not None:
            if metrics is not None:
                metrics.registry.register(member.collector(lambda: redis_sink.fenced))
            member.start()
        if metrics is not None:
            try:
                server = metrics.serve(settings.metrics.host, settings.metrics.port)
            except OSError as exc:
                raise ConfigError(f"metrics.port: cannot listen on {settings.metrics.host}:"
                                  f"{settings.metrics.port}: {exc.strerror}") from None
            log.info("metrics_listening", url=f"http://{settings.metrics.host}:"
                     f"{server.server_port}/metrics")
    except BaseException:  # a model that does not load: no embedded redis-server left over
        if member is not None:
            member.stop()
        for sink in sinks:
            sink.close()
        raise

    def stop(signum: int, _frame: Any) -> None:
        if pipeline.stop_event.is_set():
            return
        grace = settings.decode.shutdown_grace_s
        log.info("stopping", signal=signal.Signals(signum).name, grace_s=grace)
        pipeline.stop_event.set()
        timer = threading.Timer(grace, _grace_exceeded, args=(grace,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if reload_from is not None:
        pipeline.on_tick = ConfigReloader(reload_from, pipeline.apply,
                                          requested=early.HUP.is_set()).poll
    try:
        return pipeline.run(duration), redis_sink
    finally:
        if member is not None:
            member.stop()  # after the sinks closed: the last entries went out under the leases


def _grace_exceeded(grace: float) -> None:
    """Shutdown took longer than allowed: leave now (spooled entries are already on disk)."""
    log.error("shutdown_grace_exceeded", grace_s=grace)
    os._exit(3)


def cmd_run(args: argparse.Namespace) -> int:
    # SIGHUP ends a Python process by default: while models load, it is only noted.
    signal.signal(signal.SIGHUP, early.note_hup)
    settings = load_settings(args.config)
    apply_outputs(settings, args)
    report, sink = run_gate(settings, args.duration, collect=False, serve_metrics=True,
                            reload_from=args.config)
    return finished(report, sink)


def finished(report: RunReport, sink: RedisSink) -> int:
    """Log the run's end; the exit status: 1 when a stream failed or crops were lost."""
    failed = {sid: s["error"] for sid, s in report.streams.items() if s["state"] == "failed"}
    log.info("finished", frames=report.frames, faces=report.faces, emitted=report.emitted,
             published=sink.published, lost=sink.lost, wall_s=round(report.wall_s, 2),
             failed=failed or None)
    return 1 if failed or sink.lost else 0
