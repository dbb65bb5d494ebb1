"""Publishing: schema v1 entries in the real Redis, the directory sink, outages."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from stream_gate.config import RedisConfig
from stream_gate.errors import SinkError
from stream_gate.stages.publish import DirectorySink, RedisSink
from stream_gate.types import Candidate, Emission, Origin

from .conftest import free_port
from .conftest import start_redis as _start

SCHEMA_FIELDS = {"v", "emit_id", "stream_id", "track_id", "rank", "reason", "quality",
                 "quality_raw", "det_score", "ts_ms", "pts", "frame_index", "bbox",
                 "landmarks", "crop", "model"}
CLUSTER_FIELDS = {"owner", "epoch"}  # cluster mode only


def emission(i: int, stream: str = "cam", origin: Origin | None = None) -> Emission:
    crop = np.full((112, 112, 3), 40 + i, np.uint8)
    cv2.circle(crop, (56, 56), 30, (200, 180, 160), -1)
    c = Candidate(
        stream_id=stream, track_id=7, frame_index=100 + i, pts=1000 + i, t=4.0 + i,
        wall_ms=1_700_000_000_000 + i, box=np.array([10, 20, 110, 140], np.float32),
        landmarks=np.arange(10, dtype=np.float32).reshape(5, 2), det_score=0.91, crop=crop,
        quality=70.5 + i, quality_raw=0.705 + i / 100,
    )
    return Emission(emit_id=f"id{i}", reason="track_end", rank=1, candidate=c, model="heuristic",
                    origin=origin)


@pytest.mark.redis
def test_entries_carry_every_schema_field(redis_client: redis.Redis, redis_key: str) -> None:
    sink = RedisSink(RedisConfig(url="redis://127.0.0.1:6379/0", key=redis_key))
    sink.publish([emission(0), emission(1)])
    sink.close()
    entries = redis_client.xrange(redis_key)
    assert len(entries) == 2
    fields = {k.decode(): v for k, v in entries[0][1].items()}
    assert set(fields) == SCHEMA_FIELDS
    assert fields["v"] == b"1" and fields["emit_id"] == b"id0"
    assert json.loads(fields["bbox"]) == [10.0, 20.0, 110.0, 140.0]
    assert np.array(json.loads(fields["landmarks"])).shape == (5, 2)
    assert float(fields["quality"]) == pytest.approx(70.5)
    crop = cv2.imdecode(np.frombuffer(fields["crop"], np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)
    assert entries[1][1][b"emit_id"] == b"id1"


@pytest.mark.redis
def test_key_template_per_stream(redis_client: redis.Redis, redis_key: str) -> None:
    sink = RedisSink(RedisConfig(url="redis://127.0.0.1:6379/0", key=redis_key + ":{stream_id}"))
    try:
        sink.publish([emission(0, "door"), emission(1, "hall")])
        assert redis_client.xlen(redis_key + ":door") == 1
        assert redis_client.xlen(redis_key + ":hall") == 1
    finally:
        sink.close()
        redis_client.delete(redis_key + ":door", redis_key + ":hall")


def test_unreachable_redis_is_a_startup_error() -> None:
    with pytest.raises(SinkError, match=r"Redis at redis://127\.0\.0\.1:1/0 is unreachable"):
        RedisSink(RedisConfig(url="redis://127.0.0.1:1/0", connect_timeout_s=1))


def test_embedded_redis_works_and_is_stopped() -> None:
    sink = RedisSink(RedisConfig(url="embedded"))
    sink.publish([emission(0)])
    assert sink.client.xlen("stream_gate:crops") == 1
    sock = sink.url.removeprefix("unix://")
    sink.close()
    with pytest.raises(redis.RedisError):
        redis.Redis(unix_socket_path=sock, socket_connect_timeout=1).ping()


def test_directory_sink_pairs_jpeg_and_json(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "crops")
    sink.publish([emission(0), emission(1)])
    jpgs = sorted((tmp_path / "crops").glob("*.jpg"))
    assert len(jpgs) == 2
    for jpg in jpgs:
        meta = json.loads(jpg.with_suffix(".json").read_text())
        assert set(meta) == SCHEMA_FIELDS - {"crop"}
        assert cv2.imread(str(jpg)).shape == (112, 112, 3)


@pytest.mark.redis
def test_outage_keeps_entries_and_sends_them_in_order(
    private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, procs = private_redis
    _start(port, procs, tmp_path)
    sink = RedisSink(RedisConfig(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=0.5))
    sink.publish([emission(0)])
    procs[0].kill()
    procs[0].wait()
    sink.publish([emission(1)])  # Redis is down: kept, not raised
    sink.publish([emission(2)])
    assert sink.backlog == 2
    _start(port, procs, tmp_path)  # a fresh, empty server on the same port
    time.sleep(0.6)  # past the first retry backoff (0.5 s)
    sink.publish([emission(3)])
    assert sink.backlog == 0
    ids = [f[b"emit_id"] for _, f in redis.Redis(port=port).xrange("stream_gate:crops")]
    assert ids == [b"id1", b"id2", b"id3"]
    sink.close()


def test_readme_documents_every_schema_field() -> None:
    from .conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Redis entry (schema `v=1`)")[1].split("\n## ")[0]
    documented = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert documented == SCHEMA_FIELDS | CLUSTER_FIELDS


@pytest.mark.redis
def test_spool_keeps_entries_on_disk_across_a_restart(
    private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, procs = private_redis
    _start(port, procs, tmp_path)
    cfg = RedisConfig(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=0.5,
                      spool_dir=tmp_path / "spool")
    sink = RedisSink(cfg)
    sink.publish([emission(0)])
    procs[0].kill()
    procs[0].wait()
    for i in (1, 2, 3):
        sink.publish([emission(i)])
    sink.close()  # Redis still down: the three entries stay on disk
    assert len(list((tmp_path / "spool").glob("*.entry"))) == 3
    _start(port, procs, tmp_path)
    again = RedisSink(cfg)  # a new process would do this at start-up: replay first
    again.publish([emission(4)])
    again.close()
    entries = redis.Redis(port=port).xrange("stream_gate:crops")
    assert [f[b"emit_id"] for _, f in entries] == [b"id1", b"id2", b"id3", b"id4"]
    crop = cv2.imdecode(np.frombuffer(entries[0][1][b"crop"], np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)
    assert list((tmp_path / "spool").glob("*.entry")) == []


@pytest.mark.redis
def test_cluster_entries_carry_owner_and_epoch_through_the_spool_and_the_fence_drops_lapsed(
    private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    port, procs = private_redis
    _start(port, procs, tmp_path)
    held = {("cam", 7)}  # the fence: camera "cam" is held under epoch 7 only
    cfg = RedisConfig(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=0.5,
                      spool_dir=tmp_path / "spool")
    sink = RedisSink(cfg, fence=lambda em: em.origin is not None and (
        em.candidate.stream_id, em.origin.epoch) in held)
    sink.publish([emission(0, origin=Origin("w1", 7))])
    (_, first), = redis.Redis(port=port).xrange("stream_gate:crops")
    assert set(first) == {k.encode() for k in SCHEMA_FIELDS | CLUSTER_FIELDS}
    held.clear()  # the lease lapsed (a paused worker): with Redis up, it is fenced
    sink.publish([emission(1, origin=Origin("w1", 7))])
    assert sink.fenced == 1
    held.add(("cam", 7))
    procs[0].kill()
    procs[0].wait()
    sink.publish([emission(2, origin=Origin("w1", 7))])  # Redis down: onto the spool
    # The outage lapses the lease before the publisher gets to an emission the pipeline
    # handed over under it: it waits with the others, it is not fenced.
    held.clear()
    sink.publish([emission(3, origin=Origin("w1", 7))])
    sink.close()
    assert sink.fenced == 1
    _start(port, procs, tmp_path)
    again = RedisSink(cfg)  # the spool is sent whatever the fence says now
    again.close()
    entries = redis.Redis(port=port).xrange("stream_gate:crops")
    fields = [{k.decode(): v.decode() for k, v in f.items() if k != b"crop"} for _, f in entries]
    # A new, empty Redis: id0 went with it; id1 never reached it.
    assert [f["emit_id"] for f in fields] == ["id2", "id3"]
    assert fields[0]["owner"] == "w1" and fields[0]["epoch"] == "7"


def test_a_call_to_an_unreachable_redis_fails_at_once_not_after_retries() -> None:
    """redis-py retries a failed call ten times by default (seconds in all): our clients
    fail at once and leave the retrying to the sink's backoff and the member's heartbeat,
    so an outage does not put the publisher seconds behind its hand-offs."""
    from stream_gate.stages.publish.connect import make_client

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = make_client(RedisConfig(url=url, connect_timeout_s=2.0), url)
    t0 = time.perf_counter()
    with pytest.raises(redis.ConnectionError):
        client.xadd("k", {"a": "b"})
    assert time.perf_counter() - t0 < 1.0  # refused at once; with the retries about 3 s


def test_spool_drops_oldest_when_full(tmp_path: Path) -> None:
    from stream_gate.stages.publish.spool import Spool

    sp = Spool(tmp_path, max_entries=2)
    for i in range(3):
        sp.append("k", {"emit_id": f"id{i}", "crop": b"\xff\xd8"})
    assert sp.dropped == 1
    assert [e["emit_id"] for _, (_, e) in sp.peek(10)] == ["id1", "id2"]
    assert len(Spool(tmp_path, max_entries=2)) == 2  # found again after a restart
