"""The review page: built from a real run's dump, opened in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_gate.config import SelectConfig
from stream_gate.service.review import improving_entries
from stream_gate.stages.select import Selector
from stream_gate.types import TrackEnd

from .conftest import run_cli
from .test_select import cand

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_the_improving_table_counts_what_the_selector_emits() -> None:
    qualities = [12.0, 30.0, 33.0, 36.0, 70.0, 72.0, 90.0, 50.0, 96.0]
    for min_quality in (0.0, 35.0, 80.0):
        cfg = SelectConfig(policy="improving", min_quality=min_quality, improve_delta=5.0)
        sel = Selector(cfg, "m")
        sent = [em for i, q in enumerate(qualities) for em in sel.offer(cand(1, i, q), True)]
        sent += sel.end(TrackEnd(1, True, len(qualities)))
        assert improving_entries(qualities, min_quality, 5.0) == len(sent), min_quality


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
    assert "Counted by quality alone" in dom  # the improving table says what it leaves out
    histogram = dom[dom.index('class="plot histogram"'):dom.index('class="plot quality"')]
    assert histogram.count('id="patch_') >= 20  # the bars
    shot = tmp_path / "review.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1280,1600",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1280)
    assert float(np.std(image)) > 20  # crops and plots drawn, not a blank page
