"""The real-video benchmark (``python -m trainer evaluate-video``): segments, picks, the
headroom arithmetic on a case worked by hand, the clip list's errors, and the whole run
on two short real clips (one of them several people named by a gallery)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="the trainer needs the `train` extra (torch)")

from trainer.realvideo import ClipCrops, Segment, load_clips, segments
from trainer.video_eval import (
    ORACLE,
    RANDOM,
    SEGMENT_ORACLE,
    compare,
    genuine_pairs,
    headroom,
    pair_weights,
    picks,
)

from .conftest import SHARED


def _items(t: list[float], identity: list[str], track: list[int] | None = None) -> ClipCrops:
    n = len(t)
    return ClipCrops(
        crops=np.zeros((n, 112, 112, 3), np.uint8), clip=[f"c_{i}" for i in identity],
        track=np.array(track or [1] * n), t=np.array(t), frame_index=np.arange(n),
        det_score=np.ones(n, np.float32), box=np.zeros((n, 4), np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32), identity=list(identity),
        split=["test"] * n)


def _unit(deg: list[float]) -> np.ndarray:
    a = np.radians(deg)
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_segments_cut_tracks_by_media_time_and_drop_single_crops() -> None:
    items = _items([0.0, 0.5, 1.6, 1.7, 3.5, 0.2, 0.4], ["a"] * 5 + ["b"] * 2)
    segs = segments(items, segment_s=1.5, min_crops=2)
    got = [(s.identity, s.index, s.rows.tolist()) for s in segs]
    # a: [0, 1.5) holds rows 0-1, [1.5, 3) rows 2-3, [3, 4.5) row 4 alone: left out.
    assert got == [("a", 0, [0, 1]), ("a", 1, [2, 3]), ("b", 0, [5, 6])]


def test_headroom_and_verification_worked_by_hand() -> None:
    # Two people, two segments each, two crops a segment; embeddings at these angles:
    # a: segment 0 at 0° and 60°, segment 1 at 0° and 90°; b the same turned by 180°.
    items = _items([0, 0.1, 2, 2.1] * 2, ["a"] * 4 + ["b"] * 4)
    emb = _unit([0, 60, 0, 90, 180, 240, 180, 270])
    segs = segments(items, 1.5)
    pairs = genuine_pairs(segs)
    assert pairs == [(0, 1), (2, 3)]
    good = picks(segs, np.array([1, 0, 1, 0] * 2))   # 0° with 0°: similarity 1
    bad = picks(segs, np.array([0, 1, 0, 1] * 2))    # 60° with 90°: cos 30°
    assert good.tolist() == [0, 2, 4, 6] and bad.tolist() == [1, 3, 5, 7]
    res = compare(emb, segs, pairs, {"good": good, "bad": bad}, threshold=0.9)
    # Random: the mean of the four crop pairs cos 0°, cos 90°, cos 60°, cos 30°.
    rnd = (1 + 0 + 0.5 + math.sqrt(3) / 2) / 4
    assert res[RANDOM].similarity == pytest.approx(rnd, abs=1e-6)
    assert res[ORACLE].similarity == pytest.approx(1.0, abs=1e-6)
    assert res["good"].similarity == pytest.approx(1.0, abs=1e-6)
    assert res["bad"].similarity == pytest.approx(math.sqrt(3) / 2, abs=1e-6)
    # At threshold 0.9 only the 0°/0° pair verifies: random 1 in 4, bad never.
    assert res[RANDOM].verification == pytest.approx(0.25)
    assert res["bad"].verification == 0.0 and res["good"].verification == 1.0
    assert headroom(res["good"].similarity, rnd, 1.0) == pytest.approx(1.0, abs=1e-6)
    assert headroom(res["bad"].similarity, rnd, 1.0) == pytest.approx(
        (math.sqrt(3) / 2 - rnd) / (1 - rnd), abs=1e-6)
    assert headroom(0.0, 0.25, 1.0) == pytest.approx(-1 / 3)
    assert math.isnan(headroom(0.5, 0.7, 0.7))  # no gap: no share to speak of


def test_every_person_weighs_the_same_however_long_their_clip() -> None:
    rows = np.array([0])
    segs = [Segment("a", "test", "c", 1, k, rows) for k in range(4)] + \
           [Segment("b", "test", "c", 2, k, rows) for k in range(2)]
    pairs = genuine_pairs(segs)
    assert len(pairs) == 6 + 1
    w = pair_weights(segs, pairs)
    assert w[:6] == pytest.approx([1 / 12] * 6) and w[6] == pytest.approx(0.5)


def test_clip_list_errors_name_the_entry(tmp_path: Path) -> None:
    video = tmp_path / "one.mp4"
    video.write_bytes(b"")
    cases = {
        'file = "one.mp4"\nidentity = "x"\ncolour = 1': "clips.0: unknown key 'colour'",
        'identity = "x"': "clips.0: 'file' is missing",
        'file = "gone.mp4"\nidentity = "x"': "clips.0.file:",
        'file = "one.mp4"': "either 'identity'",
        'file = "one.mp4"\nidentity = "x"\nsplit = "val"': "clips.0.split",
    }
    for body, message in cases.items():
        (tmp_path / "c.toml").write_text("[[clips]]\n" + body + "\n")
        with pytest.raises(SystemExit, match=message.replace("(", r"\(")):
            load_clips(tmp_path / "c.toml", tmp_path)
    (tmp_path / "two.mp4").write_bytes(b"")
    (tmp_path / "c.toml").write_text('[[clips]]\nfile = "one.mp4"\nidentity = "x"\nsplit = '
                                     '"dev"\n[[clips]]\nfile = "two.mp4"\nidentity = "x"\n'
                                     'split = "test"\n')
    with pytest.raises(SystemExit, match="'x' is in two halves"):
        load_clips(tmp_path / "c.toml", tmp_path)


def _frames(path: Path, start: int, count: int, size: int) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                out.append(cv2.resize(f.to_ndarray(format="bgr24"), (size, size)))
    return out


def _write(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        c.mux(s.encode())


@pytest.mark.slow
def test_benchmark_on_real_clips_with_a_gallery(tmp_path: Path) -> None:
    """Two people cut from real clips, each alone in a clip and side by side in a third
    one named by a gallery of other frames of them: the report has every selector, the
    ceiling and floor where they belong, a contact sheet, and a second run reuses the
    pipeline's dumps."""
    from trainer.__main__ import main as trainer_main

    media = SHARED / "media"
    teacher = SHARED / "models" / "mobilefacenet_128d.onnx"
    a_src, b_src = media / "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", \
        media / "liveportrait_d19.mp4"
    for p in (a_src, b_src, teacher):
        if not p.exists():
            pytest.skip(f"{p} is absent: tests that need ../shared/data skip without it")
    a, b = _frames(a_src, 0, 75, 256), _frames(b_src, 0, 75, 256)
    _write(tmp_path / "a.mp4", a)
    _write(tmp_path / "b.mp4", b)
    _write(tmp_path / "ab.mp4", [np.hstack([x, y]) for x, y in zip(a, b, strict=True)])
    gallery = tmp_path / "gallery"
    for name, src in (("person_a", a_src), ("person_b", b_src)):
        (gallery / name).mkdir(parents=True)
        for k, frame in enumerate(_frames(src, 150, 40, 256)[::20]):
            cv2.imwrite(str(gallery / name / f"{k}.jpg"), frame)
    clips = tmp_path / "clips.toml"
    clips.write_text('[[clips]]\nfile = "a.mp4"\nidentity = "person_a"\nsplit = "test"\n'
                     '[[clips]]\nfile = "b.mp4"\nidentity = "person_b"\nsplit = "test"\n'
                     '[[clips]]\nfile = "ab.mp4"\ngallery = true\n')
    out = tmp_path / "out"
    args = ["evaluate-video", "--clips", str(clips), "--media", str(tmp_path), "--teacher",
            str(teacher), "--comparator", "teacher", "--fps", "5", "--out", str(out),
            "--gallery", str(gallery), "--size-weight", "20", "--consensus-weight", "3"]
    assert trainer_main(args) == 0
    result = json.loads((out / "results.json").read_text())
    half = result["halves"]["test"]
    assert set(half) >= {"identities", "segments", "genuine_pairs", "comparators"}
    assert half["identities"] == ["person_a", "person_b"]
    assert "ab" in half["clips"]  # the side-by-side clip's tracks were named
    sel = half["comparators"]["teacher"]["selectors"]
    assert set(sel) == {"cr-fiqa-s@1", "cr-fiqa-s@1 + 20/2x area",
                        "cr-fiqa-s@1 + 3x consensus", "heuristic", "largest face",
                        "detector score", "Laplacian", "track consensus", RANDOM, ORACLE,
                        SEGMENT_ORACLE}
    assert sel["cr-fiqa-s@1"]["minus_reference"] == 0  # the reference, against itself
    assert sel[ORACLE]["minus_reference"] == pytest.approx(
        1 - sel["cr-fiqa-s@1"]["headroom_similarity"], abs=1e-3)
    for name, v in sel.items():
        assert v["similarity"] <= sel[ORACLE]["similarity"] + 1e-9, name
    assert sel[ORACLE]["headroom_similarity"] == 1.0 and sel[RANDOM]["headroom_similarity"] == 0
    # The one-pick share: the same gain over random, against the best one-pick selector's.
    assert sel[SEGMENT_ORACLE]["of_one_pick_ceiling"] == 1.0
    ceil = sel[SEGMENT_ORACLE]["headroom_similarity"]
    for name, v in sel.items():
        assert v["of_one_pick_ceiling"] == pytest.approx(v["headroom_similarity"] / ceil,
                                                         abs=2e-3), name
    sheet = cv2.imread(str(out / "picks-test.png"))
    assert sheet is not None and sheet.shape[1] > 5 * 80  # a column per picking selector
    # The fused selector's long name is printed whole: its third line ("area") has ink
    # where the first column's one-line name leaves the header blank above the crops.
    assert (sheet[33:47, 170 + 80 : 170 + 160] < 128).any()
    assert not (sheet[20:47, 170 : 170 + 80] < 128).any()
    # The gallery named each side of the side-by-side clip after the right person.
    dump = out / "dump" / "ab"
    left: dict[int, list[bool]] = {}
    for meta in dump.glob("ab_t*.json"):
        m = json.loads(meta.read_text())
        left.setdefault(int(m["track_id"]), []).append(json.loads(m["bbox"])[0] < 256)
    named = {int(k.split("/")[1]): v for k, v in half["tracks"].items() if k.startswith("ab/")}
    assert set(named.values()) == {"person_a", "person_b"}
    for track, who in named.items():
        assert all(left[track]) == (who == "person_a") and any(left[track]) == all(left[track])
    done = (dump / "done.json").stat().st_mtime_ns
    assert trainer_main(args) == 0  # same clips and settings: the dumps are reused
    assert (dump / "done.json").stat().st_mtime_ns == done

    # The emission benchmark replays the same dumps through the product's selector.
    assert trainer_main(["evaluate-emissions", "--clips", str(clips), "--media", str(tmp_path),
                         "--teacher", str(teacher), "--comparator", "teacher", "--fps", "5",
                         "--out", str(out)]) == 0
    assert (dump / "done.json").stat().st_mtime_ns == done
    em = json.loads((out / "emissions.json").read_text())["halves"]["test"]
    assert em["people"] == 2  # the identity clips (the gallery clip is evaluate-video's)
    res = em["comparators"]["teacher"]
    assert set(res["checkpoints"]) == {"0.5", "1.0", "2.0", "4.0", "end"}
    early, end = res["checkpoints"]["0.5"], res["checkpoints"]["end"]
    assert set(end["settings"]) == {"improving", "improving + 3x consensus", "track_end",
                                    "track_end + 3x consensus"}
    for name, s in early["settings"].items():  # improving sends once confirmed; track_end
        # only when the track ends
        assert s["holding"] == (early["tracks"] if name.startswith("improving") else 0), name
    for name, s in end["settings"].items():
        assert s["holding"] == end["tracks"], name
        assert s["best_held"] <= 1 + 1e-9 and s["latest"] <= s["best_held"] + 1e-9, name
        assert s["emitted_per_track"] >= 1, name
    assert end["settings"]["track_end"]["emitted_per_track"] == 1  # top_k 1, sent once
    assert res["first_emission_s_median"]["improving"] < \
        res["first_emission_s_median"]["track_end"]


def test_real_targets_leave_the_segment_out_and_spare_same_clip_tracks() -> None:
    from trainer.realset import pseudo_identities, real_targets

    # Clip x: person p, two segments. Clip y: two tracks of one unnamed person (y#1 with
    # two segments, y#2 with one): the tracker lost and found them again.
    items = _items([0, 0.1, 2, 2.1, 0, 0.1, 2, 2.1, 5], ["p"] * 4 + [""] * 5,
                   track=[1, 1, 1, 1, 1, 1, 1, 1, 2])
    items.clip[4:] = ["y"] * 5
    pseudo_identities(items)
    assert items.identity[4:] == ["y#1"] * 4 + ["y#2"]
    emb = _unit([0, 10, 20, 30, 90, 95, 100, 105, 100])
    segs = segments(items, 1.5, min_crops=1)
    lfw = _unit([180])
    rows, cr, ccs, nnccs = real_targets(emb, items, segs, lfw)
    assert sorted(rows.tolist()) == list(range(8))  # y#2 has one segment: no target
    at = {int(r): i for i, r in enumerate(rows)}
    # Crop 0 (0°) against p's other segment (20°, 30°): their mean direction is 25°.
    assert ccs[at[0]] == pytest.approx(math.cos(math.radians(25)), abs=1e-5)
    # Its nearest negative is y#1's centre (90..105°: 97.5°), nearer than LFW's (180°).
    assert nnccs[at[0]] == pytest.approx(math.cos(math.radians(97.5)), abs=1e-5)
    # y#1's negatives: p and LFW, never y#2 (same clip, maybe the same person).
    assert nnccs[at[4]] == pytest.approx(math.cos(math.radians(90 - 15)), abs=1e-5)
    assert cr[at[0]] == pytest.approx(ccs[at[0]] / (nnccs[at[0]] + 1), abs=1e-6)


@pytest.mark.slow
def test_real_data_builds_a_training_set_from_train_and_dev_clips(tmp_path: Path) -> None:
    from trainer.__main__ import main as trainer_main
    from trainer.distill import DistillSet

    media = SHARED / "media"
    teacher = SHARED / "models" / "mobilefacenet_128d.onnx"
    lfw = SHARED / "lfw" / "images"
    srcs = [media / "crowd_walking_1080p.mp4", media / "liveportrait_d19.mp4"]
    for p in (*srcs, teacher, lfw):
        if not p.exists():
            pytest.skip(f"{p} is absent: tests that need ../shared/data skip without it")
    _write(tmp_path / "crowd.mp4", _frames(srcs[0], 0, 75, 720))
    frames = _frames(srcs[1], 0, 150, 256)
    _write(tmp_path / "dev.mp4", frames[:75])
    _write(tmp_path / "test.mp4", frames[75:])
    images = tmp_path / "images"
    for person in ("Aaron_Peirsol", "Abdullah_Gul"):
        (images / person).mkdir(parents=True)
        for src in sorted((lfw / person).glob("*.jpg"))[:3]:
            (images / person / src.name).symlink_to(src)
    assert trainer_main(["prepare", "--images", str(images), "--out", str(tmp_path / "lfw"),
                         "--val-fraction", "0"]) == 0
    clips = tmp_path / "clips.toml"
    clips.write_text('[[clips]]\nfile = "crowd.mp4"\nsplit = "train"\n'
                     '[[clips]]\nfile = "dev.mp4"\nidentity = "d19"\nsplit = "dev"\n'
                     '[[clips]]\nfile = "test.mp4"\nidentity = "d19b"\nsplit = "test"\n')
    out = tmp_path / "real"
    base = ["real-data", "--clips", str(clips), "--media", str(tmp_path), "--splits",
            "train,dev", "--teacher", str(teacher), "--prepared", str(tmp_path / "lfw"),
            "--fps", "5", "--out", str(out)]
    with pytest.raises(SystemExit, match="never train on them"):
        trainer_main([*base, "--splits", "dev,test"])
    assert trainer_main(base) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == ["crowd.mp4", "dev.mp4"]  # the test clip is never read
    assert summary["pseudo_identities"] >= 2 and summary["identities"] == \
        summary["pseudo_identities"] + 1
    data = DistillSet.load(out / "real")
    assert data.crops.shape == (summary["samples"], 112, 112, 3)
    assert np.all(np.isfinite(data.cr)) and not data.degraded.any()
    assert len(np.unique(data.identity)) == summary["identities"]


def test_headroom_interval_widens_when_people_disagree() -> None:
    from trainer.video_eval import Outcome, headroom_interval

    rnd = Outcome(0.5, 1.0, (0.5, 0.5, 0.5, 0.5))
    ora = Outcome(1.0, 1.0, (1.0, 1.0, 1.0, 1.0))
    same = Outcome(0.75, 1.0, (0.75, 0.75, 0.75, 0.75))
    split = Outcome(0.75, 1.0, (1.0, 0.5, 1.0, 0.5))
    assert headroom_interval(same, rnd, ora) == pytest.approx((0.5, 0.5))
    lo, hi = headroom_interval(split, rnd, ora)
    assert lo < 0.5 < hi and lo >= 0.0 and hi <= 1.0


def test_paired_difference_is_sure_where_two_intervals_side_by_side_overlap() -> None:
    from trainer.video_eval import Outcome, headroom_interval

    # People differ a lot (some easy, some hard), but B beats A by 0.1 on every one.
    rnd = Outcome(0.5, 1.0, (0.5,) * 6)
    ora = Outcome(1.0, 1.0, (1.0,) * 6)
    a = Outcome(0.65, 1.0, (0.55, 0.9, 0.55, 0.9, 0.55, 0.45))
    b = Outcome(0.7, 1.0, (0.6, 0.95, 0.6, 0.95, 0.6, 0.5))
    a_hi = headroom_interval(a, rnd, ora)[1]
    b_lo = headroom_interval(b, rnd, ora)[0]
    assert b_lo < a_hi  # side by side, the intervals overlap ...
    assert headroom_interval(b, rnd, ora, minus=a) == pytest.approx((0.1, 0.1))  # ... paired:
    assert headroom_interval(a, rnd, ora, minus=a) == pytest.approx((0.0, 0.0))  # sure


def test_size_fusion_trades_quality_points_for_doublings_of_the_face_area() -> None:
    from trainer.video_eval import size_fused

    items = _items([0.0, 0.1], ["a", "a"])
    items.box[:] = [[0, 0, 10, 10], [0, 0, 20, 20]]  # the second face: twice as wide
    quality = np.array([50.0, 45.0])
    segs = segments(items, 1.5)
    # Two doublings of the area make up for 5 points of quality when W > 2.5.
    assert picks(segs, size_fused(quality, items, 0.0)).tolist() == [0]
    assert picks(segs, size_fused(quality, items, 2.0)).tolist() == [0]
    assert picks(segs, size_fused(quality, items, 3.0)).tolist() == [1]
    # The benchmark ranks as the product's selector does (select.size_weight = 3).
    from stream_gate.config import SelectConfig
    from stream_gate.stages.select import Selector
    from stream_gate.types import Candidate

    product = Selector(SelectConfig(size_weight=3.0), "test")
    ranks = [product.rank(Candidate(
        stream_id="s", track_id=1, frame_index=i, pts=i, t=0.0, wall_ms=0, box=items.box[i],
        landmarks=items.landmarks[i], det_score=1.0, crop=items.crops[i], quality=q,
        quality_raw=q / 100)) for i, q in enumerate(quality)]
    assert ranks == pytest.approx(size_fused(quality, items, 3.0).tolist())


def test_track_consensus_ranks_each_crop_against_its_own_track_only() -> None:
    """Two tracks of made-up faces: each crop's agreement is with its own track's crops
    (the product's signature), so a track of odd crops cannot pull another's ranking;
    the fused selector trades quality points for agreement as select.consensus_weight."""
    from stream_gate.stages.select import agreement, appearance_signature
    from trainer.video_eval import track_agreement

    rng = np.random.default_rng(0)
    face = np.zeros((112, 112, 3), np.uint8)
    cv2.circle(face, (56, 60), 38, (200, 200, 200), -1)
    for x in (38, 74):  # two eyes
        cv2.circle(face, (x, 50), 6, (30, 30, 30), -1)
    cv2.line(face, (42, 82), (70, 82), (30, 30, 30), 3)
    noisy = [np.clip(face + rng.normal(0, 12, face.shape), 0, 255).astype(np.uint8)
             for _ in range(3)]
    shifted = np.roll(face, 20, axis=1)
    items = _items([0.0, 0.1, 0.2, 0.3, 0.0, 0.1], ["a"] * 4 + ["b"] * 2,
                   track=[1, 1, 1, 1, 2, 2])
    items.crops[:] = [*noisy, shifted, shifted, shifted]
    agree = track_agreement(items)
    sigs = np.stack([appearance_signature(c) for c in items.crops])
    assert agree[:4] == pytest.approx(agreement(sigs[:4], sigs[:4].sum(0)))
    assert agree[4:] == pytest.approx([100.0, 100.0], abs=1e-3)  # alike: full agreement
    assert agree[3] < agree[:3].min() - 10  # the misaligned crop of track 1 ranks last
    segs = [s for s in segments(items, 1.5) if s.identity == "a"]
    quality = np.array([50.0, 50.0, 50.0, 60.0, 0.0, 0.0])
    assert picks(segs, quality).tolist() == [3]  # quality alone: the odd crop
    assert picks(segs, quality + 3.0 * agree).tolist() != [3]
    # A model's own signature (cr-fiqa-s v2) replaces the edges: here it calls crop 0 the
    # odd one of track 1, which the edges did not.
    emb = np.tile(rng.normal(size=(1, 128)).astype(np.float32), (6, 1))
    emb[0] = rng.normal(size=128)
    by_model = track_agreement(items, emb)
    assert by_model[0] < by_model[1:4].min() - 10 and by_model[1:4] == pytest.approx(
        [by_model[1]] * 3)
    assert by_model[4:] == pytest.approx([100.0, 100.0], abs=1e-3)


def test_segment_oracle_picks_the_crop_nearest_the_persons_other_segments() -> None:
    from trainer.video_eval import segment_oracle

    items = _items([0, 0.1, 2, 2.1, 4, 4.1], ["a"] * 6)
    emb = _unit([0, 50, 40, 90, 45, 120])  # segment 1 and 2 lean towards 45°
    segs = segments(items, 1.5)
    assert segment_oracle(emb, segs).tolist() == [1, 2, 4]
