"""Errors Redis returns for an entry (a key of another type) are not outages: checked at
start-up where it can be, otherwise the entry goes to the dead-letter folder, said once,
and the rest flows on (the real Redis)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from stream_gate.config import RedisConfig
from stream_gate.errors import SinkError
from stream_gate.stages.publish import RedisSink

from .conftest import REDIS_URL
from .test_publish import emission

pytestmark = pytest.mark.redis


def test_a_key_of_another_type_is_a_start_up_error(redis_client: redis.Redis,
                                                   redis_key: str) -> None:
    redis_client.set(redis_key, "not a stream")
    with pytest.raises(SinkError, match=r"redis\.key: .* holds a string, not a stream"):
        RedisSink(RedisConfig(url=REDIS_URL, key=redis_key))


def test_entries_redis_refuses_go_to_dead_letter_and_the_rest_flows(
        redis_client: redis.Redis, redis_key: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    sink = RedisSink(RedisConfig(url=REDIS_URL, key=redis_key + ":{stream_id}",
                                 spool_dir=spool))
    redis_client.set(redis_key + ":bad", "someone else's string")  # WRONGTYPE for XADD
    try:
        sink.publish([emission(0, "good"), emission(1, "bad"), emission(2, "bad"),
                      emission(3, "good")])
        assert not sink.down and sink.backlog == 0
        assert sink.refused == 2 and sink.published == 2
        assert [f[b"emit_id"] for _, f in redis_client.xrange(redis_key + ":good")] == [
            b"id0", b"id3"]
        assert len(list((spool / "dead-letter").glob("*.entry"))) == 2
        assert not list(spool.glob("*.entry"))  # nothing replayed at the next start
        redis_client.delete(redis_key + ":bad")
        sink.publish([emission(4, "bad")])  # the key is free again: it flows
        assert redis_client.xlen(redis_key + ":bad") == 1
    finally:
        sink.close()
        redis_client.delete(redis_key + ":bad", redis_key + ":good")
