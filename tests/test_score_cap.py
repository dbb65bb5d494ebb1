"""score.max_per_track_hz: each person is scored at most that often, and still emitted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stream_gate.bench.variants import naive_settings, run_pipeline_variant
from stream_gate.config import load_settings


def test_scoring_cap_scores_less_and_emits_the_same_people(media: Callable[[str], Path]
                                                          ) -> None:
    def run(hz: float) -> tuple[int, int, set[int], dict[int, int], dict[int, float]]:
        s = load_settings(None, {
            "score": {"max_per_track_hz": hz},
            "streams": [{"id": "walk", "fps": 12,
                         "url": str(media("intel_face-demographics-walking-and-pause.mp4"))}]})
        _, r = run_pipeline_variant(s, None, detect_only=False)
        spans = {k[1]: (max(t.boxes) - min(t.boxes)) / 12 for k, t in r.tracks.items() if t.boxes}
        return (r.scored, r.capped, {e.candidate.track_id for e in r.emissions},
                {k[1]: t.scored for k, t in r.tracks.items()}, spans)

    scored, capped, people, _, _ = run(0)
    scored2, capped2, people2, per_track, spans = run(2.0)
    assert capped == 0 and capped2 > 0
    assert scored2 + capped2 == scored and scored2 < scored / 2
    assert people2 == people  # every person still gets a best shot
    for tid, n in per_track.items():  # at most 2 per second of the track's life, +1
        assert n <= 2 * spans[tid] + 1, (tid, n, spans[tid])


def test_bench_naive_scores_every_face_even_when_the_config_caps_scoring(
        media: Callable[[str], Path]) -> None:
    s = load_settings(None, {
        "score": {"max_per_track_hz": 1.0},
        "streams": [{"id": "walk", "url": str(media("intel_face-demographics-walking.mp4"))}]})
    _, naive = run_pipeline_variant(naive_settings(s), None, detect_only=False)
    _, capped = run_pipeline_variant(s, None, detect_only=False)
    assert capped.capped > 0
    assert naive.capped == 0 and naive.scored == naive.faces
