"""Shared fixtures: real media from ../shared/data, the real Redis, small helpers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from stream_gate.config import DetectConfig, RuntimeConfig
from stream_gate.runtime import Backend
from stream_gate.stages.batch import build_batcher
from stream_gate.types import Frame, FrameBatch, ImageBGR

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout; elsewhere (a lent GPU machine gets the checkout
# alone, see scripts/gpu-kit) the copy STREAM_GATE_SHARED_DATA names.
SHARED = Path(os.environ.get("STREAM_GATE_SHARED_DATA", ROOT.parent / "shared" / "data"))
REDIS_URL = "redis://127.0.0.1:6379/0"


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: tests that need ../shared/data skip without it")
    return path


@pytest.fixture
def media() -> object:
    return lambda name: shared_file("media", name)


@pytest.fixture
def lfw_image() -> object:
    def pick(person: str = "Aaron_Eckhart", n: int = 1) -> Path:
        return shared_file("lfw", "images", person, f"{person}_{n:04d}.jpg")

    return pick


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def redis_key(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh stream key on the real Redis, deleted after the test."""
    key = f"stream_gate:test:{uuid.uuid4().hex[:12]}"
    yield key
    redis_client.delete(key)


def spawn_cli(*args: str) -> subprocess.Popen[str]:
    """Start ``stream-gate`` in the background (for long runs a test signals and stops)."""
    import os

    return subprocess.Popen(
        [sys.executable, "-m", "stream_gate.cli", *args], cwd=ROOT, env=dict(os.environ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``stream-gate`` as a user would, from the project root."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stream_gate.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env,
    )


def batch_of(images: Sequence[ImageBGR], backend: Backend | None = None) -> FrameBatch:
    """Images as one batch of frames of one stream, uploaded when ``backend`` has a
    device (as the batch stage makes them)."""
    frames = [Frame("test", i, None, i / 10, 0, im) for i, im in enumerate(images)]
    cfg = backend or Backend(RuntimeConfig())
    return build_batcher(DetectConfig(), cfg).pack(frames)


RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's Python, with python3-gi and GStreamer


def start_rtsp(port: int, files: dict[str, Path]) -> subprocess.Popen[str]:
    """One loopback RTSP server with a mount per file (rtsp://127.0.0.1:port/name);
    RuntimeError with its output when it does not start."""
    proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), str(port),
                             *(f"{k}={v}" for k, v in files.items())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"RTSP server did not start: {line} {err}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    yield port, procs
    for p in procs:
        p.kill()
        p.wait()


def start_redis(port: int, procs: list[subprocess.Popen[bytes]], tmp: Path,
           persist: bool = False) -> None:
    """Start redis-server on ``port``; ``persist`` keeps every acknowledged write (AOF)."""
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else [
        "--appendonly", "no"]
    procs.append(subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         *aof, "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ))
    wait_answers(redis.Redis(port=port))


def wait_answers(client: redis.Redis, seconds: float = 5.0) -> None:
    """Wait until a just-started redis-server answers ``client``."""
    for _ in range(int(seconds / 0.05)):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("private redis-server did not start")


def _gpu_absent() -> str | None:
    """Why GPU tests cannot run here, or None when an NVIDIA GPU answers."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no NVIDIA GPU here (nvidia-smi not found): GPU tests run on a GPU machine"
    if subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode != 0:
        return "nvidia-smi finds no usable NVIDIA GPU"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests are collected everywhere and skipped, with the reason, without a GPU."""
    gpu_items = [it for it in items if it.get_closest_marker("gpu")]
    reason = _gpu_absent() if gpu_items else None
    if reason:
        for it in gpu_items:
            it.add_marker(pytest.mark.skip(reason=reason))
