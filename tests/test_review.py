"""The review page: built from a real run's dump, opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_gate.config import SelectConfig, load_settings
from stream_gate.service.review import Crop, Track, build, improving_entries, load, render

from .conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _track(qualities: list[float], signatures: list[np.ndarray] | None = None) -> Track:
    t = Track("cam", 1)
    for i, q in enumerate(qualities):
        t.crops.append(Crop(i, 1000 + 100 * i, q, 0.9, 40.0, 0.0, Path("absent.jpg"),
                            signature=None if signatures is None else signatures[i]))
    return t


def test_the_improving_table_counts_what_the_selector_would_emit() -> None:
    """By quality alone, worked by hand: once confirmed, a crop is sent when it beats the
    ones sent by improve_delta (5)."""
    track = _track([12.0, 30.0, 33.0, 36.0, 70.0, 72.0, 90.0, 50.0, 96.0])
    alone = SelectConfig(policy="track_end", consensus_weight=0.0)  # the table: improving
    assert improving_entries(track, alone, 0.0) == 6  # 12 30 36 70 90 96
    assert improving_entries(track, alone, 35.0) == 4  # 36 70 90 96
    assert improving_entries(track, alone, 80.0) == 2  # 90 96
    # Confirmed at the third crop: the best of the first three (33), then 70 90 96.
    assert improving_entries(track, alone, 0.0, min_hits=3) == 4
    assert improving_entries(Track("cam", 2), alone, 0.0) == 0


def test_the_improving_table_replays_the_consensus_with_the_dumped_signatures() -> None:
    """A person confirmed turned away, then frontal (the crop scoring 62 is one of many
    alike): with the consensus the frontal crop is sent too, as the selector would;
    by quality alone (+2 points) it is not."""
    rng = np.random.default_rng(1)
    away, frontal = rng.normal(size=(2, 128)).astype(np.float32)
    sigs = [away] * 3 + [frontal + 0.25 * rng.normal(size=128).astype(np.float32)
                         for _ in range(27)]
    track = _track([62.0 if i == 20 else 60.0 for i in range(30)], sigs)
    assert improving_entries(track, SelectConfig(consensus_weight=0.0), 0.0, 3) == 1
    assert improving_entries(track, SelectConfig(consensus_weight=3.0), 0.0, 3) == 2


def test_each_camera_is_reviewed_under_its_own_select_overrides(tmp_path: Path) -> None:
    """cameras.toml-style overrides: the door camera's min_quality 45 gets its row in the
    improving table and fades its crops below 45; the other camera keeps the global 0."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[streams]]\nid = "door"\nurl = "a.mp4"\n[streams.select]\n'
                   'min_quality = 45.0\nconsensus_weight = 0.0\n[streams.score]\n'
                   'max_yaw_deg = 30.0\n[[streams]]\nid = "hall"\nurl = "b.mp4"\n')
    settings = load_settings(cfg)
    door, hall = _track([30.0, 50.0, 40.0]), _track([30.0, 50.0, 40.0])
    door.stream_id, hall.stream_id = "door", "hall"
    for t in (door, hall):  # crops the page can show
        for c in t.crops:
            c.jpeg = tmp_path / f"{t.stream_id}{c.frame_index}.jpg"
            cv2.imwrite(str(c.jpeg), np.full((112, 112, 3), 128, np.uint8))
    cams = build({"door": {1: door}, "hall": {1: hall}}, settings.select, 1,
                 {s.id: settings.select_for(s.id) for s in settings.streams},
                 {"door": settings.score_for("door")})
    rows = {c.stream_id: {thr: n for thr, n, _ in c.improving} for c in cams}
    assert rows["door"][45.0] == 1 and 45.0 not in rows["hall"]  # 50 only, at 45
    assert rows["hall"][0] == 2  # 30, then 50 (40 is not 5 better)
    page = render(cams, settings.select, settings.score, "dump")
    door_html = page[page.index('data-stream="door"'):page.index('data-stream="hall"')]
    hall_html = page[page.index('data-stream="hall"'):]
    assert "This camera's own" in door_html and "This camera's own" not in hall_html
    assert "max_yaw_deg = 30.0" in door_html and "max_yaw_deg = 30.0" not in hall_html
    assert door_html.count('class="crop low') == 2 and 'class="crop low' not in hall_html


@pytest.mark.slow
def test_the_improving_row_of_the_run_s_own_setting_is_what_the_run_sent(
        media: Callable[[str], Path], tmp_path: Path) -> None:
    """A run with policy improving and the default consensus: the review's improving
    table, at the run's min_quality, counts the entries the run emitted."""
    cfg = tmp_path / "improving.toml"
    cfg.write_text('[select]\npolicy = "improving"\n')
    res = run_cli("--log-level", "warning", "demo", "--config", str(cfg), "--source",
                  str(media("intel_face-demographics-walking.mp4")), "--fps", "12",
                  "--sheet", str(tmp_path / "s.png"), "--review", str(tmp_path / "r.html"),
                  "--out", str(tmp_path / "out"), "--dump-scored", str(tmp_path / "dump"))
    assert res.returncode == 0, res.stderr
    emitted = len(list((tmp_path / "out").glob("*.json")))
    assert emitted >= 2
    settings = load_settings(cfg)
    records = [json.loads(p.read_text()) for p in (tmp_path / "dump").glob("*.json")]
    assert all("signature" in r and float(r["t"]) >= 0 for r in records)
    (cam,) = build(load(tmp_path / "dump"), settings.select, settings.track.min_hits)
    row = {thr: entries for thr, entries, _ in cam.improving}
    assert row[settings.select.min_quality] == emitted


@pytest.mark.slow
def test_the_review_page_of_a_run_renders_in_chromium(media: Callable[[str], Path],
                                                      tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/install-system-deps installs it)")
    page = tmp_path / "review.html"
    res = run_cli("--log-level", "warning", "demo", "--source",
                  str(media("intel_face-demographics-walking.mp4")), "--fps", "12",
                  "--sheet", str(tmp_path / "s.png"), "--review", str(page),
                  "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert f"review page: {page}" in res.stdout
    emitted = len(list((tmp_path / "out").glob("*.json")))
    assert emitted >= 2
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    tracks = int(re.search(r'<td class="tracks">(\d+)</td>', dom).group(1))  # type: ignore[union-attr]
    assert tracks >= 2 and dom.count('<div class="track"') == tracks
    assert int(re.search(r'<td class="emitted">(\d+)</td>', dom).group(1)) == emitted  # type: ignore[union-attr]
    assert dom.count('class="crop emitted') == emitted
    # The defaults rank by quality and the track consensus: the page says so.
    assert "consensus_weight = 3.0" in dom and "need not be the one of highest" in dom
    assert "replayed through the selector" in dom  # the improving table says how it counts
    histogram = dom[dom.index('class="plot histogram"'):dom.index('class="plot quality"')]
    assert histogram.count('id="patch_') >= 20  # the bars
    shot = tmp_path / "review.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1280,1600",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1280)
    assert float(np.std(image)) > 20  # crops and plots drawn, not a blank page
