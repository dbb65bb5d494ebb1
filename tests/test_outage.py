"""A Redis outage during a run loses nothing: every emitted crop arrives, once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from .conftest import spawn_cli, start_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_redis_killed_for_30_s_during_a_run(
    media: Callable[[str], Path],
    private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path,
) -> None:
    port, procs = private_redis
    start_redis(port, procs, tmp_path, persist=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[redis]
url = "redis://127.0.0.1:{port}/0"
connect_timeout_s = 0.5
spool_dir = "{tmp_path / 'spool'}"
[metrics]
port = 0
[select]
policy = "improving"
min_quality = 5
improve_delta = 2
[track]
max_age_s = 0.5
[[streams]]
id = "walk"
url = "loop://{media('intel_face-demographics-walking-and-pause.mp4')}"
fps = 6
""")
    out = tmp_path / "out"
    proc = spawn_cli("run", "--config", str(cfg), "--out", str(out))
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 60
        while client.xlen("stream_gate:crops") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.xlen("stream_gate:crops") >= 1, "nothing published before the outage"
        procs[-1].kill()
        procs[-1].wait()
        emitted_before = len(list(out.glob("*.json")))
        time.sleep(30)
        emitted_during = len(list(out.glob("*.json"))) - emitted_before
        assert emitted_during >= 1, "no crop emitted during the outage"
        start_redis(port, procs, tmp_path, persist=True)  # same data directory: nothing lost

        time.sleep(12)  # the retry backoff is at most 10 s
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"event": "redis_down"' in err and '"event": "redis_up"' in err
    sent = {json.loads(p.read_text())["emit_id"] for p in out.glob("*.json")}
    got = [f[b"emit_id"].decode() for _, f in client.xrange("stream_gate:crops")]
    assert len(got) == len(set(got)), "an entry arrived twice"
    assert set(got) == sent  # every crop the directory sink saw, before, during, after
    # In the order they were emitted (the directory sink wrote them in that order).
    written = {json.loads(p.read_text())["emit_id"]: p.stat().st_mtime_ns
               for p in out.glob("*.json")}
    times = [written[e] for e in got]
    assert times == sorted(times)
    assert list((tmp_path / "spool").glob("*.entry")) == []
