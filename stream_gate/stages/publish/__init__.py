"""Publish: emitted crops to Redis Streams (schema v1) and, for debugging, a directory.

schema.py is the entry's fields and the crop files' names (one format for every sink and
for ``stream-gate tail``); redis_sink.py is the Redis sink with its outage backlog and
disk spool (spool.py), run on a publisher thread of its own (background.py);
directory.py writes JPEG + JSON files.

May import: config, errors, log, types (no other stage).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from stream_gate.config import Settings
from stream_gate.stages.publish.background import Background
from stream_gate.stages.publish.directory import DirectorySink
from stream_gate.stages.publish.redis_sink import RedisSink
from stream_gate.types import Emission

__all__ = ["DirectorySink", "RedisSink", "Sink", "build_sinks"]


class Sink(Protocol):
    """Where emissions go. ``down``: in an outage now; ``backlog``: entries waiting;
    ``spool_error``: why the disk spool refuses writes now (None: it does not)."""

    @property
    def down(self) -> bool: ...

    @property
    def spool_error(self) -> str | None: ...

    @property
    def backlog(self) -> int: ...

    def publish(self, emissions: Iterable[Emission]) -> None: ...

    def close(self) -> None: ...


def build_sinks(settings: Settings, fence: Callable[[Emission], bool] | None = None
                ) -> tuple[RedisSink, list[Sink]]:
    """The Redis sink (checked reachable now: a start-up error otherwise), and every sink
    in order: Redis (on its publisher thread), then the directory of ``output.dir``.
    ``fence`` (cluster mode): whether an emission's lease still holds (see RedisSink)."""
    redis_sink = RedisSink(settings.redis, fence=fence)
    # Half the shutdown grace for the publisher, the rest to put what is left on disk; a
    # hand-off waits at most a quarter of it (the shutdown's flush, with Redis hung).
    grace = settings.decode.shutdown_grace_s
    sinks: list[Sink] = [Background(redis_sink, grace_s=grace / 2,
                                    handoff_s=min(1.0, grace / 4))]
    if settings.output.dir is not None:
        sinks.append(DirectorySink(settings.output.dir, settings.redis.jpeg_quality))
    return redis_sink, sinks
