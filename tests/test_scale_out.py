"""Two stream-gate instances share one Redis; a consumer group splits their entries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from .conftest import REDIS_URL, spawn_cli

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_two_instances_one_redis_consumer_group(
    media: Callable[[str], Path], redis_client: redis.Redis, redis_key: str, tmp_path: Path
) -> None:
    procs = []
    for sid, video in (("north", "intel_face-demographics-walking-and-pause.mp4"),
                       ("south", "intel_face-demographics-walking.mp4")):
        cfg = tmp_path / f"{sid}.toml"
        cfg.write_text(f"""
[redis]
url = "{REDIS_URL}"
key = "{redis_key}"
[metrics]
port = 0
[[streams]]
id = "{sid}"
url = "{media(video)}"
fps = 12
""")
        procs.append(spawn_cli("run", "--config", str(cfg)))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    entries = redis_client.xrange(redis_key)
    streams = {f[b"stream_id"] for _, f in entries}
    assert streams == {b"north", b"south"}
    assert len({f[b"emit_id"] for _, f in entries}) == len(entries)

    # Two recognisers in one consumer group: each entry goes to exactly one of them.
    redis_client.xgroup_create(redis_key, "recognisers", id="0")
    seen: dict[str, list[bytes]] = {"a": [], "b": []}
    while True:
        got_any = False
        for consumer in ("a", "b"):
            resp = redis_client.xreadgroup("recognisers", consumer, {redis_key: ">"}, count=2)
            for _, batch in resp:
                for entry_id, _ in batch:
                    seen[consumer].append(entry_id)
                    redis_client.xack(redis_key, "recognisers", entry_id)
                    got_any = True
        if not got_any:
            break
    assert seen["a"] and seen["b"]
    assert sorted(seen["a"] + seen["b"]) == sorted(e for e, _ in entries)
    assert not set(seen["a"]) & set(seen["b"])
