"""The whole pipeline on real video into the real Redis, decoded as a consumer would."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from stream_gate.config import DetectConfig, load_settings
from stream_gate.pipeline.graph import build_pipeline
from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE
from stream_gate.stages.detect import FaceDetector, build_host_detector
from stream_gate.stages.publish import RedisSink

from .conftest import REDIS_URL, run_cli
from .test_publish import SCHEMA_FIELDS

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def looks_like_aligned_face(jpeg: bytes, detector: FaceDetector) -> bool:
    crop = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if crop is None or crop.shape != (112, 112, 3):
        return False
    # Detect again on the crop, enlarged 2× on a grey canvas (detectors need context).
    big = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(big, 112, 112, 112, 112, cv2.BORDER_CONSTANT,
                                value=(128, 128, 128))
    det = detector.detect_images([canvas])[0]
    if len(det) == 0:
        return False
    eyes = (det.landmarks[int(np.argmax(det.scores))][:2] - 112) / 2
    return bool(np.abs(eyes - ARCFACE_TEMPLATE[:2]).max() < 8.0)


def test_two_real_videos_one_track_end_entry_per_confirmed_track(
    media: Callable[[str], Path], redis_client: redis.Redis, redis_key: str
) -> None:
    settings = load_settings(None, {
        "redis": {"url": REDIS_URL, "key": redis_key},
        "select": {"policy": "track_end", "top_k": 1},
        # Strict enough that some short-lived tracks stay unconfirmed.
        "track": {"min_hits": 8},
        # Frontal-ish faces only: the template check below has no meaning for profiles
        # (by default every pose is scored and the quality model judges it).
        "score": {"max_yaw_deg": 45},
        "streams": [
            {"id": "walk", "url": str(media("intel_face-demographics-walking-and-pause.mp4")),
             "fps": 12},
            {"id": "crowd", "url": str(media("crowd_walking_1080p.mp4")), "fps": 25},
        ],
    })
    pipeline = build_pipeline(settings, [RedisSink(settings.redis)], collect=True)
    report = pipeline.run()
    assert report.streams["walk"]["sampled"] == 41
    assert report.streams["crowd"]["sampled"] == 105

    entries = redis_client.xrange(redis_key)
    fields = [{k.decode(): v for k, v in f.items()} for _, f in entries]
    assert fields, "no entries published"
    for f in fields:
        assert set(f) == SCHEMA_FIELDS
        assert f["reason"] == b"track_end" and f["rank"] == b"1" and f["v"] == b"1"
        assert len(json.loads(f["bbox"])) == 4
        assert np.array(json.loads(f["landmarks"])).shape == (5, 2)
    per_track = Counter((f["stream_id"].decode(), int(f["track_id"])) for f in fields)
    assert len({f["emit_id"] for f in fields}) == len(fields)

    min_hits = settings.track.min_hits
    owed = {k for k, t in report.tracks.items() if t.confirmed and t.scored > 0}
    assert set(per_track) == owed
    assert all(n == 1 for n in per_track.values())
    for key in per_track:
        assert report.tracks[key].hits >= min_hits
    short = [k for k, t in report.tracks.items() if t.hits < min_hits]
    assert short and not set(short) & set(per_track)
    assert {s for s, _ in per_track} == {"walk", "crowd"}
    assert sum(1 for s, _ in per_track if s == "crowd") >= 5

    detector = build_host_detector(DetectConfig(min_face_px=0), precise=True)
    faces = [looks_like_aligned_face(f["crop"], detector) for f in fields]
    # Every confirmed track emits its best crop, and the crowd's back rows (20-40 px,
    # turned away) give crops the quality model rates ~5: no face to find there. The
    # crops it rates usable (>= 20) must be aligned faces.
    usable = [ok for f, ok in zip(fields, faces, strict=True) if float(f["quality"]) >= 20]
    assert len(usable) >= 5 and sum(usable) >= 0.9 * len(usable), (
        f"{faces.count(False)} crops without a face",
        [(float(f["quality"]), ok) for f, ok in zip(fields, faces, strict=True)])


def test_cli_run_publishes_to_real_redis(
    media: Callable[[str], Path], redis_client: redis.Redis, redis_key: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "cams.toml"
    cfg.write_text(f"""
[redis]
url = "{REDIS_URL}"
key = "{redis_key}"
[[streams]]
id = "walk"
url = "{media('intel_face-demographics-walking-and-pause.mp4')}"
fps = 12
""")
    res = run_cli("run", "--config", str(cfg), "--out", str(tmp_path / "out"),
                  "--dump-scored", str(tmp_path / "scored"))
    assert res.returncode == 0, res.stderr
    entries = redis_client.xrange(redis_key)
    assert len(entries) >= 2  # two people walk toward the camera
    out_json = sorted((tmp_path / "out").glob("*.json"))
    assert sorted(json.loads(p.read_text())["emit_id"] for p in out_json) == sorted(
        f[b"emit_id"].decode() for _, f in entries)
    scored = list((tmp_path / "scored").glob("*.json"))
    assert len(scored) > len(entries)  # every scored crop, not only the emitted ones
    best = max(float(json.loads(p.read_text())["quality"]) for p in scored)
    assert max(float(f[b"quality"]) for _, f in entries) == pytest.approx(best, abs=0.01)
