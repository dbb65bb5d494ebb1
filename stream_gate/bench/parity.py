"""Best-shot parity: does the pipeline score, per person, a crop as good as naive's best?

The pipeline's shortcuts (frame-wide detection at reduced size, refinement windows,
gates, skipped frames) must not lose a person's best shot. Which scored crop is *sent*
is the selector's choice: with the track consensus on it may send a more typical crop of
a lower score on purpose, so parity compares the best crop scored; with ranking by
quality alone (``consensus_weight`` 0, ``size_weight`` 0) that is the crop sent."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_gate.geometry import iou_matrix
from stream_gate.pipeline.observe import RunReport

PARITY_FLOOR = 20.0  # naive tracks whose best crop scores below this have no usable face


def best_shot_parity(naive: RunReport, pipe: RunReport, floor: float = PARITY_FLOOR
                     ) -> dict[str, Any]:
    """For each emitting naive track: the best quality the pipeline scored on the same
    person (a track that emitted) / naive's best quality.

    Tracks of the two runs are matched by their boxes on the frames both analysed
    (IoU ≥ 0.5), taking the pipeline track that overlaps on the most frames. Naive
    tracks whose best crop scores below ``floor`` (no usable face: quality ≈ the chance
    in % that a recogniser verifies it) are counted apart, not in the ratios.
    ``per_track`` lists every counted track, worst first, with its median face height.
    """
    rows: list[dict[str, Any]] = []
    unusable = 0
    for key, nt in naive.tracks.items():
        if not nt.emitted or nt.best_quality <= 0:
            continue
        if nt.best_quality < floor:
            unusable += 1
            continue
        best_match, best_hits = None, 0
        for pkey, pt in pipe.tracks.items():
            if pkey[0] != key[0]:
                continue
            common = sorted(set(nt.boxes) & set(pt.boxes))
            if not common:
                continue
            a = np.array([nt.boxes[i] for i in common])
            b = np.array([pt.boxes[i] for i in common])
            hits = int((np.diag(iou_matrix(a, b)) >= 0.5).sum())
            if hits > best_hits:
                best_match, best_hits = pt, hits
        got = best_match.best_quality if best_match is not None and best_match.emitted \
            else 0.0
        height = float(np.median([b[3] - b[1] for b in nt.boxes.values()]))
        rows.append({"stream": key[0], "naive_track": key[1],
                     "naive_best": round(nt.best_quality, 1), "pipeline": round(got, 1),
                     "ratio": round(min(got / nt.best_quality, 1.0) if got else 0.0, 3),
                     "face_px": round(height)})
    rows.sort(key=lambda r: r["ratio"])
    ratios = [r["ratio"] for r in rows]
    if not ratios:
        return {"min": float("nan"), "mean": float("nan"), "tracks": 0,
                "below_floor": unusable, "floor": floor, "per_track": []}
    return {"min": round(min(ratios), 3), "mean": round(float(np.mean(ratios)), 3),
            "tracks": len(ratios), "below_floor": unusable, "floor": floor,
            "per_track": rows}
