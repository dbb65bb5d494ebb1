"""Selection policies: exact emissions for hand-made score sequences."""

from __future__ import annotations

import dataclasses
import itertools

import cv2
import numpy as np

from stream_gate.config import SelectConfig
from stream_gate.stages.select import POOL, Selector, agreement, appearance_signature
from stream_gate.types import Candidate, TrackEnd


def cand(track: int, frame: int, q: float, t: float | None = None, side: float = 0.0
         ) -> Candidate:
    return Candidate(
        stream_id="s", track_id=track, frame_index=frame, pts=frame,
        t=frame * 0.2 if t is None else t, wall_ms=0,
        box=np.array([10, 10, 10 + side, 10 + side], np.float32),
        landmarks=np.zeros((5, 2), np.float32),
        det_score=0.9, crop=np.zeros((112, 112, 3), np.uint8), quality=q, quality_raw=q / 100,
    )


def selector(**kw: object) -> Selector:
    """A selector with these settings; ranking by quality alone unless the test turns the
    consensus on (its default is 3)."""
    kw.setdefault("consensus_weight", 0.0)
    counter = itertools.count(1)
    return Selector(SelectConfig(**kw), "test", make_id=lambda: f"e{next(counter)}")


def summary(ems: list) -> list[tuple[str, int, int, float]]:
    return [(e.reason, e.rank, e.candidate.frame_index, e.candidate.quality) for e in ems]


def test_track_end_emits_top_k_in_rank_order_only_at_the_end() -> None:
    sel = selector(policy="track_end", top_k=2)
    out = []
    for i, q in enumerate([40, 70, 55, 90, 20]):
        out += sel.offer(cand(1, i, q), confirmed=i >= 2)
    assert out == []
    ems = sel.end(TrackEnd(1, True, 5))
    assert summary(ems) == [("track_end", 1, 3, 90), ("track_end", 2, 1, 70)]
    assert [e.emit_id for e in ems] == ["e1", "e2"]
    assert sel.held_tracks == 0


def test_unconfirmed_track_emits_nothing() -> None:
    sel = selector(policy="improving", min_quality=10)
    assert sel.offer(cand(1, 0, 80), confirmed=False) == []
    assert sel.end(TrackEnd(1, False, 1)) == []


def test_improving_emits_at_min_quality_then_only_on_real_improvement() -> None:
    sel = selector(policy="improving", min_quality=50, improve_delta=10)
    seq = [(30, True), (55, True), (60, True), (66, True), (64, True), (80, True)]
    got = [summary(sel.offer(cand(1, i, q), confirmed=c)) for i, (q, c) in enumerate(seq)]
    assert got == [[], [("improving", 1, 1, 55)], [], [("improving", 1, 3, 66)], [],
                   [("improving", 1, 5, 80)]]
    assert sel.end(TrackEnd(1, True, 6)) == []  # best already sent


def test_improving_holds_until_confirmed_then_sends_the_best_so_far() -> None:
    sel = selector(policy="improving", min_quality=50)
    assert sel.offer(cand(1, 0, 75), confirmed=False) == []
    assert sel.offer(cand(1, 1, 60), confirmed=False) == []
    assert summary(sel.offer(cand(1, 2, 52), confirmed=True)) == [("improving", 1, 0, 75)]


def test_below_min_quality_is_never_emitted() -> None:
    for consensus in (0.0, 3.0):  # with the consensus on it still counts for the centre
        sel = selector(policy="track_end", min_quality=60, consensus_weight=consensus)
        sel.offer(cand(1, 0, 59), confirmed=True)
        assert sel.end(TrackEnd(1, True, 1)) == []


def test_max_wait_emits_a_lingering_person_then_track_end_only_if_better() -> None:
    sel = selector(policy="track_end", max_wait_s=1.0, improve_delta=5)
    out = []
    for i, q in enumerate([50, 60, 58, 57, 59]):  # t = 0.0 .. 0.8: under max_wait
        out += sel.offer(cand(1, i, q), confirmed=True)
    assert out == []
    out = sel.offer(cand(1, 5, 62), confirmed=True)  # t = 1.0: waited long enough
    assert summary(out) == [("max_wait", 1, 5, 62)]
    sel.offer(cand(1, 6, 64), confirmed=True)  # +2: not enough to send again
    assert sel.end(TrackEnd(1, True, 7)) == []

    sel2 = selector(policy="track_end", max_wait_s=1.0, improve_delta=5)
    for i, q in enumerate([50, 60, 58, 57, 59, 62]):
        sel2.offer(cand(2, i, q), confirmed=True)
    sel2.offer(cand(2, 6, 70), confirmed=True)  # +8 over the max_wait emission
    assert summary(sel2.end(TrackEnd(2, True, 7))) == [("track_end", 1, 6, 70)]


def test_tick_applies_max_wait_without_new_crops() -> None:
    sel = selector(policy="track_end", max_wait_s=2.0)
    sel.offer(cand(1, 0, 40, t=10.0), confirmed=True)
    assert sel.tick(11.5) == []
    assert summary(sel.tick(12.0)) == [("max_wait", 1, 0, 40)]
    assert sel.tick(13.0) == []


def test_tracks_are_independent() -> None:
    sel = selector(policy="track_end")
    sel.offer(cand(1, 0, 40), confirmed=True)
    sel.offer(cand(2, 0, 90), confirmed=True)
    assert summary(sel.end(TrackEnd(1, True, 1))) == [("track_end", 1, 0, 40)]
    assert summary(sel.end(TrackEnd(2, True, 1))) == [("track_end", 1, 0, 90)]


def test_size_weight_trades_quality_points_for_a_larger_face() -> None:
    # A 40-px face at quality 60, then an 80-px face (4x the area) at quality 50.
    crops = [cand(1, 0, 60, side=40), cand(1, 1, 50, side=80)]

    def best(**kw: object) -> list[tuple[str, int, int, float]]:
        sel = selector(policy="track_end", **kw)
        for c in crops:
            sel.offer(c, confirmed=True)
        return summary(sel.end(TrackEnd(1, True, 2)))

    assert best() == [("track_end", 1, 0, 60)]  # quality alone
    assert best(size_weight=4) == [("track_end", 1, 0, 60)]  # 2 doublings: 8 < 10 points
    assert best(size_weight=6) == [("track_end", 1, 1, 50)]  # 12 > 10 points; the entry
    # still carries the model's quality (50), and min_quality still applies to it:
    assert best(size_weight=6, min_quality=55) == [("track_end", 1, 0, 60)]


def test_size_weight_improving_counts_the_face_size_in_the_improvement() -> None:
    sel = selector(policy="improving", improve_delta=5, size_weight=10)
    first = sel.offer(cand(1, 0, 60, side=40), confirmed=True)
    # Quality 58 but twice the area (+20 points): an improvement by 18 ranks.
    again = sel.offer(cand(1, 1, 58, side=40 * 2**0.5), confirmed=True)
    smaller = sel.offer(cand(1, 2, 70, side=20), confirmed=True)  # -20 + 10: not better
    assert summary(first) == [("improving", 1, 0, 60)]
    assert summary(again) == [("improving", 1, 1, 58)]
    assert smaller == []


def _photo_crops(lfw_image: object, person: str, n: int) -> np.ndarray:
    """Aligned 112-px crops of ``n`` LFW photos of one person (the product's detector)."""
    from trainer.data import align_photos

    crops = align_photos([lfw_image(person, i) for i in range(1, n + 1)])  # type: ignore[operator]
    assert len(crops) == n
    return crops


def _real(track: int, frame: int, q: float, crop: np.ndarray) -> Candidate:
    return dataclasses.replace(cand(track, frame, q), crop=crop)


def test_consensus_prefers_a_typical_crop_to_an_odd_one_that_scores_higher(
        lfw_image: object) -> None:
    """One person's real crops at quality 60 and one that scores 70 but is unlike the
    rest: with the consensus on, a crop the recogniser can match is sent instead."""
    crops = _photo_crops(lfw_image, "George_W_Bush", 7)
    rot = cv2.getRotationMatrix2D((56, 56), 25, 1.0)
    odd = {"misaligned by 16 px": np.roll(crops[0], 16, axis=1),
           "tilted by 25 degrees": cv2.warpAffine(crops[0], rot, (112, 112),
                                                  borderMode=cv2.BORDER_REPLICATE)}
    for what, bad in odd.items():
        for weight, sent in ((0.0, 6), (3.0, None)):
            sel = selector(policy="track_end", consensus_weight=weight)
            for i, c in enumerate(crops[1:]):
                sel.offer(_real(1, i, 60, c), confirmed=True)
            sel.offer(_real(1, 6, 70, bad), confirmed=True)
            (em,) = sel.end(TrackEnd(1, True, 7))
            if sent is not None:
                assert em.candidate.frame_index == sent, what  # quality alone: the odd one
            else:
                assert em.candidate.frame_index != 6, what
                assert em.candidate.quality == 60  # the entry carries the model's score


def test_consensus_uses_the_quality_model_s_signature_when_it_gives_one() -> None:
    """With cr-fiqa-s v2 each crop carries the model's appearance embedding, and the
    consensus compares those instead of the crops' edges: here every crop is the same
    picture (its edges cannot tell them apart), but the one scoring 70 has an embedding
    unlike the rest, so with the consensus on it loses; without embeddings it wins."""
    rng = np.random.default_rng(0)
    typical = rng.normal(size=128).astype(np.float32)
    sigs = [typical + 0.3 * rng.normal(size=128).astype(np.float32) for _ in range(6)]
    odd = rng.normal(size=128).astype(np.float32)
    for with_model, sent in ((False, 6), (True, None)):
        sel = selector(policy="track_end", consensus_weight=3.0)
        for i, sig in enumerate(sigs):
            c = cand(1, i, 60)
            sel.offer(dataclasses.replace(c, signature=sig if with_model else None), True)
        c = cand(1, 6, 70)
        sel.offer(dataclasses.replace(c, signature=odd if with_model else None), True)
        (em,) = sel.end(TrackEnd(1, True, 7))
        if sent is not None:
            assert em.candidate.frame_index == sent
        else:
            assert em.candidate.frame_index != 6 and em.candidate.quality == 60


def test_consensus_ranks_against_the_whole_track_at_its_end(lfw_image: object) -> None:
    """The first crop held is the best of the track so far; later crops of the person move
    the centre, and at track end the pool is ranked against all of them. More crops than
    the pool keeps still end in top_k emissions in rank order."""
    crops = _photo_crops(lfw_image, "George_W_Bush", 7)
    sel = selector(policy="track_end", consensus_weight=3.0, top_k=2)
    frames = [(i, c) for i, c in enumerate(list(crops) * 3)]  # 21 crops: more than POOL
    for f, c in frames:
        sel.offer(_real(1, f, 50, c), confirmed=True)
    ems = sel.end(TrackEnd(1, True, len(frames)))
    assert [e.rank for e in ems] == [1, 2]
    # The benchmark's formula (every crop against the sum of the track's signatures)
    # agrees with the selector on which photo is most typical.
    sigs = np.stack([appearance_signature(c) for _, c in frames])
    best = np.argsort(-agreement(sigs, sigs.sum(0)), kind="stable")
    assert {ems[0].candidate.frame_index % 7, ems[1].candidate.frame_index % 7} <= \
        {int(best[k]) % 7 for k in range(6)}
    assert ems[0].candidate.frame_index % 7 == int(best[0]) % 7


def test_consensus_improving_emits_once_confirmed_and_keeps_its_pool_bounded(
        lfw_image: object) -> None:
    crops = _photo_crops(lfw_image, "George_W_Bush", 4)
    sel = selector(policy="improving", consensus_weight=3.0, improve_delta=5)
    got = [sel.offer(_real(1, i, 55, crops[i % 4]), confirmed=i >= 2) for i in range(40)]
    assert [len(g) for g in got[:3]] == [0, 0, 1]  # the first confirmed crop sends
    # The centre settles on four photos repeated: at most the most typical one is sent as
    # an improvement, and no photo twice (its copies rank the same).
    photos = [e.candidate.frame_index % 4 for g in got for e in g]
    assert len(photos) <= 2 and len(set(photos)) == len(photos)
    held = sel._held[1]
    assert len(held.top) <= POOL
    assert set(held.signature) == {c.frame_index for c in held.top} | held.emitted


def test_consensus_improving_sends_a_better_crop_once_the_person_turns() -> None:
    """A person confirmed while turned away (three alike crops: they agree with each
    other fully) and then seen frontal (crops alike up to noise, one scoring a little
    higher): the frontal crop is sent as an improvement, because the crop sent first is
    ranked against the same centre as it (the turned-away crops are now the odd ones),
    not by the rank it had when three crops made the whole track. Later frontal crops
    of the same score are not sent again."""
    rng = np.random.default_rng(1)
    away = rng.normal(size=128).astype(np.float32)
    frontal = rng.normal(size=128).astype(np.float32)
    sel = selector(policy="improving", consensus_weight=3.0, improve_delta=5)
    sent = []
    for i in range(30):
        sig = away if i < 3 else frontal + 0.25 * rng.normal(size=128).astype(np.float32)
        q = 62.0 if i == 20 else 60.0
        c = dataclasses.replace(cand(1, i, q), signature=sig)
        sent += [e.candidate.frame_index for e in sel.offer(c, confirmed=i >= 2)]
    assert sent[0] < 3  # confirmed at the third crop: the best so far, turned away
    assert len(sent) == 2 and sent[1] >= 3  # one frontal crop sent, no flood after it
    assert sel.end(TrackEnd(1, True, 30)) == []  # nothing owed: the sent crop still leads


def test_consensus_turned_on_mid_track_ranks_the_crops_already_held(lfw_image: object) -> None:
    """Hot reload: a track held under consensus_weight 0 keeps its pool; once the weight
    is on, its crops get signatures and count towards the centre, and an odd crop that
    led on quality alone loses at track end."""
    crops = _photo_crops(lfw_image, "George_W_Bush", 7)
    sel = selector(policy="track_end", top_k=3)
    sel.offer(_real(1, 0, 70, np.roll(crops[0], 16, axis=1)), confirmed=True)  # odd, best
    for i in (1, 2):
        sel.offer(_real(1, i, 60, crops[i]), confirmed=True)
    sel.reconfigure(SelectConfig(policy="track_end", top_k=1, consensus_weight=3.0))
    assert sel.end(TrackEnd(1, True, 3))[0].candidate.frame_index == 0  # no crop since:
    # no centre yet, so quality alone still ranks
    sel.offer(_real(2, 0, 70, np.roll(crops[0], 16, axis=1)), confirmed=True)
    sel.reconfigure(SelectConfig(policy="track_end", top_k=3, consensus_weight=0.0))
    for i in (1, 2):
        sel.offer(_real(2, i, 60, crops[i]), confirmed=True)
    sel.reconfigure(SelectConfig(policy="track_end", top_k=1, consensus_weight=3.0))
    for i in (3, 4):
        sel.offer(_real(2, i, 60, crops[i]), confirmed=True)
    (em,) = sel.end(TrackEnd(2, True, 5))
    assert em.candidate.frame_index != 0
