#!/usr/bin/env python3
"""Does the capture geometry the detector already gives (face size, head pose from the five
landmarks, detector score) pick better crops when fused with the quality model's score?

The fusion weights are **fitted on the clip list's ``train`` clips** (never benchmarked):
within each 1.5-s segment of a track, a least-squares fit of each crop's teacher
similarity to the track's other segments (the criterion of the benchmark's one-pick
oracle) on the segment-centred features. Each feature set's fused score is then a
selector of the real-video benchmark on ``dev`` and ``test`` (``trainer/video_eval.py``),
beside the model alone and the size-fused selector of ``select.size_weight``.
Measured 2026-12-03: docs/decisions/003 ("Stop 25").

Usage: .venv/bin/python scripts/geometry_fusion.py [--model cr-fiqa-s] [--dlib]
       [--out work/eval-video]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream_gate.geometry import yaw_estimate
from trainer.__main__ import SHARED, TEACHER
from trainer.evaluate import model_quality
from trainer.realset import other_segments_similarity, pseudo_identities
from trainer.realvideo import ClipCrops, Segment, clip_crops, load_clips, segments
from trainer.recognisers import DlibRecogniser, OnnxRecogniser, cached_embed
from trainer.video_eval import log2_area, run_benchmark, size_fused, table

F64 = npt.NDArray[np.float64]
FEATURE_SETS = {"size": ["log2 area"], "pose": ["|yaw|", "pitch"],
                "size+pose": ["log2 area", "|yaw|", "pitch"],
                "size+pose+det": ["log2 area", "|yaw|", "pitch", "detector"]}


def features(items: ClipCrops, quality: F64) -> dict[str, F64]:
    """Per-crop features: the model's quality, log2 box area, |yaw| in degrees, and pitch
    as the nose's distance below the eye line over the mouth's (frontal ≈ 0.55)."""
    lm = items.landmarks.astype(np.float64)
    yaw = np.array([abs(yaw_estimate(m)) for m in lm])
    eyes, nose, mouth = (lm[:, 0] + lm[:, 1]) / 2, lm[:, 2], (lm[:, 3] + lm[:, 4]) / 2
    axis = lm[:, 1] - lm[:, 0]
    normal = np.stack([-axis[:, 1], axis[:, 0]], 1) / (np.linalg.norm(axis, axis=1,
                                                                      keepdims=True) + 1e-6)
    down = ((mouth - eyes) * normal).sum(1)
    pitch = ((nose - eyes) * normal).sum(1) / np.where(np.abs(down) > 1e-6, down, 1e-6)
    return {"quality": quality, "log2 area": log2_area(items), "|yaw|": yaw,
            "pitch": np.abs(pitch - 0.55), "detector": items.det_score.astype(np.float64)}


def centred(x: F64, segs: Sequence[Segment]) -> F64:
    """``x`` minus its segment's mean (selection happens within a segment)."""
    out = np.full_like(x, np.nan)
    for s in segs:
        out[s.rows] = x[s.rows] - x[s.rows].mean()
    return out


def fit(feats: dict[str, F64], target: F64, segs: Sequence[Segment]
        ) -> dict[str, dict[str, float]]:
    """Per feature set, the weights in quality points (quality's weight fixed at 1)."""
    rows = np.concatenate([s.rows for s in segs])
    y = centred(target, segs)[rows]
    out = {}
    for name, keys in FEATURE_SETS.items():
        cols = ["quality", *keys]
        a = np.stack([centred(feats[k], segs)[rows] for k in cols], 1)
        w = np.linalg.lstsq(a, y, rcond=None)[0]
        out[name] = {k: float(v / w[0]) for k, v in zip(cols, w, strict=True)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cr-fiqa-s")
    p.add_argument("--clips", type=Path, default=Path("trainer/clips.toml"))
    p.add_argument("--dlib", action="store_true", help="dlib as a second comparator")
    p.add_argument("--out", type=Path, default=Path("work/eval-video"),
                   help="the benchmark's folder (dumps and dlib embeddings are cached)")
    p.add_argument("--size-weight", type=float, default=20.0)
    args = p.parse_args()
    clips = load_clips(args.clips, SHARED / "media")
    teacher = OnnxRecogniser(TEACHER)

    train = clip_crops([c for c in clips if c.split == "train"], args.out, 10.0)
    pseudo_identities(train)
    segs = segments(train, 1.5)
    target = other_segments_similarity(teacher.embed(train.crops), segs, len(train))
    segs = [s for s in segs if not np.isnan(target[s.rows]).any()]
    feats = features(train, model_quality(args.model, train.crops, train.landmarks)[1]
                     .astype(np.float64))
    weights = fit(feats, target, segs)
    print(f"fitted on {len(segs)} segments of {len({s.identity for s in segs})} train tracks")
    for name, w in weights.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:+.3g}" for k, v in w.items()))

    items = clip_crops([c for c in clips if c.split in ("dev", "test")], args.out, 10.0)
    embs = {"teacher": teacher.embed(items.crops)}
    if args.dlib:
        embs["dlib"] = cached_embed(args.out, "dlib", items.crops,
                                    lambda c: DlibRecogniser().embed(c, progress="dlib"))
    name, q = model_quality(args.model, items.crops, items.landmarks)
    f = features(items, q.astype(np.float64))
    scores = {name: f["quality"],
              f"{name} + {args.size_weight:g}/2x area": size_fused(f["quality"], items,
                                                                  args.size_weight)}
    for set_name, w in weights.items():
        scores[f"{name} + {set_name} (fitted)"] = sum(
            (v * f[k] for k, v in w.items()), start=np.zeros(len(items)))
    print(table(run_benchmark(items, scores, embs, 1.5)))


if __name__ == "__main__":
    main()
