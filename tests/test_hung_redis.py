"""A hung Redis (SIGSTOP) stalls no camera: publishing runs on its own thread, detection
goes on at the camera's rate, and every crop arrives once Redis resumes."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from stream_gate.config import load_settings
from stream_gate.pipeline.graph import build_pipeline
from stream_gate.stages.publish import build_sinks

from .conftest import start_redis
from .test_publish import emission

pytestmark = pytest.mark.slow
FPS = 6.0


def test_a_hung_redis_costs_no_analysed_frame(
        media: Callable[[str], Path], private_redis: tuple[int, list[subprocess.Popen[bytes]]],
        tmp_path: Path) -> None:
    port, procs = private_redis
    start_redis(port, procs, tmp_path)
    key = "stream_gate:hung"
    settings = load_settings(None, {
        "redis": {"url": f"redis://127.0.0.1:{port}/0", "key": key, "connect_timeout_s": 3},
        "select": {"policy": "improving", "min_quality": 1, "improve_delta": 0.5},
        "streams": [{"id": "cam", "url": "loop://" + str(media(
            "intel_face-demographics-walking-and-pause.mp4")),
                     "fps": FPS}],
    })
    redis_sink, sinks = build_sinks(settings)
    pipeline = build_pipeline(settings, sinks, collect=True)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    reader = pipeline.streams["cam"].reader
    window = 8.0

    def measure() -> tuple[int, int]:
        f0, d0 = pipeline.report.frames, reader.queue.dropped
        time.sleep(window)
        return pipeline.report.frames - f0, reader.queue.dropped - d0

    try:
        time.sleep(2.0)
        up_frames, up_dropped = measure()  # Redis up: the baseline
        procs[0].send_signal(signal.SIGSTOP)  # Redis hangs: connections open, no answer
        made_while_hung = [emission(100 + i) for i in range(3)]  # whatever the clip does
        sinks[0].publish(made_while_hung)
        frames, dropped = measure()
        procs[0].send_signal(signal.SIGCONT)
        time.sleep(2.0)
    finally:
        procs[0].send_signal(signal.SIGCONT)
        pipeline.stop_event.set()
        runner.join(30)
    # As many frames analysed (within a loop turn or two) and no more dropped than with
    # Redis up: measured 48 and 0 in both windows; before the publisher thread, each
    # retry froze the loop for connect_timeout_s.
    assert up_frames >= 0.8 * FPS * window, up_frames
    assert frames >= 0.9 * up_frames - 2, (frames, up_frames)
    assert dropped <= up_dropped + 1, (dropped, up_dropped)
    # Every crop arrived, those made while Redis hung included (a write whose answer the
    # hang swallowed is sent again: at least once, emit_id lets consumers drop the replay).
    got = {f[b"emit_id"].decode() for _, f in redis.Redis(port=port).xrange(key)}
    assert got == {em.emit_id for em in [*pipeline.report.emissions, *made_while_hung]}
    assert redis_sink.published >= len(got)


@pytest.mark.redis
def test_sigterm_with_redis_hung_keeps_the_flushed_crops_on_disk(
        media: Callable[[str], Path], private_redis: tuple[int, list[subprocess.Popen[bytes]]],
        tmp_path: Path) -> None:
    """shutdown_grace_s (1.5 s) shorter than connect_timeout_s (3 s): the crops that the
    shutdown's flush emits are on disk (the spool) when the grace runs out."""
    from .conftest import spawn_cli

    port, procs = private_redis
    start_redis(port, procs, tmp_path, persist=True)
    spool, out = tmp_path / "spool", tmp_path / "out"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[redis]
url = "redis://127.0.0.1:{port}/0"
connect_timeout_s = 3
spool_dir = "{spool}"
[decode]
shutdown_grace_s = 1.5
[metrics]
port = 0
[select]
policy = "track_end"
[[streams]]
id = "cam"
url = "loop://{media('liveportrait_d6.mp4')}"
fps = 6
""")
    proc = spawn_cli("run", "--config", str(cfg), "--out", str(out))
    try:
        time.sleep(8.0)  # the face is tracked: its crops wait for the track's end
        procs[0].send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        hung = procs.pop()  # it never answers: what it had not read is gone with it
        hung.kill()
        hung.wait()
    start_redis(port, procs, tmp_path, persist=True)  # what it had written is kept
    import json

    emitted = {json.loads(p.read_text())["emit_id"] for p in out.glob("*.json")}
    assert emitted, "the shutdown flushed no crop"
    on_disk = set()
    for path in spool.glob("*.entry"):
        blob = path.read_bytes()
        n = int.from_bytes(blob[:4], "big")
        on_disk.add(json.loads(blob[4:4 + n])["fields"]["emit_id"])
    in_redis = {f[b"emit_id"].decode() for _, f in redis.Redis(port=port).xrange(
        "stream_gate:crops")}
    assert emitted <= on_disk | in_redis, (emitted, on_disk, in_redis)
