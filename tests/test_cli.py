"""The command line as a user runs it: demo, score, tail and start-up errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from .conftest import REDIS_URL, run_cli


@pytest.mark.slow
def test_demo_prints_tracks_and_writes_contact_sheet(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    res = run_cli("demo", "--sheet", str(sheet), "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["stream", "track", "hits", "scored"]
    rows = [ln for ln in lines[2:] if ln.startswith("demo ")]
    assert len(rows) == 2  # two people cross the sample clip
    assert all("track_end#1" in r for r in rows)
    assert "published to Redis (embedded" in res.stdout
    assert "ranked by quality + 3 points per percent" in res.stdout  # says how it chose
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] >= 112 and img.shape[1] >= 2 * 112
    metas = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
    assert len(metas) == 6  # top 3 of each of the two people
    assert {m["reason"] for m in metas} == {"track_end"}


@pytest.mark.redis
def test_demo_on_a_source_with_redis_from_the_environment(
    media: Callable[[str], Path], redis_client: redis.Redis, redis_key: str, tmp_path: Path
) -> None:
    res = run_cli(
        "demo", "--source", str(media("intel_face-demographics-walking.mp4")),
        "--sheet", str(tmp_path / "s.png"), "--fps", "12",
        env={"STREAM_GATE__REDIS__URL": REDIS_URL, "STREAM_GATE__REDIS__KEY": redis_key},
    )
    assert res.returncode == 0, res.stderr
    assert redis_client.xlen(redis_key) >= 2
    # tail reads them back and saves the crops.
    saved = tmp_path / "saved"
    res = run_cli("tail", "--url", REDIS_URL, "--key", redis_key, "--save", str(saved))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "emit_id=" in ln]
    assert len(lines) == redis_client.xlen(redis_key)
    assert all("stream=demo" in ln and "reason=track_end" in ln for ln in lines)
    assert len(list(saved.glob("*.jpg"))) == len(lines)


def test_score_json_one_line_per_image(lfw_image: Callable[..., Path], tmp_path: Path) -> None:
    img = cv2.imread(str(lfw_image()))
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(img, (0, 0), 3.0))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    res = run_cli("score", "--json", str(lfw_image()), str(blurred), str(broken))
    assert res.returncode == 1  # one unreadable image
    out = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert [o["path"] for o in out] == [str(lfw_image()), str(blurred), str(broken)]
    sharp_face, blur_face = out[0]["faces"][0], out[1]["faces"][0]
    assert set(sharp_face) == {"bbox", "landmarks", "det_score", "quality", "quality_raw"}
    assert np.array(sharp_face["landmarks"]).shape == (5, 2)
    assert 0 <= blur_face["quality"] < sharp_face["quality"] <= 100
    assert out[2]["faces"] == [] and out[2]["error"] == "not a readable image"


def _config(tmp_path: Path, url: str, redis_url: str = REDIS_URL) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\nconnect_timeout_s = 1\n'
                   f'[[streams]]\nid = "cam"\nurl = "{url}"\n')
    return cfg


def test_missing_video_file_is_named(tmp_path: Path) -> None:
    res = run_cli("run", "--config", str(_config(tmp_path, str(tmp_path / "gone.mp4"))))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"stream-gate: error: stream 'cam': video file not found: {tmp_path / 'gone.mp4'}")


def test_unreadable_video_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 4096)
    res = run_cli("run", "--config", str(_config(tmp_path, str(bad))))
    assert res.returncode == 2
    assert f"stream 'cam': cannot read video {bad}" in res.stderr
    assert "Traceback" not in res.stderr


def test_unreachable_redis_is_named(media: Callable[[str], Path], tmp_path: Path) -> None:
    cfg = _config(tmp_path, str(media("intel_classroom.mp4")), "redis://127.0.0.1:1/0")
    res = run_cli("run", "--config", str(cfg))
    assert res.returncode == 2
    assert "stream-gate: error: Redis at redis://127.0.0.1:1/0 is unreachable" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    res = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert res.returncode == 2
    assert f"config file not found: {tmp_path / 'nope.toml'}" in res.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU may answer here")
def test_doctor_says_when_the_gpu_the_config_asks_for_is_not_there(
        media: Callable[[str], Path], tmp_path: Path) -> None:
    config = tmp_path / "gpu.toml"
    config.write_text(f"""
[runtime]
engine = "torch"
device = "cuda"
[decode]
hwaccel = "cuda"
[redis]
url = "{REDIS_URL}"
[[streams]]
id = "file"
url = "{media('intel_classroom.mp4')}"
""")
    res = run_cli("doctor", "--config", str(config))
    assert res.returncode == 1
    out = res.stdout
    assert 'FAIL  models: runtime.device = "cuda" but PyTorch sees no CUDA GPU' in out
    assert "fix: install stream-gate[gpu] on a machine whose NVIDIA GPU" in out
    assert "ok    stream file:" in out  # the camera itself is fine: decoded on the CPU
    assert "FAIL  decode: decode.hwaccel = 'cuda' is not available" in out
    assert "2 check(s) failed" in out
