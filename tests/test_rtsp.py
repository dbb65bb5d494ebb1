"""RTSP sources against a real GStreamer RTSP server on loopback."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from stream_gate.config import DecodeConfig
from stream_gate.stages.decode import Source, StreamReader
from stream_gate.types import Emission

from .conftest import SYSTEM_PYTHON, free_port, start_rtsp
from .test_decode import drain

pytestmark = pytest.mark.rtsp



def _require_gstreamer() -> None:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} (Debian's Python with python3-gi) is absent")
    check = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import Gst; Gst.init(None); "
         "assert all(Gst.ElementFactory.find(e) for e in "
         "('qtdemux', 'h264parse', 'rtph264pay'))"], capture_output=True)
    if check.returncode != 0:
        pytest.skip("python3-gi with GstRtspServer missing (scripts/install-system-deps)")


class Camera:
    """One RTSP camera on loopback (its own server process): stop it, start it again."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.port = free_port()
        self.files = files
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        try:
            self.proc = start_rtsp(self.port, self.files)
        except RuntimeError as exc:
            pytest.fail(str(exc))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def camera(media: Callable[[str], Path]) -> Iterator[Callable[..., Camera]]:
    """Factory: camera(name=file_in_media, ...) -> a running Camera; all stopped after."""
    _require_gstreamer()
    made: list[Camera] = []

    def make(**files: str) -> Camera:
        made.append(Camera({k: media(v) for k, v in files.items()}))
        return made[-1]

    yield make
    for cam in made:
        cam.stop()


@pytest.fixture
def rtsp_server(camera: Callable[..., Camera]) -> Callable[[str], str]:
    """The walking clip at rtsp://127.0.0.1:PORT/walk; yields name -> URL."""
    return camera(walk="intel_face-demographics-walking-and-pause.mp4").url


def test_reads_a_live_rtsp_camera_over_tcp(rtsp_server: Callable[[str], str]) -> None:
    src = Source.parse("door", rtsp_server("walk"), fps=6)
    assert src.is_live
    stop = threading.Event()
    reader = StreamReader(src, DecodeConfig(queue_size=100, open_timeout_s=5), stop)
    reader.start()
    frames = drain(reader, limit=15, timeout=20)
    stop.set()
    reader.join(10)
    assert len(frames) == 15
    assert frames[0].image.shape == (270, 480, 3)
    ts = [f.t for f in frames]
    assert all(b > a for a, b in pairwise(ts))
    assert not reader.is_alive()


def test_dead_camera_reconnects_with_backoff_and_stops_promptly() -> None:
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/nothing"
    stop = threading.Event()
    cfg = DecodeConfig(open_timeout_s=1, read_timeout_s=1, reconnect_min_s=0.2,
                       reconnect_max_s=0.4)
    reader = StreamReader(Source.parse("dead", url, 5), cfg, stop)
    reader.start()
    time.sleep(2.0)
    assert reader.state == "reconnecting"
    assert reader.sampled == 0
    stop.set()
    reader.join(3)
    assert not reader.is_alive()


def test_demo_runs_on_an_rtsp_camera_for_a_duration(rtsp_server: Callable[[str], str],
                                                    tmp_path: Path) -> None:
    from .conftest import run_cli

    t0 = time.monotonic()
    res = run_cli("demo", "--source", rtsp_server("walk"), "--duration", "6", "--fps", "6",
                  "--sheet", str(tmp_path / "sheet.png"))
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 60
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("demo ")]
    assert rows, res.stdout  # people walking toward the camera were tracked
    assert (tmp_path / "sheet.png").exists()


def test_doctor_reports_what_works_and_what_to_fix(rtsp_server: Callable[[str], str],
                                                   media: Callable[[str], Path],
                                                   tmp_path: Path) -> None:
    from .conftest import REDIS_URL, run_cli

    good = tmp_path / "good.toml"
    good.write_text(f"""
[redis]
url = "{REDIS_URL}"
spool_dir = "{tmp_path / 'spool'}"
[[streams]]
id = "door"
url = "{rtsp_server('walk')}"
[[streams]]
id = "file"
url = "{media('intel_classroom.mp4')}"
""")
    res = run_cli("doctor", "--config", str(good))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ok    stream door: rtsp://127.0.0.1" in res.stdout and "h264 480x270" in res.stdout
    assert "ok    redis: redis://127.0.0.1:6379/0 answers" in res.stdout
    assert "scorer cr-fiqa-s-v2@2" in res.stdout
    assert res.stdout.rstrip().endswith("all checks passed")

    bad = tmp_path / "bad.toml"
    bad.write_text(f"""
[redis]
url = "redis://127.0.0.1:1/0"
connect_timeout_s = 1
[decode]
open_timeout_s = 2
[[streams]]
id = "gone"
url = "rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam"
[[streams]]
id = "missing"
url = "{tmp_path / 'none.mp4'}"
""")
    res = run_cli("doctor", "--config", str(bad))
    assert res.returncode == 1
    out = res.stdout
    assert "FAIL  redis:" in out and "fix: start Redis or fix redis.url" in out
    assert "FAIL  stream gone:" in out and "fix: check the host is reachable" in out
    assert "FAIL  stream missing: stream 'missing': video file not found" in out
    assert "hunter2" not in out + res.stderr
    assert "3 check(s) failed" in out


class _HostileServer:
    """A TCP listener on loopback that accepts and then stays silent or talks garbage."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self._conns.append(conn)
            if self.mode == "garbage":
                with contextlib.suppress(OSError):
                    conn.sendall(bytes(range(256)) * 64)

    def close(self) -> None:
        self._stop.set()
        for c in self._conns:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("mode", ["freeze", "garbage"])
def test_frozen_and_garbage_cameras_are_detected_and_retried(mode: str) -> None:
    server = _HostileServer(mode)
    stop = threading.Event()
    cfg = DecodeConfig(open_timeout_s=1, read_timeout_s=1, reconnect_min_s=0.2,
                       reconnect_max_s=0.5)
    reader = StreamReader(Source.parse(mode, f"rtsp://127.0.0.1:{server.port}/cam", 5), cfg,
                          stop)
    t0 = time.monotonic()
    reader.start()
    deadline = t0 + 15
    while server.accepted < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(5)
    server.close()
    assert server.accepted >= 2, "the reader did not give up on the first connection"
    assert reader.sampled == 0 and not reader.is_alive()
    assert reader.state == "reconnecting"


@pytest.mark.slow
@pytest.mark.redis
def test_four_cameras_restarted_frozen_garbage_and_healthy(
    camera: Callable[..., Camera], redis_client: object, redis_key: str
) -> None:
    import redis as redis_lib

    from stream_gate.config import load_settings
    from stream_gate.pipeline.graph import build_pipeline
    from stream_gate.stages.publish import RedisSink

    assert isinstance(redis_client, redis_lib.Redis)
    healthy = camera(face="liveportrait_d6.mp4")  # 33.6 s of a talking face
    flaky = camera(face="liveportrait_d14.mp4")
    frozen, garbage = _HostileServer("freeze"), _HostileServer("garbage")
    settings = load_settings(None, {
        "redis": {"url": "redis://127.0.0.1:6379/0", "key": redis_key},
        "decode": {"open_timeout_s": 2, "read_timeout_s": 2, "reconnect_min_s": 0.2,
                   "reconnect_max_s": 1.0},
        "select": {"policy": "improving", "min_quality": 5, "improve_delta": 1,
                   "max_wait_s": 1.0},
        "streams": [
            {"id": "healthy", "url": healthy.url("face"), "fps": 3},
            {"id": "flaky", "url": flaky.url("face"), "fps": 3},
            {"id": "frozen", "url": f"rtsp://127.0.0.1:{frozen.port}/cam", "fps": 3},
            {"id": "garbage", "url": f"rtsp://127.0.0.1:{garbage.port}/cam", "fps": 3},
        ],
    })
    pipeline = build_pipeline(settings, [RedisSink(settings.redis)])
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    readers = {sid: st.reader for sid, st in pipeline.streams.items()}

    def wait_live(sid: str, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if readers[sid].state == "live":
                return time.monotonic() - t0
            time.sleep(0.05)
        return float("inf")

    healthy_progress: list[int] = []
    recoveries: list[float] = []
    try:
        assert wait_live("healthy", 15) < 15 and wait_live("flaky", 15) < 15
        for _ in range(5):
            flaky.stop()
            deadline = time.monotonic() + 5
            while readers["flaky"].state == "live" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert readers["flaky"].state == "reconnecting"
            healthy_progress.append(readers["healthy"].sampled)
            time.sleep(1.0)
            flaky.start()
            recoveries.append(wait_live("flaky", 10))
            healthy_progress.append(readers["healthy"].sampled)
    finally:
        pipeline.stop_event.set()
        runner.join(15)
        frozen.close()
        garbage.close()
    # Every restart recovered within the backoff bound (1 s) plus the reconnect itself.
    assert all(r < 4.0 for r in recoveries), recoveries
    # The healthy camera kept delivering frames while the other one was down.
    windows = list(zip(healthy_progress[0::2], healthy_progress[1::2], strict=True))
    assert all(after > before for before, after in windows), healthy_progress
    ids = {f[b"stream_id"] for _, f in redis_client.xrange(redis_key)}
    assert b"healthy" in ids and b"flaky" in ids
    # The frozen and garbage cameras never delivered, kept retrying, and say why.
    for sid in ("frozen", "garbage"):
        assert readers[sid].sampled == 0
        assert readers[sid].last_error, sid
    assert "no picture within" in readers["frozen"].last_error, readers["frozen"].last_error
    assert "invalid data" in readers["garbage"].last_error.lower(), readers["garbage"].last_error


class _Recorder:
    """A sink that keeps every emission with the monotonic time it was published at."""

    down = False
    backlog = 0

    def __init__(self) -> None:
        self.got: list[tuple[float, Emission]] = []

    def publish(self, emissions: Iterable[Emission]) -> None:
        now = time.monotonic()
        self.got += [(now, em) for em in emissions]

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_a_camera_outage_ends_the_tracks_of_the_people_seen_before_it(
        camera: Callable[..., Camera]) -> None:
    """A camera with a face in view is killed for 4 s and restarted. Every track seen
    before the outage ends and emits within max_age_s + 1 s of the camera going down; the
    face after it is a new track; no track holds crops from both sides; entry times never
    go back."""
    from stream_gate.config import load_settings
    from stream_gate.pipeline.graph import build_pipeline

    cam = camera(face="liveportrait_d6.mp4")  # one talking face, in view all along
    max_age = 1.0
    settings = load_settings(None, {
        "decode": {"open_timeout_s": 2, "read_timeout_s": 2, "reconnect_min_s": 0.2,
                   "reconnect_max_s": 0.5},
        "track": {"max_age_s": max_age},
        "select": {"policy": "track_end", "top_k": 5},
        "streams": [{"id": "cam", "url": cam.url("face"), "fps": 5}],
    })
    sink = _Recorder()
    pipeline = build_pipeline(settings, [sink])
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    reader = pipeline.streams["cam"].reader

    def wait_live(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while reader.state != "live" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.state == "live"

    try:
        wait_live(15)
        time.sleep(4.0)  # the face is tracked and confirmed
        down, down_ms = time.monotonic(), time.time() * 1000
        cam.stop()
        time.sleep(4.0)
        up_ms = time.time() * 1000
        cam.start()
        wait_live(10)
        time.sleep(4.0)
    finally:
        pipeline.stop_event.set()
        runner.join(15)
    before = [(at, em) for at, em in sink.got if em.candidate.wall_ms < down_ms]
    after = [em for _, em in sink.got if em.candidate.wall_ms > up_ms]
    assert before, "no track ended before the camera came back"
    assert all(at <= down + max_age + 1.0 for at, _ in before), [at - down for at, _ in before]
    assert after, "the face after the outage was not tracked anew"
    sides: dict[int, set[bool]] = {}
    for _, em in sink.got:
        sides.setdefault(em.candidate.track_id, set()).add(em.candidate.wall_ms > up_ms)
    assert all(len(s) == 1 for s in sides.values()), sides
    assert min(em.candidate.track_id for em in after) > max(
        em.candidate.track_id for _, em in before)
    stamps = sorted(sink.got, key=lambda x: x[1].candidate.frame_index)
    assert all(a[1].candidate.wall_ms <= b[1].candidate.wall_ms
               for a, b in pairwise(stamps))


def test_shutdown_never_outlasts_the_grace_time(tmp_path: Path) -> None:
    """A camera stuck in a long open cannot hold the process past shutdown_grace_s."""
    import signal

    from .conftest import REDIS_URL, spawn_cli

    frozen = _HostileServer("freeze")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[decode]
open_timeout_s = 60
shutdown_grace_s = 1.5
[redis]
url = "{REDIS_URL}"
[metrics]
port = 0
[[streams]]
id = "stuck"
url = "rtsp://127.0.0.1:{frozen.port}/cam"
""")
    proc = spawn_cli("run", "--config", str(cfg))
    try:
        deadline = time.monotonic() + 30
        while frozen.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert frozen.accepted == 1
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        frozen.close()
    assert proc.returncode == 3, err
    assert took < 4.0
    assert '"event": "shutdown_grace_exceeded"' in err
