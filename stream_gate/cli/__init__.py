"""Command line: ``stream-gate run | demo | score | bench | engines | doctor | review | tail``.

The parser is here; each command is a file of its own (run.py, demo.py, ...).
May import anything below it: bench, service, pipeline, stages and the rest.

Start-up problems (bad config, missing or unreadable video, unreachable Redis) print one
line per cause to stderr and exit with status 2; run-time problems are logged and
handled by the stage they concern.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from stream_gate import early

# SIGHUP ends a Python process by default, and the imports below take seconds: a `run`
# notes one that comes meanwhile (its config reloader then applies it).
if sys.argv[1:2] == ["run"]:
    signal.signal(signal.SIGHUP, early.note_hup)

from stream_gate import __version__
from stream_gate.cli.bench import cmd_bench
from stream_gate.cli.cluster import cmd_cluster
from stream_gate.cli.demo import cmd_demo
from stream_gate.cli.doctor import cmd_doctor
from stream_gate.cli.engines import cmd_engines
from stream_gate.cli.review import cmd_review
from stream_gate.cli.run import cmd_run
from stream_gate.cli.score import cmd_score
from stream_gate.cli.tail import cmd_tail
from stream_gate.errors import StartupError
from stream_gate.log import redact_url, setup_logging


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
    demo.add_argument("--review", type=Path, default=Path("stream-gate-demo.html"),
                      help="where to write the review page (stream-gate review)")
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
                            "flipped left-right, the noise floor of best-shot parity; "
                            "pipeline-v1: pipeline with the v1 quality model ranking "
                            "crops alone (no consensus)")
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

    review = sub.add_parser("review", help="an HTML tuning page from a --dump-scored folder")
    review.add_argument("dump", type=Path, help="the --dump-scored folder")
    review.add_argument("--out", type=Path, help="the --out folder of the same run (marks "
                        "the emitted crops)")
    review.add_argument("--config", type=Path, help="TOML file (the thresholds to show)")
    review.add_argument("--html", type=Path, help="where to write it (default DUMP/review.html)")

    cluster = sub.add_parser("cluster", help="cluster mode: members and camera placement")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cluster_sub.add_parser("status", help="members, weights, and who runs each "
                                    "camera (epoch, state); exit 1 while a camera has no owner")
    status.add_argument("--config", type=Path, required=True, help="the shared TOML file")
    status.add_argument("--json", action="store_true", help="one JSON object")

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
                   "bench": cmd_bench, "doctor": cmd_doctor, "engines": cmd_engines,
                   "review": cmd_review, "cluster": cmd_cluster}
        return int(handler[args.command](args))
    except StartupError as exc:
        for line in str(exc).splitlines():
            print(f"stream-gate: error: {redact_url(line)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
