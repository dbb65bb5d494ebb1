"""Command line: ``stream-gate run | demo | score | bench | doctor | tail``.

Start-up problems (bad config, missing or unreadable video, unreachable Redis) print one
line per cause to stderr and exit with status 2; run-time problems are logged and
handled by the stage they concern.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream_gate import __version__
from stream_gate.config import Settings, load_settings
from stream_gate.errors import ConfigError, StartupError
from stream_gate.log import get_logger, setup_logging

log = get_logger("stream_gate.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream-gate", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"stream-gate {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-json", action="store_true", default=None,
                   help="JSON log lines (default: when stderr is not a terminal)")
    sub = p.add_subparsers(dest="command", required=True)

    def outputs(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", type=Path, help="also write emitted crops (JPEG + JSON) here")
        sp.add_argument("--dump-scored", type=Path,
                        help="write every scored crop with its scores here (threshold tuning)")
        sp.add_argument("--duration", type=float, help="stop after this many seconds")

    run = sub.add_parser("run", help="run the gate on the streams of a config file")
    run.add_argument("--config", type=Path, required=True, help="TOML config file")
    outputs(run)

    demo = sub.add_parser("demo", help="run on a built-in sample clip with an embedded Redis")
    demo.add_argument("--source", help="a video file or rtsp:// URL instead of the sample")
    demo.add_argument("--config", type=Path, help="TOML file over the demo defaults")
    demo.add_argument("--fps", type=float, default=10.0, help="frames per second to analyse")
    demo.add_argument("--sheet", type=Path, default=Path("stream-gate-demo.png"),
                      help="where to write the contact sheet PNG of the best crops")
    outputs(demo)

    score = sub.add_parser("score", help="detect, align and score faces in still images")
    score.add_argument("images", nargs="+", type=Path, help="image files or folders")
    score.add_argument("--json", action="store_true", help="one JSON line per image")
    score.add_argument("--config", type=Path, help="TOML config file")

    bench = sub.add_parser("bench", help="compare pipeline variants on the same input")
    bench.add_argument("--source", action="append",
                       help="video file or rtsp:// URL (repeat for several; default: the "
                            "demo clip)")
    bench.add_argument("--streams", type=int, default=1, help="concurrent cameras")
    bench.add_argument("--duration", type=float, help="seconds per variant (loops files)")
    bench.add_argument("--fps", type=float, default=5.0, help="analysed frames/s per stream")
    bench.add_argument("--variants", default=",".join(("naive", "decode-only",
                                                       "detector-only", "pipeline")),
                       help="comma-separated; also naive-mirrored: naive on the frames "
                            "flipped left-right, the noise floor of best-shot parity")
    bench.add_argument("--capacity", action="store_true",
                       help="find the most cameras (paced loop://) sustained at --fps with "
                            "p95 latency <= --max-latency-ms")
    bench.add_argument("--max-latency-ms", type=float, default=1000.0)
    bench.add_argument("--config", type=Path, help="TOML file over the defaults")
    bench.add_argument("--yunet", type=Path, metavar="ONNX",
                       help="also run detector-only and pipeline with this YuNet model")
    bench.add_argument("--json", action="store_true", help="print one JSON object")

    doctor = sub.add_parser("doctor", help="check cameras, models, Redis and the config")
    doctor.add_argument("--config", type=Path, required=True, help="TOML config file")

    engines = sub.add_parser("engines", help="TensorRT engines: build ahead, list, verify")
    engines.add_argument("action", choices=("build", "list", "verify"))
    engines.add_argument("--config", type=Path, help="TOML config file (its models, cache)")
    engines.add_argument("--calibrate", type=Path, metavar="VIDEO",
                         help="build: also the detector's int8 engine, calibrated on it")
    engines.add_argument("--media", type=Path, metavar="VIDEO",
                         help="verify: frames to compare on (default: the demo clip)")

    tail = sub.add_parser("tail", help="read published entries back from Redis")
    tail.add_argument("--config", type=Path, help="TOML config file (redis section)")
    tail.add_argument("--url", help="Redis URL (default: redis.url of the config)")
    tail.add_argument("--key", help="stream key (default: redis.key of the config)")
    tail.add_argument("--count", type=int, default=10, help="entries to print (newest last)")
    tail.add_argument("--follow", action="store_true", help="wait for new entries")
    tail.add_argument("--save", type=Path, help="save each entry's crop JPEG here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_json)
    try:
        handler = {"run": cmd_run, "demo": cmd_demo, "score": cmd_score, "tail": cmd_tail,
                   "bench": cmd_bench, "doctor": cmd_doctor, "engines": cmd_engines}
        return int(handler[args.command](args))
    except StartupError as exc:
        for line in str(exc).splitlines():
            print(f"stream-gate: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _apply_outputs(settings: Settings, args: argparse.Namespace) -> None:
    if args.out is not None:
        settings.output.dir = args.out
    if args.dump_scored is not None:
        settings.output.dump_scored = args.dump_scored


def _run_pipeline(settings: Settings, duration: float | None, collect: bool,
                  serve_metrics: bool = False, reload_from: Path | None = None) -> Any:
    # Imported here so `stream-gate --help` and config errors stay fast.
    from stream_gate.pipeline import Pipeline
    from stream_gate.publish import DirectorySink, RedisSink, Sink

    if not settings.streams:
        raise ConfigError("streams: no [[streams]] configured")
    sinks: list[Sink] = []
    if settings.output.dir is not None:
        sinks.append(DirectorySink(settings.output.dir, settings.redis.jpeg_quality))
    dump = None
    if settings.output.dump_scored is not None:
        dump = DirectorySink(settings.output.dump_scored, settings.redis.jpeg_quality)
    metrics = None
    if serve_metrics and settings.metrics.port:
        from stream_gate.metrics import Metrics

        metrics = Metrics()
    pipeline = Pipeline(settings, [], dump, collect=collect, metrics=metrics)
    pipeline.check_sources()
    redis_sink = RedisSink(settings.redis)
    pipeline.sinks = [redis_sink, *sinks]
    if metrics is not None:
        try:
            server = metrics.serve(settings.metrics.host, settings.metrics.port)
        except OSError as exc:
            raise ConfigError(f"metrics.port: cannot listen on {settings.metrics.host}:"
                              f"{settings.metrics.port}: {exc.strerror}") from None
        log.info("metrics_listening", url=f"http://{settings.metrics.host}:"
                 f"{server.server_port}/metrics")

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
        from stream_gate.reload import ConfigReloader

        pipeline.on_tick = ConfigReloader(reload_from, pipeline.apply).poll
    report = pipeline.run(duration)
    return report, redis_sink


def _grace_exceeded(grace: float) -> None:
    """Shutdown took longer than allowed: leave now (spooled entries are already on disk)."""
    log.error("shutdown_grace_exceeded", grace_s=grace)
    os._exit(3)


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    _apply_outputs(settings, args)
    report, sink = _run_pipeline(settings, args.duration, collect=False, serve_metrics=True,
                                 reload_from=args.config)
    failed = {sid: s["error"] for sid, s in report.streams.items() if s["state"] == "failed"}
    log.info("finished", frames=report.frames, faces=report.faces, emitted=report.emitted,
             published=sink.published, wall_s=round(report.wall_s, 2), failed=failed or None)
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from stream_gate.demo import contact_sheet, render_sample_clip, track_table

    with tempfile.TemporaryDirectory(prefix="stream-gate-demo-") as tmp:
        source = args.source
        if source is None:
            print("rendering the sample clip (8 s, 640×360) ...", file=sys.stderr)
            source = str(render_sample_clip(Path(tmp) / "sample.mp4"))
        defaults = {
            "redis": {"url": "embedded"},
            "select": {"top_k": 3},
            "streams": [{"id": "demo", "url": source, "fps": args.fps}],
        }
        settings = load_settings(args.config, defaults)
        _apply_outputs(settings, args)
        t0 = time.perf_counter()
        report, sink = _run_pipeline(settings, args.duration, collect=True)
        print(track_table(report))
        sheet = contact_sheet(report.emissions, args.sheet)
        print(
            f"\n{report.frames} frames, {report.faces} faces, {report.scored} scored, "
            f"{report.emitted} crops emitted, {sink.published} published to Redis "
            f"({settings.redis.url} key {settings.redis.key!r}) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        print(f"contact sheet: {sheet}" if sheet else "no crops emitted: no contact sheet")
        if settings.output.dir is not None:
            print(f"crops and metadata: {settings.output.dir}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from stream_gate.stills import StillScorer, expand_paths

    settings = load_settings(args.config)
    scorer = StillScorer(settings)
    status = 0
    for path in expand_paths(args.images):
        result = scorer.score_file(path)
        if result.error is not None:
            status = 1
        if args.json:
            print(json.dumps(result.as_json()), flush=True)
        elif result.error is not None:
            print(f"{path}: error: {result.error}")
        else:
            faces = ", ".join(f"q={f['quality']:.1f} det={f['det_score']:.2f}"
                              for f in result.faces) or "no face"
            print(f"{path}: {faces}")
    return status


def cmd_bench(args: argparse.Namespace) -> int:
    from stream_gate.bench import VARIANTS, find_capacity, format_table, run_bench, to_json
    from stream_gate.demo import render_sample_clip

    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise ConfigError(f"--variants: unknown {sorted(unknown)}; choose from {VARIANTS}")
    with tempfile.TemporaryDirectory(prefix="stream-gate-bench-") as tmp:
        sources = args.source or [str(render_sample_clip(Path(tmp) / "sample.mp4"))]
        live = args.duration is not None or args.capacity

        def urls(n: int) -> list[dict[str, Any]]:
            out = []
            for i in range(n):
                url = sources[i % len(sources)]
                if live and "://" not in url:
                    url = "loop://" + url
                out.append({"id": f"cam{i + 1}", "url": url, "fps": args.fps})
            return out

        if args.capacity:
            result = find_capacity(
                lambda n: load_settings(args.config, {"streams": urls(n)}),
                args.duration or 20.0, args.fps, args.max_latency_ms)
        else:
            settings = load_settings(args.config, {"streams": urls(args.streams)})
            result = run_bench(settings, args.variants.split(","), args.duration, args.yunet)
        print(to_json(result) if args.json else format_table(result))
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    from stream_gate import engines_tool

    settings = load_settings(args.config)
    if args.action == "list":
        print(engines_tool.format_list(engines_tool.list_engines(settings.runtime),
                                       settings.runtime.engine_cache.expanduser()))
        return 0
    if args.action == "build":
        for path in engines_tool.build(settings, args.calibrate):
            print(f"ready: {path}")
        return 0
    verdict = engines_tool.verify(settings, args.media)
    print(f"{verdict.faces} faces: min IoU {verdict.min_iou:.3f} (>= 0.95), landmarks "
          f"{verdict.max_landmark_px:.2f} px (<= 1), quality {verdict.max_quality_diff:.2f} "
          f"points (<= 1): {'ok' if verdict.ok else 'FAILED'}")
    return 0 if verdict.ok else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from stream_gate.doctor import checks

    failed = 0
    for check in checks(args.config):
        print(check.line(), flush=True)
        failed += not check.ok
    print(f"\n{'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


def cmd_tail(args: argparse.Namespace) -> int:
    import redis

    from stream_gate.errors import SinkError
    from stream_gate.log import redact_url

    settings = load_settings(args.config)
    url = args.url or settings.redis.url
    key = args.key or settings.redis.key
    if url == "embedded":
        raise ConfigError("redis.url: 'embedded' lives only inside a running demo; give --url")
    client = redis.Redis.from_url(url, socket_connect_timeout=settings.redis.connect_timeout_s)
    try:
        entries: Any = client.xrevrange(key, count=args.count)
    except redis.RedisError as exc:
        raise SinkError(f"Redis at {redact_url(url)} is unreachable: {exc}") from None
    entries = list(reversed(entries))
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    last: Any = entries[-1][0] if entries else "$"
    while True:
        for entry_id, fields in entries:
            _print_entry(entry_id, fields, args.save)
            last = entry_id
        if not args.follow:
            return 0
        try:
            got: Any = client.xread({key: last}, block=1000)
        except redis.RedisError as exc:
            raise SinkError(f"Redis at {redact_url(url)} went away: {exc}") from None
        entries = got[0][1] if got else []


def _print_entry(entry_id: bytes, fields: dict[bytes, bytes], save: Path | None) -> None:
    text = {k.decode(): v.decode() for k, v in fields.items() if k != b"crop"}
    crop = fields.get(b"crop", b"")
    print(f"{entry_id.decode()} stream={text.get('stream_id')} track={text.get('track_id')} "
          f"q={text.get('quality')} reason={text.get('reason')} rank={text.get('rank')} "
          f"crop={len(crop)}B emit_id={text.get('emit_id')}", flush=True)
    if save is not None and crop:
        (save / f"{text.get('stream_id')}_t{text.get('track_id')}_{text.get('emit_id')}.jpg"
         ).write_bytes(crop)


if __name__ == "__main__":
    sys.exit(main())
