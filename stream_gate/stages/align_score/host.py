"""Alignment and scoring on the host: one ``cv2.warpAffine`` per face, one scorer call."""

from __future__ import annotations

import time
from collections.abc import Sequence

from stream_gate.stages.align_score.scored import Face, QualityScorer, ScoredCrops
from stream_gate.stages.align_score.template import align_face
from stream_gate.types import FrameBatch


class HostAlignScore:
    """Aligns each face with OpenCV, then scores all crops of the batch in one call."""

    def __init__(self, scorer: QualityScorer) -> None:
        self.scorer = scorer
        self.name = scorer.name

    def run(self, batch: FrameBatch, faces: Sequence[Face]) -> ScoredCrops:
        if not faces:
            return ScoredCrops.empty()
        t0 = time.perf_counter()
        crops = [align_face(batch.frames[fi].image, lm)[0] for fi, lm in faces]
        t1 = time.perf_counter()
        scores = self.scorer.score(crops, [lm for _, lm in faces])
        return ScoredCrops(crops, scores, {"align": t1 - t0, "score": time.perf_counter() - t1})
