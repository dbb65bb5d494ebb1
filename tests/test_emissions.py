"""The emission benchmark (``python -m trainer evaluate-emissions``): the replay through the
product's selector, the leave-the-moment-out reference and the checkpoint arithmetic on
cases worked by hand. (The run on real clips is in test_video_eval, on its dumps.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch", reason="the trainer needs the `train` extra (torch)")

from stream_gate.config import SelectConfig
from stream_gate.types import Scores
from trainer.emissions import END, Sent, at_checkpoint, headroom_share, reference_similarity, replay
from trainer.realvideo import ClipCrops


def _items(t: list[float], identity: str = "a") -> ClipCrops:
    n = len(t)
    return ClipCrops(
        crops=np.zeros((n, 112, 112, 3), np.uint8), clip=["c"] * n, track=np.ones(n, np.int64),
        t=np.array(t), frame_index=np.arange(n) * 3, det_score=np.ones(n, np.float32),
        box=np.tile(np.array([0, 0, 40, 40], np.float32), (n, 1)),
        landmarks=np.zeros((n, 5, 2), np.float32), identity=[identity] * n, split=["dev"] * n)


def _unit(deg: list[float]) -> np.ndarray:
    a = np.radians(deg)
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_replay_feeds_the_product_selector_crop_by_crop() -> None:
    items = _items([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    q = np.array([40.0, 50.0, 45.0, 52.0, 70.0, 60.0])
    scores = Scores(raw=q / 100, quality=q)
    # improving: the best of the first three crops once confirmed (3rd crop, t 0.2), then
    # only a crop 5 points better (70 at t 0.4; 52 is not).
    got = replay(items, list(range(6)), scores, SelectConfig(policy="improving",
                                                              consensus_weight=0.0))
    assert got == [Sent(1, pytest.approx(0.2)), Sent(4, pytest.approx(0.4))]
    # track_end: the best crop, sent when the track ends (its last crop, t 0.5).
    got = replay(items, list(range(6)), scores, SelectConfig(policy="track_end",
                                                              consensus_weight=0.0))
    assert got == [Sent(4, pytest.approx(0.5))]
    # Never confirmed (fewer crops than min_hits): nothing.
    assert replay(items, [0, 1], scores, SelectConfig(), min_hits=3) == []


def test_reference_leaves_out_the_moment_of_each_crop() -> None:
    # One person: crops at 0, 0.5, 2 and 3 s (angles 0, 10, 90, 60); another person far.
    items = ClipCrops.concat([_items([0.0, 0.5, 2.0, 3.0]), _items([0.0, 2.5], "b")])
    emb = _unit([0, 10, 90, 60, 180, 200])
    sims = reference_similarity(items, emb, gap_s=1.0)
    # Crop 0's reference is the crops at 2 and 3 s (90° and 60°, mean direction 75°).
    assert sims[0] == pytest.approx(math.cos(math.radians(75)), abs=1e-6)
    # Crop at 2 s: the crops at 0 and 0.5 s (mean direction 5°); not the one at 3 s.
    assert sims[2] == pytest.approx(math.cos(math.radians(85)), abs=1e-6)
    # The other person's reference is their own (0 vs 200°: 20° apart).
    assert sims[4] == pytest.approx(math.cos(math.radians(20)), abs=1e-6)
    # Nothing far enough away: no reference.
    assert np.isnan(reference_similarity(_items([0.0, 0.5]), emb[:2], gap_s=1.0)).all()


def test_checkpoints_see_only_what_was_sent_by_then() -> None:
    items = _items([0.0, 0.4, 0.8, 1.2, 1.6])
    sims = np.array([0.2, 0.6, 0.4, 0.9, 0.5])
    sent = [Sent(2, 0.8), Sent(3, 1.6)]
    v = at_checkpoint(items, range(5), sims, sent, 1.0)
    assert v is not None
    # By 1 s: crops 0-2 seen (mean 0.4, best 0.6), one sent (0.4).
    assert (v.random, v.oracle, v.best, v.latest, v.emitted) == pytest.approx(
        (0.4, 0.6, 0.4, 0.4, 1))
    v = at_checkpoint(items, range(5), sims, sent, END)
    assert v is not None and (v.best, v.latest, v.emitted) == pytest.approx((0.9, 0.9, 2))
    assert at_checkpoint(items, range(5), sims, [], 0.5) is not None
    assert at_checkpoint(items, range(5), sims, [], 0.5).best is None  # type: ignore[union-attr]
    assert at_checkpoint(items, range(5), sims, sent, 2.0) is None  # lasted 1.6 s only
    # Headroom of the per-person means: (0.5 - 0.4) / (0.6 - 0.4), people equal.
    assert headroom_share({"a": 0.4, "b": 0.6}, {"a": 0.3, "b": 0.5},
                          {"a": 0.5, "b": 0.7}) == pytest.approx(0.5)
    assert math.isnan(headroom_share({}, {}, {}))
