"""Decode: a stream's URL -> a thread that fills a bounded queue with sampled Frames.

One backend today (PyAV, optionally with NVDEC through FFmpeg): source.py says what a URL
means and opens it; reader.py is the per-stream thread (reconnect with backoff, stall
watchdog, sampling to the configured rate, drop-oldest for live sources); clock.py is
media time across loops and reconnects, and the sampler.

May import: config, errors, log, types (no other stage).
"""

from __future__ import annotations

import threading
from typing import Protocol

from stream_gate.config import DecodeConfig
from stream_gate.stages.decode.reader import FrameQueue, StreamReader
from stream_gate.stages.decode.source import Source, hwaccel_error, nominal_rate, open_source

__all__ = ["FrameQueue", "Reader", "Source", "StreamReader", "build_reader", "hwaccel_error",
           "nominal_rate", "open_source"]


class Reader(Protocol):
    """What the pipeline needs of a stream's decoder: a thread, its queue and counters."""

    source: Source
    queue: FrameQueue
    state: str  # starting | live | reconnecting | failed | ended
    error: str | None
    decoded: int
    covered: int
    sampled: int
    corrupt_packets: int
    decode_s: float

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...


def build_reader(source: Source, cfg: DecodeConfig, stop: threading.Event) -> Reader:
    """The reader of one source; it runs once started, until ``stop`` is set."""
    return StreamReader(source, cfg, stop)
