#!/usr/bin/env python3
"""How high can the quality model score a face of a given size? (the size bound, measured)

Issue 6 asks to skip scoring faces of a track that "cannot beat its current best" by a
size bound. Such a bound must hold for the best case: a sharp, in-focus face seen from
further away. This script makes that case from the validation photos of the prepared
training set: each photo is shrunk (cv2.INTER_AREA) so that its face spans `face_px`
frame pixels behind the 112-px template (the least-squares scale of the five
landmarks), aligned with the equally shrunk landmarks, as the pipeline would, and
scored. The bound at a size is the highest score of any photo there.

Measured 2026-11-24 on 1956 validation photos, shipped model cr-fiqa-s (quality 0-100):

    face_px  median   p99    max        (eye distance = face_px * 0.31)
         12     6.1  44.0   65.4
         16    20.2  81.7   90.7
         20    53.5  91.4   94.5
         24    80.8  94.8   98.8
         32    91.5  97.8   99.9
         48    95.0  99.8   99.9

So a clean face of 20 px (a 6-px eye distance) can already reach 94.5, and the bound
is above 90 for every face the detector keeps (detect.min_face_px = 16 px of box
height, about 17 px here): it could skip a face only on tracks that already hold a
crop above 90, whose later small faces are few. Real small faces score far lower (the
1080p crowd's 36-px faces at most 22) because of blur, noise and compression, which a
bound cannot assume. Hence no size bound in the pipeline.
Usage: .venv/bin/python scripts/size_ceiling.py [--prepared work/lfw] [--model cr-fiqa-s]
(`python -m trainer prepare` makes work/lfw.)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stream_gate.config import RuntimeConfig, ScoreConfig
from stream_gate.runtime import Backend
from stream_gate.stages.align_score import QualityScorer, build_scorer
from stream_gate.stages.align_score.template import ARCFACE_TEMPLATE, CROP_SIZE, align_face, umeyama
from trainer.data import Sample, load_prepared

SIZES = (12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96)  # frame px behind the template


def face_px(landmarks: np.ndarray) -> float:
    """Frame pixels behind the side of the face's 112-px aligned crop."""
    m = umeyama(landmarks, ARCFACE_TEMPLATE)
    return CROP_SIZE / float(np.hypot(m[0, 0], m[1, 0]))


def shrunk_crops(image: np.ndarray, landmarks: np.ndarray, sizes: Sequence[int]
                 ) -> list[np.ndarray | None]:
    """The aligned crop of the face shrunk to each size (None where it is already smaller)."""
    native = face_px(landmarks)
    out: list[np.ndarray | None] = []
    for size in sizes:
        f = size / native
        if f >= 1.0:
            out.append(None)
            continue
        small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        # cv2.resize rounds the output size: scale the landmarks by the true ratio.
        fx, fy = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
        out.append(align_face(small, landmarks * np.array([fx, fy], np.float32))[0])
    return out


def measure(samples: Sequence[Sample], scorer: QualityScorer,
            sizes: Sequence[int] = SIZES) -> np.ndarray:
    """Quality of every sample at every size, NaN where its face is already smaller."""
    table = np.full((len(samples), len(sizes)), np.nan, np.float32)
    for i, s in enumerate(tqdm(samples, desc="size ceiling", unit="photo")):
        image = cv2.imread(s.source, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {s.source}")
        crops = shrunk_crops(image, np.asarray(s.landmarks, np.float32), sizes)
        idx = [j for j, c in enumerate(crops) if c is not None]
        if idx:
            got = scorer.score([c for c in crops if c is not None],
                               [np.zeros((5, 2), np.float32)] * len(idx))
            table[i, idx] = got.quality
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepared", type=Path, default=Path("work/lfw"))
    p.add_argument("--model", default="cr-fiqa-s", help="name or manifest path")
    args = p.parse_args()
    _, samples = load_prepared(args.prepared)
    val = [s for s in samples if s.split == "val"]
    table = measure(val, build_scorer(ScoreConfig(model=args.model), Backend(RuntimeConfig())))
    print(f"{len(val)} validation photos, model {args.model}")
    print("face_px  photos  median   p99    max")
    for j, size in enumerate(SIZES):
        col = table[:, j][~np.isnan(table[:, j])]
        print(f"{size:>7}  {col.size:>6}  {np.median(col):6.1f}  "
              f"{np.percentile(col, 99):5.1f}  {col.max():5.1f}")


if __name__ == "__main__":
    main()
