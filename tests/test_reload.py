"""Live tuning: SIGHUP applies new thresholds; an invalid edit is rejected and logged."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from .conftest import REDIS_URL, spawn_cli

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _config(media: Path, key: str, min_quality: float, extra: str = "") -> str:
    return f"""
[redis]
url = "{REDIS_URL}"
key = "{key}"
[metrics]
port = 0
[select]
policy = "improving"
min_quality = {min_quality}
{extra}
[[streams]]
id = "walk"
url = "loop://{media}"
fps = 6
"""


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_sighup_applies_new_threshold_and_rejects_bad_edit(
    media: Callable[[str], Path], redis_client: redis.Redis, redis_key: str, tmp_path: Path
) -> None:
    video = media("intel_face-demographics-walking-and-pause.mp4")
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(video, redis_key, 100))  # nothing is that good: no emission
    proc = spawn_cli("run", "--config", str(cfg))
    try:
        time.sleep(6)  # a full loop of the clip, faces scored, none good enough
        assert redis_client.xlen(redis_key) == 0
        cfg.write_text(_config(video, redis_key, 100, extra="typo_key = 1"))
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert redis_client.xlen(redis_key) == 0  # the bad edit changed nothing
        cfg.write_text(_config(video, redis_key, 5))
        proc.send_signal(signal.SIGHUP)
        assert _wait(lambda: redis_client.xlen(redis_key) > 0, 20), "threshold not applied"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"event": "config_rejected"' in err and "select.typo_key: unknown key" in err
    assert '"event": "config_reloaded"' in err


def test_streams_added_and_removed_without_restart(
    media: Callable[[str], Path], redis_client: redis.Redis, redis_key: str, tmp_path: Path
) -> None:
    walk = media("intel_face-demographics-walking-and-pause.mp4")
    other = media("intel_face-demographics-walking.mp4")
    cfg = tmp_path / "c.toml"
    cfg.write_text(_config(walk, redis_key, 5))
    proc = spawn_cli("run", "--config", str(cfg))

    def streams() -> set[bytes]:
        return {f[b"stream_id"] for _, f in redis_client.xrange(redis_key)}

    try:
        assert _wait(lambda: b"walk" in streams(), 30)
        # Add a camera "second" and drop "walk", in one edit.
        cfg.write_text(_config(other, redis_key, 5).replace('id = "walk"', 'id = "second"'))
        proc.send_signal(signal.SIGHUP)
        assert _wait(lambda: b"second" in streams(), 30), "the new stream never published"
        n_walk = sum(f[b"stream_id"] == b"walk" for _, f in redis_client.xrange(redis_key))
        time.sleep(4)  # a removed stream publishes nothing more
        assert n_walk == sum(f[b"stream_id"] == b"walk"
                             for _, f in redis_client.xrange(redis_key))
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"event": "stream_added"' in err and '"event": "stream_removed"' in err


def test_reload_leaves_other_streams_running_without_a_drop(
    media: Callable[[str], Path],
) -> None:
    """In process: a threshold change on one camera does not pause or restart another."""
    import threading

    from stream_gate.config import load_settings
    from stream_gate.pipeline.graph import build_pipeline

    def settings(min_q: float) -> object:
        return load_settings(None, {
            "redis": {"url": "embedded"},
            "streams": [
                {"id": "door", "url": f"loop://{media('intel_face-demographics-walking.mp4')}",
                 "fps": 3, "select": {"min_quality": min_q}},
                {"id": "hall", "url": f"loop://{media('intel_classroom.mp4')}", "fps": 3},
            ],
        })

    pipeline = build_pipeline(settings(50), [])  # type: ignore[arg-type]
    pending: list[object] = []
    pipeline.on_tick = lambda: pending and pipeline.apply(pending.pop())  # type: ignore
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    try:
        time.sleep(3)
        hall = pipeline.streams["hall"].reader
        before = (hall.sampled, hall.queue.dropped)
        pending.append(settings(80))
        time.sleep(3)
        assert pipeline.streams["door"].selector.cfg.min_quality == 80
        assert pipeline.streams["hall"].reader is hall and hall.is_alive()
        assert hall.sampled >= before[0] + 6  # ~3 frames/s kept coming
        assert hall.queue.dropped == before[1] == 0
    finally:
        pipeline.stop_event.set()
        runner.join(15)
