#!/usr/bin/env python3
"""How much the quality score moves when only the landmarks' source changes.

For every confident face (score > 0.5) of every 5th frame of a video, the crop is aligned
twice: with the landmarks of full-resolution frame-wide detection (what `bench`'s naive
variant uses) and with those of refinement crops (what the pipeline uses), at the given
refinement sizes. Both are valid estimates of the same face in the same frame, so the
difference in quality is noise the best-shot parity of `bench` cannot get below. The
`jitter` column is the same difference when the full-resolution landmarks only move by
N(0, 0.5 px) per coordinate (4 seeded draws a face): how much sub-pixel landmark noise
alone moves the score.
Usage: .venv/bin/python scripts/alignment_noise.py VIDEO [--sizes 64,96,128,192]
       [--small 192 | 0] [--model cr-fiqa-s | path/to/manifest.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

from stream_gate.config import DetectConfig, RuntimeConfig, ScoreConfig
from stream_gate.runtime import Backend
from stream_gate.stages.align_score import build_scorer
from stream_gate.stages.align_score.template import align_face
from stream_gate.stages.detect import build_host_detector
from stream_gate.stages.refine import Planner, Refiner

BUCKETS = ((0, 40), (40, 64), (64, 96), (96, 10_000))  # face size, frame pixels
JITTER_PX, JITTER_DRAWS = 0.5, 4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("video", type=Path)
    p.add_argument("--sizes", default="64,96,128,192", help="refinement crop sides")
    p.add_argument("--small", type=int, default=DetectConfig().refine_small_px,
                   help="native window of faces of 32 px up to size/2 (detect."
                        "refine_small_px; 0: the crop side, as before it existed)")
    p.add_argument("--frames", type=int, default=40, help="frames to use (every 5th)")
    p.add_argument("--model", default="cr-fiqa-s", help="quality model: name or manifest path")
    args = p.parse_args()
    full = build_host_detector(DetectConfig(precision="fp32", max_side=4096))
    precise = build_host_detector(DetectConfig(), precise=True)
    refiners = {int(s): Refiner(precise, Planner(int(s), args.small))
                for s in args.sizes.split(",")}
    scorer = build_scorer(ScoreConfig(model=args.model), Backend(RuntimeConfig()))
    rng = np.random.default_rng(0)
    with av.open(str(args.video)) as c:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(video=0))
                  if i % 5 == 0][:args.frames]
    rows: list[tuple[float, dict[str, float]]] = []
    for frame in frames:
        found = full.detect_images([frame])[0]
        for k in np.flatnonzero(found.scores > 0.5):
            box = found.boxes[k]
            marks = {"full": found.landmarks[k]}
            for px, refiner in refiners.items():
                got = refiner.refine([(frame, box)])[0]
                if len(got):
                    marks[str(px)] = got.landmarks[0]
            for j in range(JITTER_DRAWS):
                noise = rng.normal(0, JITTER_PX, marks["full"].shape).astype(np.float32)
                marks[f"jitter{j}"] = marks["full"] + noise
            crops = [align_face(frame, m)[0] for m in marks.values()]
            quality = dict(zip(marks, scorer.score(crops, list(marks.values())).quality.tolist(),
                               strict=True))
            quality["jitter"] = float(np.mean([abs(quality.pop(f"jitter{j}") - quality["full"])
                                               for j in range(JITTER_DRAWS)]))
            rows.append((float(max(box[2] - box[0], box[3] - box[1])), quality))
    print(f"{len(rows)} faces from {len(frames)} frames of {args.video.name}; "
          "quality with refined minus with full-resolution landmarks "
          "(points, 0-100 scale):")
    for lo, hi in BUCKETS:
        sel = [r for size, r in rows if lo <= size < hi]
        if not sel:
            continue
        line = f"  faces {lo}-{hi if hi < 10_000 else '…'} px (n={len(sel)}, mean quality " \
               f"{np.mean([r['full'] for r in sel]):.1f}):"
        for px in refiners:
            d = np.array([r[str(px)] - r["full"] for r in sel if str(px) in r])
            line += (f"  {px}px |Δ| {np.abs(d).mean():.1f} (p90 {np.percentile(np.abs(d), 90):.1f},"
                     f" bias {d.mean():+.1f})") if len(d) else f"  {px}px -"
        jit = [r["jitter"] for r in sel]
        line += f"  jitter |Δ| {np.mean(jit):.1f} (p90 {np.percentile(jit, 90):.1f})"
        print(line)


if __name__ == "__main__":
    main()
