"""A sink on a thread of its own, so that no Redis state (down, hung, slow) stalls detection.

The processing loop hands emissions over; the publisher thread sends them in order
(JPEG encoding, XADD, the outage backlog and the spool all happen there) and, while idle,
retries what waits for Redis once a second. The hand-off waits up to ``handoff_s`` for
the publisher to be through with the emissions (a millisecond or two when Redis is well),
so an emission the loop logs as ``emitted`` is in Redis or the sink's care even if the
process is killed the next instant; when the publisher is slower than that (Redis hung),
the loop stops waiting until the publisher has caught up. The hand-off is bounded: past
``limit`` emissions waiting (a publisher stuck for minutes) the oldest is dropped,
counted and logged once per spell.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from stream_gate.log import get_logger, redact_url
from stream_gate.types import Emission

log = get_logger(__name__)
IDLE_RETRY_S = 1.0


class _Sink(Protocol):
    lost: int  # entries that reached neither Redis nor the spool
    spool_error: str | None

    @property
    def down(self) -> bool: ...

    @property
    def backlog(self) -> int: ...

    def publish(self, emissions: Iterable[Emission]) -> None: ...

    def evacuate(self, emissions: Iterable[Emission]) -> None: ...

    def close(self) -> None: ...


class Background:
    """``sink`` run by a publisher thread; the same interface as the sink."""

    def __init__(self, sink: _Sink, limit: int = 10_000, grace_s: float = 5.0,
                 handoff_s: float = 1.0) -> None:
        """``grace_s``: how long ``close`` waits for the thread before it puts what is
        left onto the sink's spool itself (a hung Redis must not lose the last crops)."""
        self.sink = sink
        self.limit = limit
        self.grace_s = grace_s
        self.handoff_s = handoff_s
        self.dropped = 0
        self._handed = 0  # emissions handed over so far, and of those the publisher is
        self._through = 0  # through with (sent, spooled, waiting in the sink, or dropped)
        self._slow = False  # the last hand-off gave up waiting
        self._queue: deque[Emission] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="publish", daemon=True)
        self._thread.start()

    @property
    def down(self) -> bool:
        return self.sink.down

    @property
    def spool_error(self) -> str | None:
        return self.sink.spool_error

    @property
    def backlog(self) -> int:
        """Emissions handed over but not yet taken by the sink, and the sink's own."""
        with self._cond:
            return len(self._queue) + self.sink.backlog

    def publish(self, emissions: Iterable[Emission]) -> None:
        with self._cond:
            before = self._handed
            for em in emissions:
                if len(self._queue) >= self.limit:
                    lost = self._queue.popleft()
                    self._through += 1
                    self.dropped += 1
                    self.sink.lost += 1
                    if self.dropped == 1 or self.dropped % 1000 == 0:
                        log.error("publish_backlog_full", dropped=self.dropped,
                                  dropped_emit_id=lost.emit_id)
                self._queue.append(em)
                self._handed += 1
            self._cond.notify_all()
            if self._slow and self._through < before:
                return  # still busy with what an earlier hand-off gave up waiting for
            mine = self._handed
            self._slow = not self._cond.wait_for(lambda: self._through >= mine,
                                                 self.handoff_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(IDLE_RETRY_S)
                if not self._queue and self._closing:
                    return
                batch = list(self._queue)
                self._queue.clear()
            try:
                self.sink.publish(batch)  # an empty batch retries what waits for Redis
            except Exception as exc:  # the publisher must outlive any one failure
                log.error("publish_failed", entries=len(batch),
                          error=redact_url(f"{type(exc).__name__}: {exc}"))
            with self._cond:
                self._through += len(batch)
                self._cond.notify_all()

    def close(self) -> None:
        """Send what was handed over, then close the sink; when the thread is still stuck
        in a call after ``grace_s`` (a hung Redis), what is left goes to the spool now."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(self.grace_s)
        if self._thread.is_alive():
            with self._cond:
                left = list(self._queue)
                self._queue.clear()
            log.warning("publisher_stuck_at_shutdown", waited_s=self.grace_s,
                        handed_over=len(left))
            self.sink.evacuate(left)
            return
        self.sink.close()
