#!/usr/bin/env python3
"""Soak benchmark: an hour (or more) of looped video through the full pipeline.

Reads a file as ``loop://`` as fast as the machine allows (``loop_speed = 0``) until the
given media time has passed, publishing to the embedded Redis, and prints resident
memory (RSS) and open file descriptors at the start (after warm-up) and at the end.
Usage: .venv/bin/python scripts/soak.py VIDEO [--media-hours 1] [--fps 5]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from stream_gate.bench.report import RssSampler
from stream_gate.config import load_settings
from stream_gate.log import setup_logging
from stream_gate.pipeline.graph import build_pipeline
from stream_gate.stages.publish import RedisSink


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("video", type=Path)
    p.add_argument("--media-hours", type=float, default=1.0)
    p.add_argument("--fps", type=float, default=5.0)
    args = p.parse_args()
    setup_logging("warning")
    settings = load_settings(None, {
        "redis": {"url": "embedded", "maxlen": 1000},
        "decode": {"loop_speed": 0, "drop_oldest": False},  # every sampled frame analysed
        "select": {"policy": "improving", "min_quality": 20},
        "streams": [{"id": "soak", "url": f"loop://{args.video}", "fps": args.fps}],
    })
    pipeline = build_pipeline(settings, [RedisSink(settings.redis)])
    runner = threading.Thread(target=pipeline.run, daemon=True)
    t0 = time.monotonic()
    runner.start()
    reader = pipeline.streams["soak"].reader
    target = args.media_hours * 3600
    start: tuple[float, int] | None = None
    samples = []
    while runner.is_alive():
        time.sleep(2.0)
        media_t = reader.sampled / args.fps
        rss = RssSampler.rss_kb() / 1024
        if start is None and media_t > 120:  # after warm-up: models loaded, caches full
            start = (rss, fds())
        samples.append((media_t, rss))
        if media_t >= target:
            break
        if len(samples) % 30 == 0:
            print(f"media {media_t / 60:6.1f} min  wall {time.monotonic() - t0:6.0f} s  "
                  f"RSS {rss:7.1f} MB  fds {fds()}", flush=True)
    end = (RssSampler.rss_kb() / 1024, fds())
    pipeline.stop_event.set()
    runner.join(30)
    assert start is not None
    print(f"media time {samples[-1][0] / 3600:.2f} h in {time.monotonic() - t0:.0f} s wall; "
          f"frames analysed {pipeline.report.frames}, emitted {pipeline.report.emitted}")
    print(f"RSS start {start[0]:.1f} MB -> end {end[0]:.1f} MB "
          f"({100 * (end[0] - start[0]) / start[0]:+.1f} %); "
          f"open fds start {start[1]} -> end {end[1]}")


if __name__ == "__main__":
    main()
