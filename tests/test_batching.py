"""Cross-stream batching: a partial batch waits only as long as frames are due."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from stream_gate.config import load_settings
from stream_gate.pipeline.graph import build_pipeline


def test_a_partial_batch_does_not_wait_for_frames_that_are_not_due(
        media: Callable[[str], Path]) -> None:
    """One camera at 10 fps, batches of 8, an operator's max_wait_ms of 2 s: a batch
    would take 800 ms to fill, so without the frame-period cap every frame waited most of
    a second; with it, a frame waits at most one frame period (100 ms) for company."""
    settings = load_settings(None, {
        "streams": [{"id": "cam", "url": "loop://" + str(media("intel_classroom.mp4")),
                     "fps": 10.0}],
        "detect": {"batch_size": 8, "max_wait_ms": 2000}})
    pipeline = build_pipeline(settings, [], collect=True)
    report = pipeline.run(duration=4.0)
    assert report.frames >= 25  # ~10 analysed frames per second kept up
    assert float(np.percentile(report.latency_ms, 95)) < 500
