"""`stream-gate run` serves Prometheus metrics and health while it works."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from .conftest import REDIS_URL, free_port, spawn_cli


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.redis
@pytest.mark.slow
def test_metrics_health_and_clean_shutdown(media: Callable[[str], Path],
                                           redis_client: redis.Redis, redis_key: str,
                                           tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[redis]
url = "{REDIS_URL}"
key = "{redis_key}"
[metrics]
port = {port}
[select]
policy = "improving"
min_quality = 10
[[streams]]
id = "walk"
url = "loop://{media('intel_face-demographics-walking-and-pause.mp4')}"
fps = 6
""")
    proc = spawn_cli("run", "--config", str(cfg))
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                code, text = _get(base + "/metrics")
                if code == 200 and 'stream_gate_crops_emitted_total{reason="improving"' in text:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        for series in ('stream_gate_frames_decoded_total{stream="walk"}',
                       'stream_gate_frames_sampled_total{stream="walk"}',
                       'stream_gate_frames_dropped_total{stream="walk"}',
                       'stream_gate_stream_state{state="live",stream="walk"} 1.0',
                       'stream_gate_faces_detected_total{stream="walk"}',
                       'stream_gate_tracks_started_total{stream="walk"}',
                       'stream_gate_crops_scored_total{stream="walk"}',
                       'stream_gate_crops_emitted_total{reason="improving",stream="walk"}',
                       "stream_gate_emitted_quality_bucket",
                       'stream_gate_stage_seconds_bucket{le="0.1",stage="detect"}',
                       "stream_gate_frame_to_publish_seconds_count",
                       "stream_gate_publish_backlog 0.0", "stream_gate_spool_failing 0.0"):
            assert series in text, series
        assert _get(base + "/healthz") == (200, "ok\n")
        assert _get(base + "/readyz") == (200, "ok\n")
        assert _get(base + "/nope")[0] == 404
        assert redis_client.xlen(redis_key) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"event": "stopping"' in err and '"signal": "SIGTERM"' in err
