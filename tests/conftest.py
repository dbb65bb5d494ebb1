"""Shared fixtures: real media from ../shared/data, the real Redis, small helpers."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
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


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``stream-gate`` as a user would, from the project root."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stream_gate.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env,
    )
