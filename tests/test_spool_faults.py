"""A spool on a full disk degrades to the memory backlog: nothing crashes, nothing sent
is lost, no fragment is left (a real 64 kB tmpfs, a real redis-server)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream_gate.config import RedisConfig
from stream_gate.stages.publish import RedisSink
from stream_gate.stages.publish.spool import Spool

from .conftest import start_redis
from .test_publish import emission


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr!r}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_spool_disk_during_an_outage_keeps_entries_in_memory(
        small_disk: Path, private_redis: tuple[int, list[subprocess.Popen[bytes]]],
        tmp_path: Path) -> None:
    port, procs = private_redis
    start_redis(port, procs, tmp_path)
    key = "stream_gate:spool-full"
    spool = small_disk / "spool"
    sink = RedisSink(RedisConfig(url=f"redis://127.0.0.1:{port}/0", key=key,
                                 connect_timeout_s=0.5, spool_dir=spool))
    gone = procs.pop()  # Redis goes away
    gone.kill()
    gone.wait()
    many = [emission(i) for i in range(80)]  # ~170 kB of crops: more than the disk holds
    for em in many:
        sink.publish([em])  # never raises
    assert sink.down and sink.spool_error is not None and "space" in sink.spool_error.lower()
    assert sink.backlog == 80
    on_disk = len(list(spool.glob("*.entry")))
    assert 0 < on_disk < 80 and not list(spool.glob("*.tmp"))
    start_redis(port, procs, tmp_path)
    time.sleep(1.0)  # past the retry backoff
    sink.publish([emission(80)])
    sink.close()
    got = [f[b"emit_id"].decode() for _, f in redis.Redis(port=port).xrange(key)]
    assert got == [f"id{i}" for i in range(81)]  # every one, in order


def test_fragments_of_an_interrupted_write_are_removed_at_start(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    (root / "0000000000000003.tmp").write_bytes(b"half an entry")
    spool = Spool(root, 100)
    assert len(spool) == 0 and not list(root.glob("*.tmp"))
