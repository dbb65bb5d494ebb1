"""The align_score stage's records: what it takes (faces) and gives (crops and scores)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stream_gate.types import FloatArray, ImageBGR, Scores

Face = tuple[int, FloatArray]  # (frame index in the batch, its 5 landmarks in frame px)


class QualityScorer(Protocol):
    """Batch of aligned crops (+ their frame landmarks) -> raw and 0–100 scores."""

    @property
    def name(self) -> str:
        """The model id published with every crop (``cr-fiqa-s@1``, ``heuristic``)."""
        ...

    def score(self, crops: Sequence[ImageBGR], landmarks: Sequence[FloatArray]) -> Scores: ...


@dataclass(frozen=True, slots=True)
class ScoredCrops:
    """Aligned 112×112 BGR crops (host, for publishing), their scores, and the seconds
    the stage spent aligning and scoring."""

    crops: list[ImageBGR]
    scores: Scores
    seconds: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def empty() -> ScoredCrops:
        none = np.zeros((0,), np.float32)
        return ScoredCrops([], Scores(raw=none, quality=none))
