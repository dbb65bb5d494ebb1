"""What a run leaves behind says what happened: the exit status when crops were lost, no
embedded redis-server or temp folder after a failed start, a start while Redis is down
(with a spool), a truncated JPEG refused."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from stream_gate.config import RedisConfig
from stream_gate.stages.publish import RedisSink

from .conftest import run_cli, spawn_cli, start_redis
from .test_publish import emission


def _redis_servers() -> int:
    out = subprocess.run(["pgrep", "-c", "redis-server"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def test_a_failed_start_leaves_no_embedded_redis_behind(tmp_path: Path) -> None:
    before = _redis_servers()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[score]\nmodel = "{tmp_path / "missing.json"}"\n')
    res = run_cli("demo", "--config", str(cfg), "--sheet", str(tmp_path / "s.png"),
                  timeout=120)
    assert res.returncode == 2 and "quality model manifest not found" in res.stderr
    time.sleep(0.5)
    assert _redis_servers() == before


def test_the_embedded_redis_leaves_no_temp_folder() -> None:
    sink = RedisSink(RedisConfig(url="embedded"))
    folder = Path(sink._embedded.redis_dir)
    assert folder.is_dir()
    sink.close()
    assert not folder.exists()


@pytest.mark.redis
def test_with_a_spool_the_gate_starts_while_redis_is_down(
        private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path) -> None:
    port, procs = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    with pytest.raises(Exception, match="unreachable"):
        RedisSink(RedisConfig(url=url, connect_timeout_s=0.5))  # no spool: refused
    sink = RedisSink(RedisConfig(url=url, connect_timeout_s=0.5, spool_dir=tmp_path / "s"))
    assert sink.down
    sink.publish([emission(0), emission(1)])
    start_redis(port, procs, tmp_path)
    time.sleep(0.6)
    sink.publish([emission(2)])
    sink.close()
    got = [f[b"emit_id"] for _, f in redis.Redis(port=port).xrange("stream_gate:crops")]
    assert got == [b"id0", b"id1", b"id2"]


@pytest.mark.redis
@pytest.mark.slow
def test_crops_lost_in_an_outage_without_a_spool_exit_1(
        media: Callable[[str], Path], private_redis: tuple[int, list[subprocess.Popen[bytes]]],
        tmp_path: Path) -> None:
    port, procs = private_redis
    start_redis(port, procs, tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[redis]
url = "redis://127.0.0.1:{port}/0"
connect_timeout_s = 0.5
[metrics]
port = 0
[select]
policy = "improving"
min_quality = 1
improve_delta = 0.5
[[streams]]
id = "walk"
url = "loop://{media('intel_face-demographics-walking-and-pause.mp4')}"
fps = 6
""")
    proc = spawn_cli("run", "--config", str(cfg))
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60
    while client.xlen("stream_gate:crops") < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    procs[0].kill()
    procs[0].wait()
    time.sleep(6.0)  # crops go on being emitted, with nowhere to go at the end
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert '"event": "redis_unsent_lost"' in err and '"lost": ' in err


def test_a_truncated_jpeg_is_refused_not_scored(lfw_image: Callable[..., Path],
                                               tmp_path: Path) -> None:
    whole = lfw_image().read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    res = run_cli("score", "--json", str(cut), str(lfw_image()), timeout=120)
    assert res.returncode == 1
    assert '"error": "truncated JPEG' in res.stdout and '"quality"' in res.stdout




def test_demo_exits_1_when_its_stream_failed(media: Callable[[str], Path],
                                             tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[decode]\nmax_pixels = 4096\n")  # the clip is larger: refused at run time
    res = run_cli("demo", "--source", str(media("intel_face-demographics-walking.mp4")),
                  "--config", str(cfg), "--sheet", str(tmp_path / "s.png"), timeout=120)
    assert res.returncode == 1, res.stderr
    assert "above decode.max_pixels" in res.stderr


@pytest.mark.redis
def test_redis_down_counts_each_waiting_entry_once(
        private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    port, procs = private_redis
    start_redis(port, procs, tmp_path)
    sink = RedisSink(RedisConfig(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=0.5))
    procs[0].kill()
    procs[0].wait()
    with capture_logs() as logs:
        sink.publish([emission(0), emission(1)])
    down = next(e for e in logs if e["event"] == "redis_down")
    assert down["waiting"] == 2 == sink.backlog
