"""The CR-FIQA trainer: degradations, CR targets, calibration, and a tiny end-to-end run."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the trainer needs the `train` extra (torch)")

from stream_gate.pipeline.observe import RunReport  # noqa: E402
from stream_gate.stages.align_score.heuristic import sharpness  # noqa: E402
from stream_gate.stages.align_score.learned import CrFiqaScorer, to_model_input  # noqa: E402
from trainer.cr import certainty_ratio, identity_centres  # noqa: E402
from trainer.data import split_of  # noqa: E402
from trainer.degrade import (  # noqa: E402
    DEGRADATIONS,
    FAMILIES,
    kinds_without,
    random_degradation,
)
from trainer.distill import holdout_of, loo_certainty_ratio  # noqa: E402
from trainer.evaluate import DISCARD, _items, edc, pauc, protocol  # noqa: E402
from trainer.export import fit_calibration, isotonic  # noqa: E402
from trainer.jitter import jitter_alignment, jitter_batch  # noqa: E402

from .conftest import SHARED  # noqa: E402


@pytest.fixture
def face(lfw_image: Callable[..., Path]) -> np.ndarray:
    from stream_gate.config import DetectConfig
    from stream_gate.stages.align_score.template import align_face
    from stream_gate.stages.detect import build_host_detector

    img = cv2.imread(str(lfw_image()))
    det = build_host_detector(DetectConfig(), precise=True).detect_images([img])[0]
    return align_face(img, det.landmarks[int(np.argmax(det.scores))])[0]


def _six_people(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Six LFW people, three photos each, linked under ``tmp_path/images``; with the
    teacher and a talking-head clip (skips where ../shared/data is absent)."""
    root = SHARED / "lfw" / "images"
    teacher = SHARED / "models" / "mobilefacenet_128d.onnx"
    clip = SHARED / "media" / "liveportrait_d0.mp4"
    for p in (root, teacher, clip):
        if not p.exists():
            pytest.skip(f"{p} is absent: tests that need ../shared/data skip without it")
    images = tmp_path / "images"
    people = [p for p in sorted(root.iterdir()) if len(list(p.glob("*.jpg"))) >= 3][:6]
    for person in people:
        (images / person.name).mkdir(parents=True)
        for src in sorted(person.glob("*.jpg"))[:3]:
            (images / person.name / src.name).symlink_to(src)
    return images, teacher, clip


def _score_and_run(cfg: Path, images: Path, clip: Path) -> RunReport:
    """`stream-gate score --json` on one photo with ``cfg`` (its faces scored 0-100),
    then the video pipeline on ``clip`` with it: the run's report."""
    from stream_gate.cli import main as sg_main
    from stream_gate.config import load_settings
    from stream_gate.pipeline.graph import build_pipeline

    photo = next(next(p for p in sorted(images.iterdir())).glob("*.jpg"))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert sg_main(["score", "--json", "--config", str(cfg), str(photo)]) == 0
    faces = json.loads(buf.getvalue().splitlines()[0])["faces"]
    assert faces and all(0 <= f["quality"] <= 100 for f in faces)
    settings = load_settings(cfg, {"streams": [{"id": "d0", "url": str(clip), "fps": 5}]})
    return build_pipeline(settings, collect=True).run(duration=60)


def test_degradations_are_seeded_and_reproducible(face: np.ndarray) -> None:
    a, how_a = random_degradation(face, 1234)
    b, how_b = random_degradation(face, 1234)
    c, _ = random_degradation(face, 1235)
    assert how_a == how_b and np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == face.shape and a.dtype == np.uint8


@pytest.mark.parametrize("kind", ["gaussian_blur", "motion_blur", "downscale"])
def test_blur_like_degradations_remove_detail_with_severity(face: np.ndarray, kind: str) -> None:
    # The same generator state for each severity: same motion direction, longer blur.
    gray = [sharpness(cv2.cvtColor(DEGRADATIONS[kind](face, s, np.random.default_rng(0)),
                                   cv2.COLOR_BGR2GRAY))
            for s in (0.1, 0.5, 1.0)]
    assert gray[0] > gray[1] > gray[2]


def test_every_degradation_changes_the_image(face: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    for kind, fn in DEGRADATIONS.items():
        out = fn(face, 0.8, rng)
        assert out.shape == face.shape, kind
        assert np.abs(out.astype(int) - face.astype(int)).mean() > 1.0, kind


def test_alignment_jitter_moves_the_face_more_with_sigma(face: np.ndarray) -> None:
    assert np.array_equal(jitter_alignment(face, 0.0, np.random.default_rng(0)), face)
    moved = [np.mean([np.abs(jitter_alignment(face, s, np.random.default_rng(k)).astype(int)
                             - face).mean() for k in range(8)]) for s in (0.5, 1.0, 2.0)]
    assert 0 < moved[0] < moved[1] < moved[2]
    a = jitter_batch(np.stack([face, face]), 2.0, np.random.default_rng(3))
    b = jitter_batch(np.stack([face, face]), 2.0, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.shape == (2, *face.shape)
    assert not np.array_equal(a[0], a[1])  # each crop its own draw


def test_certainty_ratio_hand_checked() -> None:
    # Three identities on the unit circle (2-D embeddings), one sample of identity 0.
    centres = identity_centres(
        np.array([[1, 0], [0, 1], [-1, 0]], np.float32), np.array([0, 1, 2]), 3)
    emb = np.array([[np.cos(np.pi / 6), np.sin(np.pi / 6)]], np.float32)  # 30° off centre 0
    cr, ccs, nnccs = certainty_ratio(emb, np.array([0]), centres)
    assert ccs[0] == pytest.approx(np.cos(np.pi / 6), abs=1e-6)   # 0.8660
    assert nnccs[0] == pytest.approx(np.cos(np.pi / 3), abs=1e-6)  # 0.5 (to centre 1)
    assert cr[0] == pytest.approx(0.8660254 / 1.5, abs=1e-6)


def test_leave_one_out_centre_excludes_the_sample_itself() -> None:
    # Identity 0 has photos 10 and 11; identity 1 has photo 12. A sample made from
    # photo 10 is compared with photo 11 alone (not with itself).
    clean = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    cr, ccs, nnccs = loo_certainty_ratio(
        clean[:1], np.array([0]), np.array([10]), clean, np.array([0, 0, 1]),
        np.array([10, 11, 12]))
    assert ccs[0] == pytest.approx(0.6, abs=1e-6)
    assert nnccs[0] == pytest.approx(0.0, abs=1e-6)
    assert cr[0] == pytest.approx(0.6, abs=1e-6)


def test_isotonic_and_calibration_are_monotone() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(size=2000)
    success = rng.random(2000) < 1 / (1 + np.exp(-2 * raw))
    xs, fit = isotonic(raw, success)
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(fit) >= -1e-12)
    kx, kq = fit_calibration(raw, success)
    assert np.all(np.diff(kx) > 0) and np.all(np.diff(kq) >= 0)
    assert 0 <= kq[0] < 20 and 80 < kq[-1] <= 100


def test_edc_and_pauc_on_a_case_with_known_answer() -> None:
    # 100 genuine pairs; the 30 failures (score < thr) have the 30 lowest qualities.
    genuine = np.array([0.1] * 30 + [0.9] * 70)
    q = np.arange(100, dtype=float)
    curve = edc(genuine, q, thr=0.5)
    assert curve[0] == pytest.approx(0.3)
    assert curve[list(DISCARD).index(0.1)] == pytest.approx(20 / 90)
    assert curve[list(DISCARD).index(0.3)] == pytest.approx(0.0)
    assert pauc(curve) < 0.6  # perfect ordering beats random (≈ 1)
    assert pauc(edc(genuine, -q, thr=0.5)) > 1.0  # worst ordering


def test_split_is_deterministic_and_identity_level() -> None:
    assert split_of("Aaron_Eckhart", 0.2) == split_of("Aaron_Eckhart", 0.2)
    sides = {split_of(f"person_{i}", 0.2) for i in range(50)}
    assert sides == {"train", "val"}


@pytest.mark.slow
def test_tiny_end_to_end_training_run(tmp_path: Path) -> None:
    """prepare -> distill-data -> train (a few steps) -> export -> score in stream_gate."""
    from trainer.__main__ import main as trainer_main

    root = SHARED / "lfw" / "images"
    teacher = SHARED / "models" / "mobilefacenet_128d.onnx"
    if not root.exists() or not teacher.exists():
        pytest.skip(f"{root} or {teacher} is absent")
    # Two identities per side of the split, a handful of photos each.
    chosen: dict[str, list[str]] = {"train": [], "val": []}
    for ident in sorted(p.name for p in root.iterdir()):
        side = split_of(ident, 0.5)
        if len(chosen[side]) < 2 and len(list((root / ident).glob("*.jpg"))) >= 4:
            chosen[side].append(ident)
        if all(len(v) == 2 for v in chosen.values()):
            break
    images = tmp_path / "images"
    for ident in chosen["train"] + chosen["val"]:
        (images / ident).mkdir(parents=True)
        for src in sorted((root / ident).glob("*.jpg"))[:4]:
            (images / ident / src.name).symlink_to(src)

    prepared, distill, run, models = (tmp_path / n for n in ("prep", "distill", "run", "models"))
    assert trainer_main(["prepare", "--images", str(images), "--out", str(prepared),
                         "--val-fraction", "0.5"]) == 0
    manifest = [json.loads(ln) for ln in (prepared / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 16 and {m["split"] for m in manifest} == {"train", "val"}
    assert np.load(prepared / "crops.npy").shape == (16, 112, 112, 3)

    assert trainer_main(["distill-data", "--prepared", str(prepared), "--teacher", str(teacher),
                         "--out", str(distill), "--k", "1"]) == 0
    summary = json.loads((distill / "summary.json").read_text())
    assert summary["train"]["samples"] == 16 and summary["val"]["samples"] == 16

    assert trainer_main(["train", "--data", str(distill), "--out", str(run), "--epochs", "1",
                         "--batch", "8", "--max-steps", "2"]) == 0
    assert (run / "last.pt").exists() and (run / "best.pt").exists()
    # --seed: the same seed gives the same weights, another seed other weights.
    import torch

    weights = {}
    for tag, seed in (("same", "0"), ("other", "1")):
        assert trainer_main(["train", "--data", str(distill), "--out", str(tmp_path / tag),
                             "--epochs", "1", "--batch", "8", "--max-steps", "2",
                             "--seed", seed]) == 0
        weights[tag] = torch.load(tmp_path / tag / "last.pt", weights_only=False)["model"]
    first = torch.load(run / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(first[k], weights["same"][k]) for k in first)
    assert not all(torch.equal(first[k], weights["other"][k]) for k in first)
    assert trainer_main(["train", "--data", str(distill), "--out", str(run), "--epochs", "2",
                         "--batch", "8", "--resume"]) == 0  # resumes at epoch 2

    assert trainer_main(["export", "--checkpoint", str(run / "best.pt"), "--data", str(distill),
                         "--teacher", str(teacher), "--out", str(models), "--name", "tiny"]) == 0
    meta = json.loads((models / "tiny.json").read_text())
    assert meta["export"]["max_abs_diff_vs_torch"] < 1e-4
    assert meta["parameters"] <= 1_500_000 and meta["multiply_adds"] <= 100_000_000
    assert np.all(np.diff(meta["calibration"]["quality"]) >= 0)
    scorer = CrFiqaScorer.load(str(models / "tiny.json"))
    crops = np.load(prepared / "crops.npy")[:4]
    scores = scorer.score(list(crops), [np.zeros((5, 2), np.float32)] * 4)
    assert scores.quality.shape == (4,) and np.all((scores.quality >= 0) & (scores.quality <= 100))
    assert to_model_input(crops).shape == (4, 3, 112, 112)


def test_degradations_drawn_from_a_family_alone(face: np.ndarray) -> None:
    for seed in range(20):
        _, how = random_degradation(face, seed, mix_prob=1.0, kinds=FAMILIES["jpeg"])
        assert [k for k, _ in how.steps] == ["jpeg"]  # one kind: nothing to stack
    assert set(kinds_without("blur")) == set(DEGRADATIONS) - {"gaussian_blur", "motion_blur"}
    assert kinds_without(None) == tuple(DEGRADATIONS)
    with pytest.raises(SystemExit, match="unknown degradation family"):
        kinds_without("fog")
    # Without `kinds`, the draw is the one the shipped model was trained on.
    a, how_a = random_degradation(face, 77)
    b, how_b = random_degradation(face, 77, kinds=tuple(DEGRADATIONS))
    assert how_a == how_b and np.array_equal(a, b)


def test_hard_protocol_items_hold_out_identities_and_keep_30_percent_clean(
        face: np.ndarray) -> None:
    from trainer.data import Sample

    names = [f"person_{i}" for i in range(40)]
    marks = [[60.0, 80.0], [100.0, 80.0], [80.0, 100.0], [64.0, 120.0], [96.0, 120.0]]
    samples = [Sample(i, names[i // 3], "", marks, 1.0, "val") for i in range(len(names) * 3)]
    crops = np.repeat(face[None], len(samples), axis=0)
    hard = protocol("hard")
    items, owners, _, lms = _items(crops, samples, 10, 4, hard)
    assert {holdout_of(s.identity) for s in owners} == {"test"}
    assert len(items) == 4 * len({s.index for s in owners})  # no extra clean photo
    clean = np.mean([np.array_equal(im, face) for im in items])
    assert 0.2 < clean < 0.4
    # A downscaled copy's landmarks shrink with it, as a camera would have seen the face;
    # the other copies keep the photo's.
    eyes = np.linalg.norm(lms[:, 1] - lms[:, 0], axis=1)
    assert eyes.max() == pytest.approx(40.0) and 0.05 < np.mean(eyes < 39.9) < 0.6
    only = protocol("hard", only="low_light", half="val")
    items, owners, _, lms = _items(crops, samples, 10, 2, only)
    assert {holdout_of(s.identity) for s in owners} == {"val"}
    assert all(im.mean() <= face.mean() + 1 for im in items)  # darker or clean, never more
    assert np.all(lms == np.float32(marks))  # no downscale drawn: the photo's landmarks
    standard = protocol("standard")
    items, owners, _, lms = _items(crops, samples, 10, 2, standard)
    assert len({s.identity for s in owners}) == len(names)
    assert np.array_equal(items[0], face) and not np.array_equal(items[1], face)
    assert np.all(lms == np.float32(marks))  # the v1 card's set: photo landmarks always


def test_real_set_is_oversampled_to_its_share_with_its_own_identities() -> None:
    from trainer.distill import DistillSet
    from trainer.train import with_real

    def dset(n: int, ids: int, cr: float) -> DistillSet:
        return DistillSet(np.zeros((n, 112, 112, 3), np.uint8), np.full(n, cr, np.float32),
                          np.zeros(n, np.float32), np.zeros(n, np.float32), np.arange(n),
                          np.arange(n) % ids, np.zeros(n, bool))

    both = with_real(dset(30, 6, 0.3), dset(5, 2, 0.6), share=0.25)
    real = both.cr == np.float32(0.6)
    assert len(both.cr) == 40 and real.sum() == 10  # the 5 real samples twice: 25 %
    assert set(both.identity[real]) == {6, 7}  # numbered after LFW's 0..5
    assert np.all(both.source[real] < 0) and np.all(both.source[~real] >= 0)
    with pytest.raises(SystemExit, match="between 0 and 1"):
        with_real(dset(30, 6, 0.3), dset(5, 2, 0.6), share=1.0)


def test_landmark_map_draws_pose_and_resolution() -> None:
    from stream_gate.stages.align_score.learned import landmark_map
    from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE

    big = ARCFACE_TEMPLATE * 2.0 + 100        # a face twice the template's size
    small = ARCFACE_TEMPLATE * 0.25 + 40      # a quarter of it: upsampled 4× by alignment
    turned = big.copy()
    turned[2, 0] += 20                        # the nose far off the eyes' middle: a yaw
    maps = landmark_map([big, small, turned], sigma_px=1.5)
    assert maps.shape == (3, 1, 112, 112) and maps.dtype == np.float32
    assert maps.max() <= 1.0 and maps.min() >= 0.0
    # Every landmark lands on the template point in the crop (a frontal face).
    for x, y in ARCFACE_TEMPLATE.round().astype(int):
        assert maps[0, 0, y, x] > 0.6  # σ 1 px, the point within half a pixel
    # A small face's blobs are wider: more of the crop is lit.
    assert (maps[1] > 0.5).sum() > 4 * (maps[0] > 0.5).sum()
    # The turned face's nose blob has moved right of the template's nose.
    nose_row = maps[2, 0, int(ARCFACE_TEMPLATE[2, 1].round())]
    assert int(np.argmax(nose_row[40:80])) + 40 > ARCFACE_TEMPLATE[2, 0] + 2
    # A training-time downscale by 4 widens the blobs as a 4× smaller face would.
    shrunk = landmark_map([big], 1.5, size_factor=np.array([0.125]))
    assert (shrunk > 0.5).sum() > 4 * (maps[0] > 0.5).sum()


def test_size_plane_says_how_many_frame_pixels_the_crop_stood_for() -> None:
    from stream_gate.stages.align_score.learned import Guidance, size_plane
    from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE

    faces = [ARCFACE_TEMPLATE * k + 50 for k in (1.0, 4.0, 0.25, 100.0)]
    planes = size_plane(faces)
    assert planes.shape == (4, 1, 112, 112) and planes.dtype == np.float32
    value = planes[:, 0, 0, 0]
    assert np.all(planes == value[:, None, None, None])  # one value over the whole crop
    # Template-sized: 0; 4× larger: log2 4 / 3; 4× smaller: the opposite; 100×: clipped.
    assert np.allclose(value, [0.0, 2 / 3, -2 / 3, 1.0], atol=1e-4)
    # A training-time downscale by 4 reads as a 4× smaller face.
    assert np.allclose(size_plane([faces[1]], np.array([0.25]))[0, 0, 0, 0], 0.0, atol=1e-4)

    both = Guidance(landmark_sigma_px=1.5, size_plane=True)
    assert both.channels == 5 and Guidance().channels == 3 and Guidance().planes(faces) is None
    stacked = both.planes(faces)
    assert stacked is not None and stacked.shape == (4, 2, 112, 112)
    assert np.array_equal(stacked[:, 1:], planes)  # the landmark map first, then the size


def test_a_manifest_whose_channels_disagree_with_its_inputs_is_refused(tmp_path: Path) -> None:
    from stream_gate.errors import ModelError
    from stream_gate.stages.align_score.learned import Manifest, manifest_path

    meta = json.loads(manifest_path("cr-fiqa-s").read_text())
    meta["input"]["channels"] = 5  # says five, names neither the landmark map nor the size
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="channels 5"):
        Manifest.load(tmp_path / "m.json")
    meta["input"]["landmark_map"] = {"sigma_px": 1.5}
    meta["input"]["size_plane"] = {}
    (tmp_path / "m.json").write_text(json.dumps(meta))
    assert Manifest.load(tmp_path / "m.json").channels == 5


@pytest.mark.slow
def test_landmark_guided_model_end_to_end(tmp_path: Path) -> None:
    """distill-data keeps landmarks -> train --landmarks --size-input -> export (5
    channels, the map and the size plane in the manifest) -> `stream-gate score` and the
    video pipeline feed it the landmarks."""
    from trainer.__main__ import main as trainer_main

    images, teacher, clip = _six_people(tmp_path)
    prepared, distill, run, models = (tmp_path / n for n in ("prep", "distill", "run", "models"))
    assert trainer_main(["prepare", "--images", str(images), "--out", str(prepared),
                         "--val-fraction", "0.5"]) == 0
    assert trainer_main(["distill-data", "--prepared", str(prepared), "--teacher", str(teacher),
                         "--out", str(distill), "--k", "1"]) == 0
    assert trainer_main(["train", "--data", str(distill), "--out", str(run), "--epochs", "1",
                         "--batch", "8", "--max-steps", "2", "--landmarks", "1.5",
                         "--size-input", "--aux-weight", "0.1"]) == 0
    assert trainer_main(["export", "--checkpoint", str(run / "best.pt"), "--data", str(distill),
                         "--teacher", str(teacher), "--out", str(models), "--name", "tiny-lm",
                         "--version", "2"]) == 0
    meta = json.loads((models / "tiny-lm.json").read_text())
    assert meta["input"]["channels"] == 5 and meta["input"]["landmark_map"]["sigma_px"] == 1.5
    assert "size_plane" in meta["input"] and meta["training"]["size_input"] is True
    assert meta["export"]["max_abs_diff_vs_torch"] < 1e-4

    cfg = tmp_path / "lm.toml"
    cfg.write_text(f'[score]\nmodel = "{models / "tiny-lm.json"}"\n')
    report = _score_and_run(cfg, images, clip)
    assert report.emissions and {e.model for e in report.emissions} == {"tiny-lm@2"}
    assert all(0 <= e.candidate.quality <= 100 for e in report.emissions)


def test_info_nce_rewards_codes_that_pair_up() -> None:
    from trainer.degrep import info_nce

    good = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0, 0], [1, 0.05, 0], [0, 1, 0], [0.05, 1, 0], [0, 0, 1], [0, 0.05, 1]]), dim=1)
    swapped = good[[0, 2, 1, 4, 3, 5]]  # each view's partner now carries another code
    assert float(info_nce(good)) < 0.01 < 1.0 < float(info_nce(swapped))
    with pytest.raises(ValueError, match="even"):
        info_nce(good[:5])


def test_degradation_pairs_share_a_degradation_across_faces(face: np.ndarray) -> None:
    from trainer.degrep import DegradationPairs
    from trainer.distill import DistillSet

    rng = np.random.default_rng(0)
    n = 12  # six people, two clean photos each (the same face here, shifted in colour)
    crops = np.stack([np.clip(face.astype(int) + 10 * i, 0, 255).astype(np.uint8)
                      for i in range(n)])
    lfw = DistillSet(crops, np.zeros(n, np.float32), np.zeros(n, np.float32),
                     np.zeros(n, np.float32), np.arange(n), np.arange(n) // 2,
                     np.zeros(n, bool), np.zeros((n, 5, 2), np.float32))
    batch = DegradationPairs(lfw, pairs=4).draw(rng)
    assert batch.crops.shape == (8, 112, 112, 3) and batch.flip.shape == (8,)
    # Each pair: one degradation on two people; the next pair takes the first face again
    # under another degradation (a negative that differs only in the capture).
    for k in range(0, 8, 2):
        assert batch.how[k] == batch.how[k + 1] != "clean"
    assert batch.how[0] != batch.how[2]
    assert not np.array_equal(batch.crops[0], batch.crops[2])
    from trainer.train import with_real

    real = DistillSet(crops[:4], np.zeros(4, np.float32), np.zeros(4, np.float32),
                      np.zeros(4, np.float32), np.arange(4), np.zeros(4, np.int64),
                      np.zeros(4, bool), np.zeros((4, 5, 2), np.float32))
    both = DegradationPairs(with_real(lfw, real, 0.25), pairs=4).draw(rng)
    # The second half: real crops, each beside its own mirror image.
    assert np.array_equal(both.crops[4], both.crops[5]) and both.flip[5] and not both.flip[4]


def test_pair_oracle_is_the_floor_of_every_ordering() -> None:
    rng = np.random.default_rng(5)
    genuine = rng.normal(0.5, 0.2, 400)
    floor = pauc(edc(genuine, genuine, thr=0.4))
    for _ in range(20):
        assert pauc(edc(genuine, rng.random(400), thr=0.4)) >= floor - 1e-12


def test_signature_pack_keeps_the_crops_and_the_stream_mixes_both_sets(face: np.ndarray
                                                                      ) -> None:
    """`signature-data`'s JPEG pack gives the crops back (quality 95: a grey level or two),
    and the training stream draws the video crops at their share, degraded or mirrored."""
    from trainer.signature import OnlineCrops, Pack

    lfw = [face, cv2.GaussianBlur(face, (0, 0), 2)]
    video = [np.ascontiguousarray(face[:, ::-1])]
    pack = Pack.of(lfw + video, [False, False, True])
    for i, c in enumerate(lfw + video):
        assert np.abs(pack.crop(i).astype(int) - c).mean() < 2.0
    drawn = list(itertools.islice(iter(OnlineCrops(pack, real_share=0.25, seed=0)), 400))
    assert all(d.shape == (112, 112, 3) and d.dtype == torch.uint8 for d in drawn)
    # The one video crop faces the other way: count the draws nearer to it.
    near_video = sum(
        np.abs(d.numpy().astype(int) - video[0]).mean()
        < np.abs(d.numpy().astype(int) - face).mean() for d in drawn)
    assert 0.12 < near_video / len(drawn) < 0.6  # 25 % video, half of all draws mirrored
    changed = sum(not np.array_equal(d.numpy(), pack.crop(0)) for d in drawn)
    assert changed > 0.5 * len(drawn)  # 30 % stay clean, and half of those are mirrored


def test_signature_student_rides_as_the_quality_model_s_second_output(tmp_path: Path) -> None:
    """signature-data -> signature (2 steps on the CPU) -> export-v2: one ONNX file whose
    `cr` is the shipped model's to the bit and whose second output is the student's; the
    manifest names it; `stream-gate score` and the video pipeline (consensus on) carry it
    to the selector."""
    from stream_gate.stages.align_score.learned import manifest_path
    from trainer.__main__ import main as trainer_main

    images, teacher, clip = _six_people(tmp_path)
    prepared, sig, models = tmp_path / "prep", tmp_path / "sig", tmp_path / "models"
    assert trainer_main(["prepare", "--images", str(images), "--out", str(prepared),
                         "--val-fraction", "0.5"]) == 0
    assert trainer_main(["signature-data", "--prepared", str(prepared), "--real", "none",
                         "--out", str(sig / "pack.npz")]) == 0
    assert trainer_main(["signature", "--pack", str(sig / "pack.npz"), "--teacher",
                         str(teacher), "--out", str(sig), "--students", "s", "--batch", "4",
                         "--max-steps", "2", "--workers", "0", "--device", "cpu"]) == 0
    summary = json.loads((sig / "signature.json").read_text())
    assert summary["steps"] == 2 and summary["crops"]["video"] == 0
    assert trainer_main(["export-v2", "--student", str(sig / "signature-s.pt"), "--prepared",
                         str(prepared), "--out", str(models), "--name", "tiny-v2"]) == 0
    meta = json.loads((models / "tiny-v2.json").read_text())
    v1 = json.loads(manifest_path("cr-fiqa-s").read_text())
    assert meta["version"] == "2" and meta["signature"]["dim"] == 128
    assert meta["calibration"] == v1["calibration"]
    assert meta["export"]["cr_max_abs_diff_vs_quality_model"] == 0.0
    assert meta["signature"]["parity_max_abs_diff_vs_torch"] < 1e-4
    assert meta["parameters"] <= 1_500_000 and meta["multiply_adds"] <= 100_000_000

    crops = np.load(prepared / "crops.npy")[:5]
    marks = [np.zeros((5, 2), np.float32)] * 5
    got = CrFiqaScorer.load(str(models / "tiny-v2.json")).score(list(crops), marks)
    ref = CrFiqaScorer.load("cr-fiqa-s").score(list(crops), marks)
    assert np.array_equal(got.quality, ref.quality) and ref.signature is None
    assert got.signature is not None and got.signature.shape == (5, 128)

    cfg = tmp_path / "v2.toml"
    cfg.write_text(f'[score]\nmodel = "{models / "tiny-v2.json"}"\n'
                   '[select]\nconsensus_weight = 3.0\npolicy = "track_end"\n')
    report = _score_and_run(cfg, images, clip)
    assert report.emissions and {e.model for e in report.emissions} == {"tiny-v2@2"}
    assert all(e.candidate.signature is not None and e.candidate.signature.shape == (128,)
               for e in report.emissions)
