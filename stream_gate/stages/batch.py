"""Batch: frames from every stream's queue into one batch (DeepStream's ``nvstreammux``).

Round robin over the queues until the batch holds ``detect.batch_size`` frames or the
wait is over. The wait starts with the first frame of the batch and lasts at most
``detect.max_wait_ms``, and at most the time in which the next frame is due from the
streams together (one analysed frame period divided among them): a frame never waits
for a batch mate that is not coming soon. Each batch starts one stream further on, so
with more cameras than batch slots none is starved (its drop-oldest queue would
otherwise lose every frame). On a device backend the batch's frames are uploaded here,
once, for every stage after.

May import: config, runtime, types (no other stage: queues are seen through
:class:`Queue`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from stream_gate.config import DetectConfig
from stream_gate.runtime import Backend
from stream_gate.types import Frame, FrameBatch


class Queue(Protocol):
    """A stream's frame queue as the batcher sees it."""

    @property
    def closed(self) -> bool: ...

    def get_nowait(self) -> Frame | None: ...


class Feed(Protocol):
    """One stream's queue and its analysed frame rate."""

    @property
    def queue(self) -> Queue: ...

    @property
    def fps(self) -> float: ...


class Batcher:
    """Gathers frames across streams; :meth:`pack` makes the batch record."""

    def __init__(self, cfg: DetectConfig, pack: Callable[[Sequence[Frame]], FrameBatch]
                 ) -> None:
        self.size = cfg.batch_size
        self.max_wait_s = cfg.max_wait_ms / 1e3
        self.pack = pack
        self._turn = 0  # which feed is served first

    def gather(self, feeds: Sequence[Feed]) -> list[Frame]:
        """Up to ``batch_size`` frames, round robin from ``feeds`` (see the module doc)."""
        batch: list[Frame] = []
        deadline = 0.0
        order = list(feeds)
        if order:
            self._turn = (self._turn + 1) % len(order)
            order = order[self._turn:] + order[:self._turn]
        while len(batch) < self.size:
            got = False
            for feed in order:
                frame = feed.queue.get_nowait() if len(batch) < self.size else None
                if frame is not None:
                    if not batch:
                        deadline = time.perf_counter() + self.wait_s(feeds)
                    batch.append(frame)
                    got = True
            if got:
                continue
            if not batch or time.perf_counter() >= deadline:
                break
            if all(feed.queue.closed for feed in feeds):
                break
            time.sleep(0.002)
        return batch

    def wait_s(self, feeds: Sequence[Feed]) -> float:
        """How long a partial batch waits: ``max_wait_ms``, capped by the mean gap between
        frames arriving from all live streams together."""
        rate = sum(feed.fps for feed in feeds if not feed.queue.closed)
        return min(self.max_wait_s, 1.0 / rate if rate else 0.0)


def build_batcher(cfg: DetectConfig, backend: Backend) -> Batcher:
    """The batcher; on a device backend its batches carry the frames uploaded there."""
    device = backend.device
    if device is None:
        return Batcher(cfg, lambda frames: FrameBatch(frames))
    from stream_gate.runtime.torch_ops import upload_frames  # torch stays optional

    return Batcher(cfg, lambda frames: FrameBatch(
        frames, upload_frames([f.image for f in frames], device)))
