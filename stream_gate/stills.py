"""Still images: detect, align and score every face of a photo (``stream-gate score``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from stream_gate.align import align_face
from stream_gate.config import Settings
from stream_gate.detect import make_detector
from stream_gate.score import QualityScorer, make_scorer
from stream_gate.types import ImageBGR

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class ImageResult:
    path: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "faces": self.faces}
        if self.error is not None:
            out["error"] = self.error
        return out


def expand_paths(paths: list[Path]) -> list[Path]:
    """Image files named directly, plus the images inside named folders (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


class StillScorer:
    """Detector + aligner + quality scorer for photos, sharing the pipeline's code."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.detector = make_detector(settings.detect, settings.runtime)
        self.scorer: QualityScorer = make_scorer(settings.score, settings.runtime)

    def score_file(self, path: Path) -> ImageResult:
        image: ImageBGR | None = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            reason = "file not found" if not path.exists() else "not a readable image"
            return ImageResult(str(path), error=reason)
        dets = self.detector.detect([image])[0]
        keep = dets.scores >= self.settings.score.min_det_score
        dets = dets.subset(keep)
        crops = [align_face(image, lm)[0] for lm in dets.landmarks]
        scores = self.scorer.score(crops, list(dets.landmarks))
        result = ImageResult(str(path))
        for i in range(len(dets)):
            result.faces.append({
                "bbox": [round(float(v), 1) for v in dets.boxes[i]],
                "landmarks": [
                    [round(float(x), 1), round(float(y), 1)] for x, y in dets.landmarks[i]
                ],
                "det_score": round(float(dets.scores[i]), 4),
                "quality": round(float(scores.quality[i]), 2),
                "quality_raw": round(float(scores.raw[i]), 6),
            })
        return result
