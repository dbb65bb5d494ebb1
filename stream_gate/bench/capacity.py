"""Capacity: the most paced cameras one process sustains at the analysed rate."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from stream_gate.bench.variants import run_pipeline_variant, warm_up
from stream_gate.config import Settings


def search_capacity(sustained: Callable[[int], bool], limit: int) -> int:
    """The largest N in 1..limit with ``sustained(N)``, assuming more cameras never help:
    N doubles until a trial fails, then the gap is bisected (about 2·log2(N) trials, so
    a GPU's 64+ cameras are found in minutes, not an hour of 1, 2, 3, ...)."""
    good, bad, n = 0, limit + 1, 1
    while n <= limit:
        if not sustained(n):
            bad = n
            break
        good, n = n, n * 2
    else:  # every doubling within the limit held: try the limit itself
        if good == limit or sustained(limit):
            return limit
        bad = limit
    while bad - good > 1:
        mid = (good + bad) // 2
        if sustained(mid):
            good = mid
        else:
            bad = mid
    return good


def find_capacity(settings_for: Callable[[int], Settings], duration: float, fps: float,
                  max_latency_ms: float, limit: int = 256) -> dict[str, Any]:
    """Largest N of paced cameras analysed at ``fps`` each with p95 latency in bound.

    A trial of N cameras fails when some stream analysed fewer than 90 % of its
    ``fps × duration`` frames, or p95 latency exceeded ``max_latency_ms``.
    """
    trials: list[dict[str, Any]] = []

    def sustained(n: int) -> bool:
        res, report = run_pipeline_variant(settings_for(n), duration, detect_only=False)
        analysed = [int(s["sampled"] or 0) - int(s["dropped"] or 0)
                    for s in report.streams.values()]
        rate = min(analysed) / report.wall_s
        ok = rate >= 0.9 * fps and res.latency_ms["p95"] <= max_latency_ms
        trials.append({"streams": n, "min_stream_fps": round(rate, 2),
                       "latency_ms": res.latency_ms, "fps_total": res.fps,
                       "peak_rss_mb": res.peak_rss_mb, "sustained": ok})
        print(f"bench: {n} streams: {rate:.2f} analysed fps per stream (min), "
              f"p95 {res.latency_ms['p95']} ms -> {'ok' if ok else 'over'}",
              file=sys.stderr, flush=True)
        return ok

    warm_up(settings_for(1))
    best = search_capacity(sustained, limit)
    trials.sort(key=lambda t: t["streams"])
    return {"capacity": {"max_streams": best, "fps_per_stream": fps,
                         "max_latency_ms": max_latency_ms, "trials": trials}}
