"""Readers: one thread per stream turns its source into Frames in a bounded queue.

Each reader samples decoded frames down to the stream's target rate *before* the costly
colour conversion, stamps them with media time and wall-clock time and puts them into a
bounded :class:`FrameQueue`. Live sources (RTSP, ``loop://``) drop the oldest queued
frame when the pipeline falls behind, so it always works on recent frames; a plain file
blocks instead, so every sampled frame of a recording is processed.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import av
import av.error
import numpy as np

from stream_gate.config import DecodeConfig
from stream_gate.log import get_logger, redact_url
from stream_gate.stages.decode.clock import Clock, Sampler
from stream_gate.stages.decode.source import Source, nominal_rate, open_source
from stream_gate.types import Frame

log = get_logger(__name__)


class UnusableSource(Exception):
    """The source answers but can never be used as configured (no video, too large)."""


class FrameQueue:
    """A bounded frame queue; ``put`` either drops the oldest frame or waits for room."""

    def __init__(self, maxsize: int, drop_oldest: bool) -> None:
        self._items: deque[Frame] = deque()
        self._maxsize = maxsize
        self._drop_oldest = drop_oldest
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._cond:
            if self._drop_oldest:
                if len(self._items) >= self._maxsize:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self._maxsize and not stop.is_set():
                    self._cond.wait(0.1)
            self._items.append(frame)

    def get_nowait(self) -> Frame | None:
        with self._cond:
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self.closed = True

    @property
    def exhausted(self) -> bool:
        """True once the reader has finished and every queued frame was taken."""
        with self._cond:
            return self.closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class StreamReader(threading.Thread):
    """Decodes one source into a FrameQueue until the source ends or ``stop`` is set."""

    def __init__(self, source: Source, cfg: DecodeConfig, stop: threading.Event) -> None:
        super().__init__(name=f"decode-{source.stream_id}", daemon=True)
        self.source = source
        self.cfg = cfg
        self.stop_event = stop
        drop = source.is_live if cfg.drop_oldest is None else cfg.drop_oldest
        self.queue = FrameQueue(cfg.queue_size, drop_oldest=drop)
        self.decoded = 0
        self.covered = 0  # source frames passed (decoded or skipped undecoded as NONREF)
        self.sampled = 0
        self.corrupt_packets = 0
        self.state = "starting"
        self.error: str | None = None  # why the stream failed for good
        self.last_error: str | None = None  # the latest reason for a reconnect
        self.decode_s = 0.0
        self._clock = Clock()
        self._sampler = Sampler(source.fps)
        self._pace_start: float | None = None  # wall time of media time 0, for loop://
        self._opened_at = 0.0  # when the current connection was opened
        self._got_frame = False  # whether it has delivered a frame yet
        self._last_frame: float | None = None  # monotonic time of the last frame decoded
        self._last_wall_ms = 0  # wall-clock stamps never go back within a stream
        self._duration: float | None = None  # what the file's header declares, seconds
        self._last_time: float | None = None  # the last decoded frame's own time

    def _set_state(self, state: str, **kw: Any) -> None:
        if state != self.state:
            self.state = state
            level = {"failed": log.error, "reconnecting": log.warning}.get(state, log.info)
            if "warning" in kw:
                level = log.warning
            level("stream_state", stream_id=self.source.stream_id, state=state, **kw)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a reader must never take the process down
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_state("failed", error=self.error)
        finally:
            self.queue.close()

    def _run(self) -> None:
        backoff = self.cfg.reconnect_min_s
        while not self.stop_event.is_set():
            try:
                for frame in self._frames():
                    self.queue.put(frame, self.stop_event)
                    backoff = self.cfg.reconnect_min_s
                    if self.stop_event.is_set():
                        return
            except UnusableSource as exc:  # reconnecting will not change it
                self.error = f"stream {self.source.stream_id!r}: {exc}"
                self._set_state("failed", error=self.error)
                return
            except (av.error.FFmpegError, OSError) as exc:
                msg = redact_url(str(exc))
                waited = time.monotonic() - self._opened_at
                if not self._got_frame and waited >= 0.9 * self.cfg.open_timeout_s:
                    # FFmpeg words a timeout in several ways; say what happened.
                    msg = f"no picture within {waited:.1f} s (camera frozen?): {msg}"
                if self.source.kind == "file":
                    self.error = msg
                    self._set_state("failed", error=msg)
                    return
                self.last_error = msg
                self._set_state("reconnecting", error=msg, retry_in_s=round(backoff, 2))
            else:
                if self.source.kind == "file":
                    self._set_state("ended", **self._damage())
                    return
                if self.source.kind == "loop":
                    continue
                self._set_state("reconnecting", error="stream ended", retry_in_s=backoff)
            self.stop_event.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)

    def _frames(self) -> Iterator[Frame]:
        self._opened_at = time.monotonic()
        self._got_frame = False
        with open_source(self.source, self.cfg) as container:
            if not container.streams.video:
                raise UnusableSource("the source has no video stream")
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if w * h > self.cfg.max_pixels:
                raise UnusableSource(
                    f"resolution {w}x{h} is above decode.max_pixels ({self.cfg.max_pixels})")
            stream.thread_type = "AUTO"
            if self.cfg.threads:
                stream.codec_context.thread_count = self.cfg.threads
            rate = nominal_rate(stream)
            period = 1.0 / rate if rate else 0.0
            if self.cfg.skip_nonref and rate and self.source.fps <= rate / 2:
                # Sampling keeps at most every 2nd frame: let FFmpeg skip decoding the
                # frames no other frame refers to (B-frames); the sampler picks from the rest.
                stream.codec_context.skip_frame = "NONREF"
            live_gap = (time.monotonic() - self._last_frame
                        if self.source.kind == "live" and self._last_frame is not None else 0.0)
            self._clock.restart(live_gap)
            self._duration = container.duration / 1e6 if container.duration else None
            self._set_state("live")
            last_frame = time.monotonic()
            for packet in container.demux(stream):
                if self.stop_event.is_set():
                    return
                t0 = time.perf_counter()
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    self.corrupt_packets += 1
                    frames = []
                self.decode_s += time.perf_counter() - t0
                if frames:
                    last_frame = time.monotonic()
                elif self.source.kind == "live" and time.monotonic() - last_frame > \
                        self.cfg.stall_s:
                    # Packets (or keep-alives) arrive but no picture: a stuck encoder.
                    raise OSError(f"no frame for {self.cfg.stall_s:g} s (watchdog)")
                for vf in frames:
                    yield from self._sample(vf, period)

    def _pace(self, t: float) -> None:
        """Hold a ``loop://`` file to its own frame rate × ``loop_speed``, like a camera."""
        speed = self.cfg.loop_speed
        if self.source.kind != "loop" or speed <= 0:
            return
        now = time.monotonic()
        if self._pace_start is None:
            self._pace_start = now - t / speed
        ahead = self._pace_start + t / speed - now
        if ahead > 0:
            self.stop_event.wait(ahead)

    def _sample(self, vf: Any, period: float) -> Iterator[Frame]:
        self.decoded += 1
        t = self._clock.stamp(vf.time, period)
        # The frame's position in the stream, also when skipped frames were never decoded.
        index = round(t / period) if period > 0 else self.decoded - 1
        self.covered = max(self.covered, index + 1)
        self._pace(t)
        self._got_frame = True
        self._last_frame = time.monotonic()
        self._last_time = vf.time
        if not self._sampler.keep(t):
            return
        t0 = time.perf_counter()
        image: np.ndarray = vf.to_ndarray(format="bgr24")
        self.decode_s += time.perf_counter() - t0
        self.sampled += 1
        yield Frame(
            stream_id=self.source.stream_id,
            index=index,
            pts=vf.pts,
            t=t,
            wall_ms=self._wall_ms(),
            image=image,
        )

    def _damage(self) -> dict[str, Any]:
        """What to say about a file that ended: damaged packets, or an end before the
        duration its header declares (a truncated recording)."""
        said: dict[str, Any] = {}
        if self.corrupt_packets:
            said["corrupt_packets"] = self.corrupt_packets
        end, declared = self._last_time, self._duration
        if end is not None and declared is not None and end < declared - 0.5:
            said["ended_at_s"], said["declared_s"] = round(end, 2), round(declared, 2)
        if said:
            said["warning"] = "the file is damaged or truncated"
        return said

    def _wall_ms(self) -> int:
        """Now, in ms since the epoch, never before the stream's previous frame (a clock
        stepped back by NTP must not reorder a camera's entries)."""
        self._last_wall_ms = max(self._last_wall_ms, int(time.time() * 1000))
        return self._last_wall_ms
